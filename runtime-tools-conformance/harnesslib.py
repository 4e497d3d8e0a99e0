"""What the two suite harnesses share: runtime-tools' (conformance.py) and crun's
(crun-suite/crun_suite.py).

Both run someone else's test programs as root against real runtimes, on a machine
other people use at the same time, so both must put the host back as they found
it and touch nothing else: kill the sessions they started, delete the containers
in their own state roots, unmount and remove only what lies below their own work
directories, remove only the cgroups their suite made. The helpers here do that
once, each with the check that keeps it from reaching further. Which cgroups and
which mounts belong to a suite is for each harness to say: it knows its suite.

Standard library only: conformance.py runs under Debian's /usr/bin/python3 and
crun_suite.py under the project's venv (its `run` puts this directory on sys.path).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

KRUN_CACHE = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun"))
# One lock for both harnesses: the suites use shared cgroup paths (runtime-tools'
# /cgrouptest, crun's freezer cgroup `frozen`) and each sweeps up after itself, so
# two runs at once would break, or clean up, each other.
SUITE_LOCK = KRUN_CACHE / "conformance" / "lock"
# What a container id found in a state directory must look like before a runtime
# is given it: crun 1.8.1 does not validate ids, and a root also holds a runtime's
# own dot-directories (krun's `.krun`, `.cache`), which are not containers.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[int, int] | None:
    """(pgid, sid) of a live process, None when it is gone or a zombie (a zombie
    needs no killing, and its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the
    # last ')'. rest[0]=state rest[1]=ppid rest[2]=pgrp rest[3]=session
    rest = data[data.rfind(")") + 2:].split()
    if not rest or rest[0] in ("Z", "X"):
        return None
    return int(rest[2]), int(rest[3])


def session_members(sid: int) -> list[int]:
    """Live processes whose session or process group is `sid`, this one excepted.

    A killpg alone misses what a test moved to a group of its own (runtime-tools'
    `unshare ... sleep 10000` helpers of linux_ns_path*); the session id follows
    every process that did not call setsid itself."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        st = proc_stat(int(d))
        if st and sid in st:
            out.append(int(d))
    return out


def kill_session(sid: int, rounds: int = 40) -> int:
    """SIGKILL the process group `sid` and every process of session `sid`, again
    until none is left (a process may fork while it is being killed) or `rounds`
    rounds 50 ms apart have passed (a frozen task does not die until it is
    thawed: the cgroup sweep does that). Returns how many processes it killed.

    Refuses the harness's own session and pids 0 and 1: `sid` must be the pid
    of a child started with start_new_session."""
    if sid <= 1 or sid == os.getsid(0):
        raise ValueError(f"kill_session: {sid} is not a session this harness started")
    killed: set[int] = set()
    for _ in range(rounds):
        try:
            os.killpg(sid, signal.SIGKILL)
        except OSError:
            pass
        members = session_members(sid)
        if not members:
            break
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


def run_in_session(argv: list[str], cwd: Path | str, env: dict[str, str], out_path: Path,
                   err_path: Path, timeout: float) -> tuple[int | None, bool, int]:
    """Run a test program in a session of its own, stdin /dev/null, stdout and stderr
    to files, under `timeout`. Returns (exit status, or None on timeout; whether
    it timed out; its session id, for kill_session afterwards).

    On a timeout, and on an interruption (^C, SIGTERM unwinding), the whole session
    is killed and the program reaped before this returns or re-raises, so no test
    process outlives the harness."""
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=err, start_new_session=True)
        try:
            return p.wait(timeout=timeout), False, p.pid
        except subprocess.TimeoutExpired:
            kill_session(p.pid)
            p.wait()
            return None, True, p.pid
        except BaseException:
            kill_session(p.pid)
            p.wait()
            raise


# --------------------------------------------------------------------------
# Mounts
# --------------------------------------------------------------------------

def unescape_mount(field: str) -> str:
    """A mountinfo path field with its octal escapes (`\\040` for a space, ...)
    decoded, so that it compares equal to the path the harness made."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, fs type) of each line of a /proc/PID/mountinfo text.

    The optional fields vary in number, so the fs type is the first field after
    the " - " separator, and the mount point the fifth before it."""
    out = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        if len(fields) > 4 and post.split():
            out.append((unescape_mount(fields[4]), post.split()[0]))
    return out


def mountinfo() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount in this mount namespace.

    Not readable means no safe answer: the error propagates rather than an empty
    list, which checked_rmtree would take for "nothing mounted below"."""
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def mountpoints() -> list[str]:
    """Every mount point in this mount namespace (a stacked one more than once)."""
    return [m for m, _ in mountinfo()]


def mounts_under(path: str) -> list[str]:
    """The mount points at `path` or below it."""
    p = path.rstrip("/") + "/"
    return [m for m in mountpoints() if m == path or m.startswith(p)]


_libc: ctypes.CDLL | None = None


def umount_detach(path: str) -> bool:
    """umount2(path, MNT_DETACH): a lazy unmount also succeeds while a leftover
    process still holds the mount busy. True when `path` is no longer a mount
    point (also when it was none: EINVAL, or gone: ENOENT)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    if _libc.umount2(path.encode(), mnt_detach) == 0:
        return True
    return ctypes.get_errno() in (errno.EINVAL, errno.ENOENT)


def cleanup_mounts(under: str, also: Callable[[str], bool] | None = None) -> list[str]:
    """Lazily unmount everything at or below the directory `under` (one this run
    made), and every mount point `also` selects; deepest first, again until none
    is left (a mount may be stacked, or propagate), at most 10 rounds. Returns the
    mount points unmounted.

    `under` must be an absolute directory other than "/": the harness's own."""
    if not os.path.isabs(under) or os.path.realpath(under) == "/":
        raise ValueError(f"cleanup_mounts: {under!r} is not a work directory")
    removed = []
    for _ in range(10):
        todo = set(mounts_under(under))
        if also is not None:
            todo.update(m for m in mountpoints() if also(m))
        if not todo:
            break
        for m in sorted(todo, key=len, reverse=True):
            if umount_detach(m):
                removed.append(m)
    return removed


# --------------------------------------------------------------------------
# Cgroups
# --------------------------------------------------------------------------

def cgroup_roots() -> list[str]:
    """The mount point of every cgroup v1 hierarchy and of the v2 one."""
    return [m for m, t in mountinfo() if t in ("cgroup", "cgroup2")]


def cgroup_pids(path: str) -> list[int]:
    """The processes in one cgroup (not its children), [] when it is gone."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def thaw_cgroup_tree(top: str) -> None:
    """Write THAWED to every v1 freezer.state in a subtree: a frozen task cannot
    die of SIGKILL, so its cgroup could not be removed (nor its cgroups in the
    other hierarchies)."""
    for dp, _, _ in os.walk(top):
        state = os.path.join(dp, "freezer.state")
        if os.path.exists(state):
            try:
                with open(state, "w") as f:
                    f.write("THAWED")
            except OSError:
                pass


def _below_a_cgroup_root(path: str, roots: list[str]) -> bool:
    return ".." not in path.split("/") and any(path.startswith(r.rstrip("/") + "/")
                                               for r in roots)


def remove_cgroup_trees(tops: Iterable[str], rounds: int = 60) -> list[str]:
    """Remove the cgroup subtrees `tops` (ones the harness found its suite made):
    thaw them all first, in every hierarchy, then per directory, deepest first,
    SIGKILL what is in it and rmdir it, again every 50 ms up to `rounds` times
    (a killed process leaves its cgroup only once it has exited). rmdir, never
    rm -rf: cgroupfs wants it so, and it removes nothing that is not a cgroup.
    Returns the tops that are gone.

    A top that is not strictly below a cgroup hierarchy's root is left alone."""
    roots = cgroup_roots()
    tops = [t for t in tops if _below_a_cgroup_root(t, roots)]
    # All are thawed before any is removed: a process frozen in the freezer
    # hierarchy cannot die, and so cannot leave its cgroups in the others.
    for top in tops:
        thaw_cgroup_tree(top)
    me = os.getpid()
    for top in tops:
        for dp in sorted((dp for dp, _, _ in os.walk(top)), key=len, reverse=True):
            for _ in range(rounds):
                for pid in cgroup_pids(dp):
                    if pid > 1 and pid != me:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                try:
                    os.rmdir(dp)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
    return [top for top in tops if not os.path.exists(top)]


# --------------------------------------------------------------------------
# Directories
# --------------------------------------------------------------------------

def checked_rmtree(path: Path | str, inside: Path | str) -> bool:
    """rm -rf of a directory strictly inside `inside` (a directory this run made),
    never through a symlink and never while anything is mounted below it (rmtree
    would go into the mount: a leftover bind mount of / or of a host directory).
    True when the directory is gone (also when it never was there)."""
    path = Path(path)
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return not path.is_symlink() and not path.exists()
    base = Path(inside).resolve()
    if path.is_symlink() or base not in real.parents:
        return False
    if mounts_under(str(real)):
        return False
    shutil.rmtree(real, ignore_errors=True)
    return not real.exists()


def remove_work_dir(workdir: Path, prefix: str) -> bool:
    """Remove the run's own work directory (made by mkdtemp with `prefix`), with
    checked_rmtree's checks; a directory not so named is never removed."""
    return workdir.name.startswith(prefix) and checked_rmtree(workdir, workdir.parent)


# --------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------

def sh_quote(s: str) -> str:
    """`s` as one word for sh (the wrappers hold paths with any characters)."""
    return "'" + s.replace("'", "'\"'\"'") + "'"


def resolve_binary(spec: str) -> str | None:
    """An absolute path for a runtime given as a path or as a name on PATH (the
    wrappers exec it from other working directories), None when not executable."""
    if "/" in spec:
        p = os.path.abspath(spec)
        return p if os.access(p, os.X_OK) else None
    found = shutil.which(spec)
    return os.path.abspath(found) if found else None


def find_krun(opt: str | None) -> str | None:
    """--krun PATH, else krun on PATH, else /usr/local/bin/krun (where scripts/setup
    puts it; sudo's PATH may lack /usr/local/bin)."""
    if opt:
        return resolve_binary(opt)
    return resolve_binary("krun") or resolve_binary("/usr/local/bin/krun")


def runtime_version(binary: str) -> str:
    """The first line `binary --version` prints, for the report."""
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (p.stdout or p.stderr).strip()
    return text.splitlines()[0] if text else f"exit {p.returncode}"


def delete_containers(runtime_argv: list[str], root: Path | str, timeout: float = 30) -> list[str]:
    """`delete --force` every container left in a state root of this run, with the
    runtime that made it (`runtime_argv` must already point it at `root`). Only
    real directories named like SAFE_ID are taken for containers. Returns their ids."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    left = []
    for e in entries:
        if not e.is_dir(follow_symlinks=False) or not SAFE_ID.match(e.name):
            continue
        left.append(e.name)
        try:
            subprocess.run([*runtime_argv, "delete", "--force", e.name],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return left


# --------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------

def take_suite_lock(prog: str) -> TextIO:
    """flock SUITE_LOCK, waiting (and saying so) while another run holds it. The
    lock lasts as long as the returned file is open: close it to release it."""
    SUITE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lockf = open(SUITE_LOCK, "w")  # held open for the whole run
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"{prog}: another suite run (runtime-tools' or crun's) holds {SUITE_LOCK}; "
              "waiting", file=sys.stderr, flush=True)
        fcntl.flock(lockf, fcntl.LOCK_EX)
    return lockf
