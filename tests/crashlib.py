"""Crash-consistency harness for krun: fault-injected lifecycles and a leak inventory.

The promise under test: whatever happened to a container (krun SIGKILLed at any point of
create/start/run/delete, the container's init SIGKILLed, ENOSPC in the state root),
`krun --root R delete --force ID` exits 0 and removes everything the container had,
and the id can be used again.

* `inventory(root, cid, bundle)` lists, read-only, what is left of a container: state
  dir, krun's record, cgroups in every hierarchy, mounts, processes, fifos, the network
  lease, NAT rules and the veth. An empty list means clean.
* `scrub(root, cid, bundle)` removes what `inventory` found, so that one leak does not
  spoil the lifecycles after it. It only touches what is provably the harness's own:
  ids with the `krt-crash-` prefix, paths under /run/krun-tests/ or the harness's tmp
  dirs, processes in a `krt-crash-` cgroup or chrooted into one of its bundles.
* `Harness.campaign(...)` runs seeded random lifecycles (see `draw_plan`) on a few
  worker threads and returns a `Campaign` with per-fault counts and every finding.

Used by tests/test_crash.py (CI) and scripts/crash-campaign (1,000+ on demand).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KRUN = os.environ.get("KRUN_CRASH_KRUN") or shutil.which("krun") or "/usr/local/bin/krun"
ROOTFS = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun")) / "rootfs" / "busybox"
PAYLOADS = REPO / "km_payloads"
ROOTS_BASE = Path("/run/krun-tests")
CGROUP_BASE = Path("/sys/fs/cgroup")
NETWORK_JSON = Path("/run/krun/.krun/network.json")
NETWORK_LOCK = Path("/run/krun/.krun/network.lock")
ID_PREFIX = "krt-crash-"

KINDS = ("plain", "network", "kontain")
KIND_WEIGHTS = (0.8, 0.1, 0.1)
# scenario -> its krun steps; "kill" is `kill ID KILL` and a wait for the init to exit.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "create-start-kill-delete": ("create", "start", "kill", "delete"),
    "run-detached": ("run-d", "kill", "delete"),
    "run-foreground": ("run",),
    "force-delete-running": ("run-d", "delete-force"),
    "force-delete-created": ("create", "delete-force"),
}
FAULT_KINDS = ("krun-kill", "init-kill", "enospc")
# krun SIGKILLed mid-command is the fault with the most places to land (every step,
# every moment of it): half of the faulted lifecycles.
FAULT_WEIGHTS = (0.5, 0.25, 0.25)
FAULTS = ("none", *FAULT_KINDS)
DELAY_SPREAD = 1.2  # fault delays are drawn from 0 .. 1.2 x a command's typical duration
STEP_TIMEOUT = 30.0  # seconds; longer is a hang
EXIT_TIMEOUT = 10.0  # for an init to die after SIGKILL

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


# ---------------------------------------------------------------------------- inventory

def veth_names(cid: str) -> tuple[str, str]:
    """The host end of a container's veth (krun/network/bridge.py) and its peer's name
    before it moves into the container's netns."""
    host = "kr" + hashlib.sha256(cid.encode()).hexdigest()[:12]
    return host, host + "p"


def cgroup_hierarchies() -> list[Path]:
    """Every mounted hierarchy: v1 controllers, named ones, and the v2 tree."""
    found: dict[str, Path] = {}
    if (CGROUP_BASE / "cgroup.controllers").exists():  # pure v2
        found[str(CGROUP_BASE)] = CGROUP_BASE
    with contextlib.suppress(OSError):
        for entry in os.scandir(CGROUP_BASE):
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                found.setdefault(real, Path(entry.path))
    return sorted(found.values())


def cgroup_dirs(needle: str) -> list[Path]:
    """Cgroup dirs, at any depth of any hierarchy, whose name contains `needle`."""
    hits: list[Path] = []

    def walk(path: str) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if needle in e.name:
                    hits.append(Path(e.path))
                walk(e.path)

    for h in cgroup_hierarchies():
        walk(str(h))
    return hits


def _read(path: str | Path, limit: int = 1 << 16) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return None


def _inside(path: str | None, base: Path | None) -> bool:
    if not path or base is None:
        return False
    path = path.removesuffix(" (deleted)")
    b = str(base)
    return path == b or path.startswith(b + "/")


def _rootfs_ids(bundle: Path | None) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the bundle's rootfs dirs (its own and its run bundles'): a
    pivoted container process reads `/` through /proc/PID/root, but stat() of that
    link is the rootfs dir itself."""
    ids: set[tuple[int, int]] = set()
    if bundle is None:
        return ids
    for d in (bundle, *(e.path for e in _scandir(bundle) if e.is_dir(follow_symlinks=False))):
        with contextlib.suppress(OSError):
            st = os.stat(os.path.join(d, "rootfs"))
            ids.add((st.st_dev, st.st_ino))
    return ids


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def _in_rootfs(pid: int, link: str, rootfs: set[tuple[int, int]]) -> bool:
    try:
        st = os.stat(f"/proc/{pid}/{link}")
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in rootfs


def _pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _cgroup_mentions(text: str | None, cid: str) -> bool:
    """True if a /proc/PID/cgroup names a cgroup whose path has a component with cid."""
    if not text:
        return False
    return any(cid in comp for line in text.splitlines()
               for comp in line.split(":", 2)[-1].split("/"))


def _proc_state(pid: int) -> str:
    """R, S, D, Z, ... ("" if gone)."""
    text = _read(f"/proc/{pid}/stat") or ""
    return text.rsplit(")", 1)[-1].split()[0] if ")" in text else ""


def _dead(pid: int) -> bool:
    return _proc_state(pid) in ("", "Z", "X")


def _comm(pid: int) -> str:
    return (_read(f"/proc/{pid}/comm") or "?").strip()


def _argv(pid: int) -> list[str]:
    raw = _read(f"/proc/{pid}/cmdline") or ""
    return [a for a in raw.split("\0") if a]


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, whole line) for every mount the harness can see."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            out.append((fields[4].replace("\\040", " "), line.strip()))
    return out


def _flock(fd: int, how: int, timeout: float = STEP_TIMEOUT) -> bool:
    """flock with a deadline (krun's ipam takes LOCK_EX on network.lock)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def read_leases() -> tuple[dict[str, list[str]], str | None]:
    """network.json's leases (ip -> [root, id]) and, when unreadable, why. krun replaces
    the file atomically (krun/network/ipam.py), so a plain read sees a whole version."""
    try:
        data = NETWORK_JSON.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        return {}, f"{NETWORK_JSON}: {e}"
    if not data:
        return {}, None
    try:
        return dict(json.loads(data).get("leases", {})), None
    except (ValueError, AttributeError) as e:
        return {}, f"{NETWORK_JSON} is not valid JSON ({e}): {data[:80]!r}"


def nat_rules(needle: str) -> tuple[list[str], str | None]:
    """`iptables -t nat -S` lines with krun's comment for `needle` (an id or id prefix)."""
    try:
        proc = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True,
                              text=True, timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [], "iptables -t nat -S hung"
    if proc.returncode != 0:
        return [], f"iptables -t nat -S exited {proc.returncode}: {proc.stderr.strip()}"
    return [line for line in proc.stdout.splitlines() if f"krun:{needle}" in line], None


def inventory(root: str | Path, cid: str, bundle: str | Path | None, *, nat: bool = True,
              ignore_mounts: Iterable[str] = ()) -> list[str]:
    """What is left of container `cid` (state under `root`, bundle dir `bundle`), as
    human-readable strings; empty means clean. Read-only.

    `ignore_mounts`: mount points the caller made itself (a tmpfs mounted as the root).
    `nat=False` skips the iptables listing (~15 ms) for a container that never asked
    for networking; the campaign sweeps for any `krun:krt-crash-` rule at its end.
    """
    root = Path(root)
    bundle_path = Path(bundle) if bundle else None
    found: list[str] = []
    sdir = root / cid
    record = root / ".krun" / f"{cid}.json"
    if os.path.lexists(sdir):
        try:
            what = ", ".join(sorted(os.listdir(sdir))) or "empty"
        except OSError as e:
            what = e.strerror or str(e)
        found.append(f"state dir {sdir} ({what})")
    if os.path.lexists(record):
        found.append(f"record {record} ({(_read(record, 200) or '')!r})")
    for d in (root, root / ".krun"):
        with contextlib.suppress(OSError):
            for name in os.listdir(d):
                p = d / name
                if cid in name and p not in (sdir, record):
                    found.append(f"stray entry {p}")
    # fifos anywhere under the root and directly in the bundle
    with contextlib.suppress(OSError):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISFIFO(os.lstat(p).st_mode) and (cid in p or dirpath == str(root)):
                        found.append(f"fifo {p}")
    if bundle_path is not None:
        with contextlib.suppress(OSError):
            for e in os.scandir(bundle_path):
                if stat.S_ISFIFO(e.stat(follow_symlinks=False).st_mode):
                    found.append(f"fifo {e.path}")
    for cg in cgroup_dirs(cid):
        procs = (_read(cg / "cgroup.procs") or "").split()
        found.append(f"cgroup {cg}" + (f" (procs {' '.join(procs)})" if procs else ""))
    ignore = set(map(str, ignore_mounts))
    for mnt, line in _mountinfo():
        if mnt in ignore:
            continue
        if cid in line or (bundle_path is not None and str(bundle_path) in line) or \
                _inside(mnt, root):
            found.append(f"mount {mnt} ({line.split(' - ', 1)[-1]})")
    me = os.getpid()
    state_prefix = str(sdir)
    rootfs = _rootfs_ids(bundle_path)
    for pid in _pids():
        # A zombie holds nothing but its pid; reaping it is its parent's job (here pid 1,
        # which reaps lazily), and it is no longer a member of any cgroup.
        if pid == me or _dead(pid):
            continue
        why = []
        if _cgroup_mentions(_read(f"/proc/{pid}/cgroup"), cid):
            why.append("in its cgroup")
        for link in ("root", "cwd"):
            if _inside(_readlink(f"/proc/{pid}/{link}"), bundle_path):
                why.append(f"{link} in the bundle")
            elif _in_rootfs(pid, link, rootfs):
                why.append(f"{link} is the bundle's rootfs")
        argv = _argv(pid)
        if any(cid in a for a in argv):
            why.append("the id in its argv")
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = _readlink(f"/proc/{pid}/fd/{fd}")
                if target and (target.startswith(state_prefix) or cid in target or
                               _inside(target, bundle_path)):
                    why.append(f"fd {fd} -> {target}")
                    break
        if why:
            found.append(f"process {pid} ({_comm(pid)}: {shlex.join(argv)[:120]}): "
                         + ", ".join(why))
    leases, problem = read_leases()
    if problem:
        found.append(f"lease file: {problem}")
    found += [f"network lease {ip} -> {owner}" for ip, owner in leases.items()
              if isinstance(owner, list) and len(owner) == 2 and owner[1] == cid]
    if nat:
        rules, problem = nat_rules(cid)
        if problem:
            found.append(problem)
        found += [f"NAT rule: {r}" for r in rules]
    for name in veth_names(cid):
        if os.path.lexists(f"/sys/class/net/{name}"):
            found.append(f"veth {name}")
    return found


# ------------------------------------------------------------------------------- scrub

def _check_ours(cid: str, *paths: Path | None) -> None:
    """Refuse ids without the harness's prefix, and paths that are not strictly inside
    /run/krun-tests/crash-* or the tmp dir (never those dirs themselves)."""
    if not cid.startswith(ID_PREFIX) or "/" in cid or len(cid) > 200 or \
            any(c in cid for c in "\0\n \t\"'"):
        raise ValueError(f"refusing to scrub {cid!r}: not a harness id")
    for p in paths:
        if p is None:
            continue
        real = Path(os.path.realpath(p))
        for base in (ROOTS_BASE, Path(os.path.realpath(tempfile.gettempdir()))):
            rel = real.parts[len(base.parts):]
            if real.parts[:len(base.parts)] == base.parts and rel and \
                    (base != ROOTS_BASE or rel[0].startswith("crash-")):
                break
        else:
            raise ValueError(f"refusing to touch {p}: not inside {ROOTS_BASE}/crash-* "
                             "or the tmp dir")


def pid_is_ours(pid: int, cid: str, bundle: Path | None) -> bool:
    """A process the harness may kill: in a cgroup of this krt-crash- id, or living
    (root or cwd) inside one of its bundles."""
    if not cid.startswith(ID_PREFIX):
        return False
    if _cgroup_mentions(_read(f"/proc/{pid}/cgroup"), cid):
        return True
    rootfs = _rootfs_ids(bundle)
    return any(_inside(_readlink(f"/proc/{pid}/{link}"), bundle) or
               _in_rootfs(pid, link, rootfs) for link in ("root", "cwd"))


def kill_ours(pid: int, cid: str, bundle: Path | None) -> bool:
    """SIGKILL `pid` if it is the harness's (checked through a pidfd, so no pid reuse)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not pid_is_ours(pid, cid, bundle):
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def umount(path: str | Path) -> None:
    """Unmount, lazily if busy. Raises OSError when neither works."""
    b = os.fsencode(str(path))
    if _libc.umount2(b, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EINVAL:  # not a mount point (any more)
        return
    if _libc.umount2(b, MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {path}: {os.strerror(err)}")


def mount_tmpfs(path: str | Path, options: str) -> None:
    if _libc.mount(b"tmpfs", os.fsencode(str(path)), b"tmpfs", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs -o {options} {path}: {os.strerror(err)}")


@contextlib.contextmanager
def locked_leases() -> Iterator[dict[str, list[str]]]:
    """network.json under krun's own host-network lock (krun/network/ipam.py), replaced
    atomically on exit as krun does."""
    fd = os.open(NETWORK_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if not _flock(fd, fcntl.LOCK_EX):
            raise OSError(errno.EAGAIN, f"{NETWORK_LOCK} stayed locked")
        data = NETWORK_JSON.read_bytes() if NETWORK_JSON.exists() else b""
        leases: dict[str, list[str]] = json.loads(data).get("leases", {}) if data else {}
        before = dict(leases)
        yield leases
        if leases != before:
            tmp = NETWORK_JSON.with_name(NETWORK_JSON.name + ".harness-tmp")
            tmp.write_text(json.dumps({"leases": leases}))
            os.replace(tmp, NETWORK_JSON)
    finally:
        os.close(fd)


def scrub(root: str | Path, cid: str, bundle: str | Path | None,
          keep_mounts: Iterable[str] = ()) -> list[str]:
    """Remove what `inventory` reports for a harness container; returns what it did."""
    root = Path(root)
    bundle_path = Path(bundle) if bundle else None
    _check_ours(cid, root, bundle_path)
    done: list[str] = []
    cgroups = cgroup_dirs(cid)
    for cg in cgroups:  # a frozen process cannot die
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError):
                (cg / name).write_text(value)
    victims = [pid for pid in _pids() if pid != os.getpid() and kill_ours(pid, cid, bundle_path)]
    if victims:
        done.append(f"killed {victims}")
    # krun processes still working on this id (a createRuntime hook, an iptables run
    # by a killed krun): they finish on their own; wait for them.
    deadline = time.monotonic() + EXIT_TIMEOUT
    while time.monotonic() < deadline:
        alive = [p for p in victims if not _dead(p)]
        busy = [p for p in _pids() if p != os.getpid() and not _dead(p) and
                any(cid in a for a in _argv(p))]
        if not alive and not busy:
            break
        time.sleep(0.02)
    subtree = set(cgroups)
    for cg in cgroups:
        with contextlib.suppress(OSError):
            subtree.update(Path(d) for d, _, _ in os.walk(cg))
    for cg in sorted(subtree, key=lambda p: len(p.parts), reverse=True):
        for _ in range(100):
            try:
                cg.rmdir()
                done.append(f"rmdir {cg}")
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    keep = set(map(str, keep_mounts))
    for mnt, line in reversed(_mountinfo()):
        if mnt in keep:
            continue
        if cid in mnt or _inside(mnt, root) or _inside(mnt, bundle_path) or \
                (cid in line and (_inside(mnt, ROOTS_BASE) or
                                  _inside(mnt, Path(tempfile.gettempdir())))):
            with contextlib.suppress(OSError):
                umount(mnt)
                done.append(f"umount {mnt}")
    rules, _ = nat_rules(cid)
    for rule in rules:
        args = shlex.split(rule)
        if args[:1] == ["-A"]:
            args[0] = "-D"
            subprocess.run(["iptables", "-w", "-t", "nat", *args], capture_output=True,
                           timeout=STEP_TIMEOUT)
            done.append(f"iptables -D {shlex.join(args[1:])}")
    for name in veth_names(cid):
        if os.path.lexists(f"/sys/class/net/{name}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True,
                           timeout=STEP_TIMEOUT)
            done.append(f"ip link del {name}")
    if NETWORK_JSON.exists():
        with contextlib.suppress(OSError, ValueError), locked_leases() as leases:
            for ip, owner in list(leases.items()):
                if owner == [str(root), cid]:
                    del leases[ip]
                    done.append(f"lease {ip}")
    sdir, record = root / cid, root / ".krun" / f"{cid}.json"
    if os.path.lexists(sdir):
        shutil.rmtree(sdir, ignore_errors=True)
        done.append(f"rm -r {sdir}")
    for d in (root, root / ".krun"):
        with contextlib.suppress(OSError):
            for name in os.listdir(d):
                p = d / name
                if cid in name and p != sdir:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    done.append(f"rm {p}")
    with contextlib.suppress(FileNotFoundError):
        record.unlink()
    return done


def remove_tree(path: Path) -> None:
    """rm -r, only for the harness's own dirs (under /run/krun-tests/crash-* or tmp)."""
    _check_ours(ID_PREFIX + "x", path)
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------- krun

@dataclass
class Step:
    name: str
    argv: list[str]
    rc: int | None = None
    seconds: float = 0.0
    killed_at: float | None = None  # the harness SIGKILLed krun after this many seconds
    hung: bool = False
    stderr: str = ""

    def brief(self) -> str:
        how = f"rc={self.rc}"
        if self.killed_at is not None:
            how = f"SIGKILL@{self.killed_at * 1000:.1f}ms"
        elif self.hung:
            how = "HUNG"
        err = self.stderr.strip().splitlines()
        return f"{self.name} {how} {self.seconds * 1000:.0f}ms" + (f" ({err[-1][:100]})"
                                                                   if err else "")


def wait_pid(pid: int, timeout: float) -> bool:
    """Wait for any process (child or not) to exit, through a pidfd; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def run_krun(name: str, argv: list[str], *, timeout: float = STEP_TIMEOUT,
             kill_after: float | None = None, cwd: str | None = None) -> Step:
    """One krun command with files (not pipes) as stdio: a detached container inherits
    them. `kill_after`: SIGKILL it after that many seconds if it is still running."""
    step = Step(name, argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                cwd=cwd)
        try:
            if kill_after is not None and not wait_pid(proc.pid, kill_after):
                proc.kill()
                step.killed_at = time.monotonic() - t0
            elif not wait_pid(proc.pid, timeout - (time.monotonic() - t0)):
                proc.kill()
                step.hung = True
        finally:
            step.rc = proc.wait()
        step.seconds = time.monotonic() - t0
        err.seek(0)
        step.stderr = err.read().decode(errors="replace")
    return step


def bad_stderr(stderr: str) -> str | None:
    """krun's error contract: at most one line, never a traceback or internal error."""
    lines = stderr.strip().splitlines()
    if len(lines) > 1:
        return f"{len(lines)} lines of stderr: {stderr.strip()[:300]!r}"
    if "Traceback" in stderr or "internal error" in stderr:
        return f"internal error: {stderr.strip()[:300]!r}"
    return None


# ------------------------------------------------------------------------------ plans

@dataclass
class Plan:
    """One lifecycle, fully determined by (seed, fault_rate) except for the delay in
    seconds, which scales the drawn fraction by the measured duration of the target."""
    index: int
    seed: int
    cid: str
    kind: str
    scenario: str
    fault: str
    publish: str | None = None
    target: int = 0  # krun-kill: which step
    fraction: float = 0.0  # of DELAY_SPREAD x the typical duration (target or lifecycle)
    tmpfs: str = ""  # enospc: mount options
    go_on: bool = True  # after a fault, carry on with the scenario's remaining steps
    delay: float | None = None  # seconds: overrides fraction x duration (replays)

    @property
    def steps(self) -> tuple[str, ...]:
        return SCENARIOS[self.scenario]

    def describe(self) -> str:
        f = self.fault
        if f == "krun-kill":
            f += f"({self.steps[self.target]} @ {self.fraction:.3f})"
        elif f == "init-kill":
            f += f"(@ {self.fraction:.3f} of the lifecycle)"
        elif f == "enospc":
            f += f"({self.tmpfs})"
        net = f" publish={self.publish}" if self.publish else ""
        return (f"seed={self.seed} id={self.cid} {self.kind}{net} {self.scenario} fault={f}"
                + ("" if self.go_on or f == "none" else " stop-after-fault"))


def draw_plan(index: int, seed: int, cid: str, fault_rate: float,
              kind: str | None = None, scenario: str | None = None,
              fault: str | None = None) -> Plan:
    """Every random choice of a lifecycle, from its own seed. The draws happen in a fixed
    order whatever the overrides, so a seed replays the same plan."""
    rng = random.Random(seed)
    k = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
    s = rng.choice(list(SCENARIOS))
    u = rng.random()
    fk = rng.choices(FAULT_KINDS, weights=FAULT_WEIGHTS)[0]
    publish_p = rng.random()
    target_u = rng.random()
    fraction = rng.uniform(0, DELAY_SPREAD)
    by_inodes = rng.random() < 0.4
    pages = rng.randint(1, 3)
    inodes = rng.randint(2, 7)
    go_on = rng.random() < 0.5
    kind, scenario = kind or k, scenario or s
    fault = fault or ("none" if u >= fault_rate else fk)
    steps = SCENARIOS[scenario]
    publish = f"{18000 + index % 10000}:80/tcp" if kind == "network" and publish_p < 0.5 \
        else None
    tmpfs = f"mode=0700,size={64 if by_inodes else pages * 4}k" + \
        (f",nr_inodes={inodes}" if by_inodes else "")
    return Plan(index=index, seed=seed, cid=cid, kind=kind, scenario=scenario, fault=fault,
                publish=publish, target=int(target_u * len(steps)), fraction=fraction,
                tmpfs=tmpfs, go_on=go_on)


class Durations:
    """Typical duration of each (kind, scenario, step), from unfaulted runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str, str], list[float]] = {}

    def add(self, key: tuple[str, str, str], seconds: float) -> None:
        with self._lock:
            s = self._samples.setdefault(key, [])
            s.append(seconds)
            del s[:-40]

    def median(self, key: tuple[str, str, str]) -> float:
        with self._lock:
            s = self._samples.get(key)
            return statistics.median(s) if s else 0.1

    def table(self) -> dict[tuple[str, str, str], float]:
        with self._lock:
            return {k: statistics.median(v) for k, v in sorted(self._samples.items())}


# ---------------------------------------------------------------------------- results

@dataclass
class Result:
    plan: Plan
    steps: list[Step] = field(default_factory=list)
    fault_hit: str = ""  # what the fault did: "" for none, else "hit ..." / "missed ..."
    leaks: list[str] = field(default_factory=list)  # after the first delete --force
    reuse_leaks: list[str] = field(default_factory=list)  # after the reuse lifecycle
    unscrubbed: list[str] = field(default_factory=list)  # even scrub could not remove
    delete_problem: str | None = None  # the delete --force contract
    reuse_problem: str | None = None
    hangs: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # an unfaulted step failed
    internal_errors: list[str] = field(default_factory=list)  # in other krun commands
    harness_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.leaks or self.reuse_leaks or self.unscrubbed or self.delete_problem
                    or self.reuse_problem or self.hangs or self.unexpected
                    or self.harness_errors)

    def report(self, replay: str = "") -> str:
        lines = [self.plan.describe() + (f"  [{self.fault_hit}]" if self.fault_hit else "")]
        lines.append("  steps: " + " | ".join(s.brief() for s in self.steps))
        for title, items in (("leak", self.leaks), ("leak after reuse", self.reuse_leaks),
                             ("NOT SCRUBBED", self.unscrubbed), ("hang", self.hangs),
                             ("unexpected failure", self.unexpected),
                             ("internal error", self.internal_errors),
                             ("harness error", self.harness_errors)):
            lines += [f"  {title}: {i}" for i in items]
        if self.delete_problem:
            lines.append(f"  delete --force: {self.delete_problem}")
        if self.reuse_problem:
            lines.append(f"  reuse: {self.reuse_problem}")
        if replay:
            lines.append(f"  replay: {replay}")
        return "\n".join(lines)


def leak_class(leak: str) -> str:
    """A leak string without its ids, pids and paths: for grouping."""
    s = re.sub(r"krt-crash-[\w-]+", "ID", leak)
    s = re.sub(r"/sys/fs/cgroup/[\w,=]+/", "/sys/fs/cgroup/*/", s)
    s = re.sub(r"/run/krun-tests/[\w-]+", "R", s)
    s = re.sub(r"\b\d+\b", "N", s)
    s = re.sub(r"\(procs [N ]+\)", "(procs)", s)
    s = re.sub(r"\(.*", "(...)", s) if s.startswith(("record", "process", "mount")) else s
    s = re.sub(r"kr[0-9a-f]{12}", "krHASH", s)
    return s


@dataclass
class Campaign:
    seed: int
    fault_rate: float
    workers: int
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    global_leftovers: list[str] = field(default_factory=list)

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.failed]

    def to_json(self) -> list[dict[str, Any]]:
        import dataclasses

        return [{"plan": dataclasses.asdict(r.plan), "fault_hit": r.fault_hit,
                 "failed": r.failed, "seconds": r.seconds,
                 "steps": [s.brief() for s in r.steps], "leaks": r.leaks,
                 "reuse_leaks": r.reuse_leaks, "unscrubbed": r.unscrubbed,
                 "delete_problem": r.delete_problem, "reuse_problem": r.reuse_problem,
                 "hangs": r.hangs, "unexpected": r.unexpected,
                 "internal_errors": r.internal_errors, "harness_errors": r.harness_errors}
                for r in self.results]

    def replay_command(self, r: Result) -> str:
        p = r.plan
        return (f"scripts/crash-campaign --replay {p.seed} --kind {p.kind} "
                f"--scenario {p.scenario} --fault {p.fault}")

    def summary(self) -> str:
        rs = self.results
        out = [f"crash campaign: seed={self.seed} fault-rate={self.fault_rate} "
               f"workers={self.workers}: {len(rs)} lifecycles in {self.seconds:.1f}s "
               f"({self.seconds / max(1, len(rs)) * 1000:.0f} ms each, wall; "
               f"{statistics.mean([r.seconds for r in rs] or [0]) * 1000:.0f} ms per "
               "lifecycle per worker)"]
        cols = FAULTS
        head = f"{'scenario':<26}{'kind':<9}" + "".join(f"{c:>11}" for c in cols) + \
            f"{'leaky':>7}{'hangs':>7}"
        out += ["", head, "-" * len(head)]
        groups: dict[tuple[str, str], list[Result]] = {}
        for r in rs:
            groups.setdefault((r.plan.scenario, r.plan.kind), []).append(r)
        for (sc, kind), grp in sorted(groups.items()):
            c = Counter(r.plan.fault for r in grp)
            out.append(f"{sc:<26}{kind:<9}" + "".join(f"{c[f]:>11}" for f in cols)
                       + f"{sum(1 for r in grp if r.leaks or r.reuse_leaks):>7}"
                       + f"{sum(len(r.hangs) for r in grp):>7}")
        out += ["", f"{'fault':<12}{'lifecycles':>11}{'hit':>6}{'leaky':>7}{'leaks':>7}"
                f"{'del-err':>8}{'no-reuse':>9}{'hangs':>6}{'unexp':>6}{'int-err':>8}"
                f"{'ms/lc':>7}"]
        for f in cols:
            grp = [r for r in rs if r.plan.fault == f]
            if not grp:
                continue
            out.append(
                f"{f:<12}{len(grp):>11}"
                f"{sum(1 for r in grp if r.fault_hit.startswith('hit')):>6}"
                f"{sum(1 for r in grp if r.leaks or r.reuse_leaks):>7}"
                f"{sum(len(r.leaks) + len(r.reuse_leaks) for r in grp):>7}"
                f"{sum(1 for r in grp if r.delete_problem):>8}"
                f"{sum(1 for r in grp if r.reuse_problem):>9}"
                f"{sum(len(r.hangs) for r in grp):>6}"
                f"{sum(len(r.unexpected) for r in grp):>6}"
                f"{sum(len(r.internal_errors) for r in grp):>8}"
                f"{statistics.mean(r.seconds for r in grp) * 1000:>7.0f}")
        where: Counter[str] = Counter()
        for r in rs:
            if r.plan.fault == "krun-kill":
                step = r.plan.steps[r.plan.target]
                where[f"{step} {'hit' if r.fault_hit.startswith('hit') else 'missed'}"] += 1
            elif r.plan.fault == "init-kill" and r.fault_hit.startswith("hit"):
                where[f"init during {r.fault_hit.rsplit(' ', 1)[-1]}"] += 1
            elif r.plan.fault == "enospc" and r.fault_hit.startswith("hit"):
                where[f"ENOSPC in {r.fault_hit.split()[1]}"] += 1
        if where:
            out += ["", "where the faults landed: " + ", ".join(
                f"{k} {n}" for k, n in sorted(where.items()))]
        out += ["", "ms per lifecycle (per worker): " + ", ".join(
            f"{k} {statistics.mean(r.seconds for r in rs if r.plan.kind == k) * 1000:.0f}"
            for k in KINDS if any(r.plan.kind == k for r in rs))]
        classes: dict[str, list[Result]] = {}
        for r in rs:
            for item in ([*r.leaks, *r.reuse_leaks, *r.hangs, *r.unexpected,
                          *r.harness_errors, *r.unscrubbed]
                         + ([f"delete --force: {r.delete_problem}"] if r.delete_problem
                            else [])
                         + ([f"reuse: {r.reuse_problem}"] if r.reuse_problem else [])):
                classes.setdefault(leak_class(item), []).append(r)
        if classes:
            out += ["", "finding classes (count, first seed):"]
            for cls, grp in sorted(classes.items(), key=lambda kv: -len(kv[1])):
                first = grp[0]
                out.append(f"  {len(grp):>4} x {cls[:110]}  [e.g. {first.plan.describe()}]")
        ierr: Counter[str] = Counter(leak_class(i) for r in rs for i in r.internal_errors)
        if ierr:
            out += ["", "internal errors / multi-line stderr in faulted commands:"]
            out += [f"  {n:>4} x {cls[:140]}" for cls, n in ierr.most_common()]
        if self.global_leftovers:
            out += ["", "left on the host after the campaign:"]
            out += [f"  {g}" for g in self.global_leftovers]
        return "\n".join(out)


# ---------------------------------------------------------------------------- harness

class Harness:
    """Runs lifecycles. `workdir` holds bundles (a private tmp dir); roots are under
    /run/krun-tests/crash-<tag>-*, ids are krt-crash-<tag>-NNNNN."""

    def __init__(self, workdir: Path | None = None, krun: str = KRUN,
                 log: Callable[[str], None] | None = None) -> None:
        self.krun = krun
        self.own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="krun-crash-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.tag = f"{os.getpid()}"
        self.log = log or (lambda s: None)
        self.durations = Durations()
        self.templates: dict[str, dict[str, Any]] = {}
        self.seen_ids: list[str] = []
        self._lock = threading.Lock()
        ROOTS_BASE.mkdir(mode=0o700, exist_ok=True)

    # ----- bundles

    def template(self, kind: str) -> dict[str, Any]:
        """A config as `krun spec` (or `krun spec --kontain`) writes it."""
        with self._lock:
            if kind not in self.templates:
                d = Path(tempfile.mkdtemp(dir=self.workdir, prefix="spec-"))
                extra = ["--kontain", "--payload", "/sleeper.km"] if kind == "kontain" else []
                proc = subprocess.run([self.krun, "spec", *extra, "--bundle", str(d)],
                                      capture_output=True, text=True, timeout=STEP_TIMEOUT)
                if proc.returncode != 0:
                    raise RuntimeError(f"krun spec failed: {proc.stderr.strip()}")
                config = json.loads((d / "config.json").read_text())
                config["process"]["terminal"] = False
                config["root"]["readonly"] = False
                self.templates[kind] = config
            return json.loads(json.dumps(self.templates[kind]))

    def make_bundle(self, name: str, kind: str, args: list[str]) -> Path:
        b = self.workdir / name
        if b.exists():
            remove_tree(b)
        b.mkdir(mode=0o755)
        rootfs = b / "rootfs"
        if kind == "kontain":
            rootfs.mkdir(mode=0o755)
            (rootfs / "tmp").mkdir(mode=0o1777)
            for payload in ("sleeper.km", "hello.km"):
                shutil.copy(PAYLOADS / payload, rootfs / payload)
        else:
            link_tree(ROOTFS, rootfs)
        config = self.template(kind)
        config["process"]["args"] = args
        (b / "config.json").write_text(json.dumps(config, indent=1))
        return b

    # ----- commands

    def argv(self, root: Path, plan: Plan, step: str, bundle: Path) -> list[str]:
        cid, base = plan.cid, [self.krun, "--root", str(root)]
        net = (["--network", "bridge"] + (["--publish", plan.publish] if plan.publish else [])
               if plan.kind == "network" else [])
        pid_file = ["--pid-file", str(bundle / "pid")]
        if step == "create":
            return [*base, "create", "--bundle", str(bundle), *pid_file, *net, cid]
        if step == "run-d":
            return [*base, "run", "-d", "--bundle", str(bundle / "detached"), *pid_file, *net,
                    cid]
        if step == "run":
            return [*base, "run", "--bundle", str(bundle / "foreground"), *pid_file, *net, cid]
        if step == "start":
            return [*base, "start", cid]
        if step == "kill":
            return [*base, "kill", cid, "KILL"]
        if step == "delete":
            return [*base, "delete", cid]
        if step == "delete-force":
            return [*base, "delete", "--force", cid]
        raise ValueError(step)

    def bundles_for(self, plan: Plan) -> Path:
        """<workdir>/bNNNNN is the create bundle (a long-running process); its
        `detached` and `foreground` subdirs are the run bundles. One rootfs copy each."""
        idx = f"b{plan.index:05d}"
        long_args = ["/sleeper.km"] if plan.kind == "kontain" else ["sleep", "1000"]
        short_args = ["/hello.km"] if plan.kind == "kontain" else ["sleep", "0.1"]
        b = self.make_bundle(idx, plan.kind, long_args)
        steps = plan.steps
        if "run-d" in steps:
            self.make_bundle(f"{idx}/detached", plan.kind, long_args)
        if "run" in steps:
            self.make_bundle(f"{idx}/foreground", plan.kind, short_args)
        return b

    def pid_of(self, plan: Plan, bundle: Path) -> int | None:
        """The container's init: the pid file, else the one process in its cgroup."""
        text = _read(bundle / "pid")
        if text and text.strip().isdigit():
            return int(text.strip())
        for base in (CGROUP_BASE / "pids", CGROUP_BASE / "unified", CGROUP_BASE):
            procs = (_read(base / plan.cid / "cgroup.procs") or "").split()
            if procs:
                return int(procs[0])
        return None

    # ----- one lifecycle

    def lifecycle(self, plan: Plan) -> Result:
        res = Result(plan)
        t0 = time.monotonic()
        root = self.root_for(plan)
        mounted = False
        bundle: Path | None = None
        try:
            if root.exists():
                remove_tree(root)
            root.mkdir(mode=0o700)
            bundle = self.bundles_for(plan)
            if plan.fault == "enospc":
                mount_tmpfs(root, plan.tmpfs)
                mounted = True
            self._scenario(plan, root, bundle, res)
            self.verify(plan, root, bundle, res, tmpfs_root=mounted)
            mounted = False  # verify unmounted it
        except Exception as e:  # the harness's own failure: report, never hide
            import traceback

            res.harness_errors.append(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            with contextlib.suppress(Exception):
                scrub(root, plan.cid, bundle, keep_mounts=[str(root)] if mounted else [])
        finally:
            if mounted or _is_mountpoint(root):
                try:
                    umount(root)
                except OSError as e:
                    res.harness_errors.append(f"cannot unmount {root}: {e}")
            if not res.unscrubbed:
                with contextlib.suppress(OSError, ValueError):
                    if not _is_mountpoint(root):
                        remove_tree(root)
                    if bundle is not None:
                        remove_tree(bundle)
            res.seconds = time.monotonic() - t0
        return res

    def root_for(self, plan: Plan) -> Path:
        # The root's name must not contain the id: a mount of it would "mention" the id.
        return ROOTS_BASE / f"crash-{self.tag}-{plan.index:05d}"

    def verify(self, plan: Plan, root: Path, bundle: Path, res: Result,
               tmpfs_root: bool = False) -> None:
        """The promise: `delete --force` exits 0 with at most one line of stderr, leaves
        nothing, and the id works again. Fills `res`; scrubs whatever was left.
        `tmpfs_root`: root is the harness's tmpfs; it is unmounted after the inventory."""
        with self._lock:
            self.seen_ids.append(plan.cid)
        step = run_krun("check: delete --force",
                        [self.krun, "--root", str(root), "delete", "--force", plan.cid])
        res.steps.append(step)
        if step.hung:
            res.hangs.append(f"check delete --force hung ({step.seconds:.0f}s)")
        if step.rc != 0:
            res.delete_problem = f"exited {step.rc}: {step.stderr.strip()[:300]!r}"
        elif (problem := bad_stderr(step.stderr)) is not None:
            res.delete_problem = problem
        ignore = [str(root)] if tmpfs_root else []
        nat = plan.kind == "network"
        res.leaks = inventory(root, plan.cid, bundle, nat=nat, ignore_mounts=ignore)
        if res.leaks:
            self.log(f"LEAK {plan.describe()}: {res.leaks}")
        if tmpfs_root:
            if res.leaks:  # what lives in the tmpfs must go before it is unmounted
                scrub(root, plan.cid, bundle, keep_mounts=ignore)
            umount(root)
            left = os.listdir(root)
            if left:
                res.leaks.append(f"under the unmounted tmpfs root: {left}")
                remove_tree(root)
                root.mkdir(mode=0o700)
        # The id must work again as krun left it: no scrub before this.
        self._reuse(plan, root, bundle, res)
        after = inventory(root, plan.cid, bundle, nat=nat)
        res.reuse_leaks = [x for x in after if x not in res.leaks]
        if res.leaks or after:
            scrub(root, plan.cid, bundle)
            res.unscrubbed = inventory(root, plan.cid, bundle, nat=True)

    def _scenario(self, plan: Plan, root: Path, bundle: Path, res: Result) -> None:
        steps = plan.steps
        key = (plan.kind, plan.scenario)
        killed_krun = False
        killer: InitKiller | None = None
        if plan.fault == "init-kill":
            total = sum(self.durations.median((*key, s)) for s in steps)
            killer = InitKiller(self, plan, bundle,
                                plan.delay if plan.delay is not None else plan.fraction * total)
            killer.start()

        def fault_active() -> bool:
            # ENOSPC: every step runs on the full disk
            return plan.fault == "enospc" or killed_krun or \
                (killer is not None and (killer.firing or killer.fired_at is not None))

        try:
            for i, name in enumerate(steps):
                kill_after = None
                if plan.fault == "krun-kill" and i == plan.target:
                    kill_after = plan.delay if plan.delay is not None else \
                        plan.fraction * self.durations.median((*key, name))
                if killer:
                    killer.current = name
                step = run_krun(name, self.argv(root, plan, name, bundle),
                                kill_after=kill_after)
                res.steps.append(step)
                if kill_after is not None:
                    killed_krun = step.killed_at is not None
                    res.fault_hit = (f"hit {name} after {step.killed_at * 1000:.1f}ms"
                                     if step.killed_at is not None else
                                     f"missed: {name} ended in {step.seconds * 1000:.1f}ms "
                                     f"< {kill_after * 1000:.1f}ms")
                if step.hung:
                    res.hangs.append(f"{name} hung for {step.seconds:.0f}s: "
                                     f"{shlex.join(step.argv)}")
                if step.killed_at is None:
                    if step.rc != 0 and not fault_active():
                        res.unexpected.append(
                            f"{name} exited {step.rc}: {step.stderr.strip()[:200]!r}")
                    elif (problem := bad_stderr(step.stderr)) is not None:
                        res.internal_errors.append(f"{name}: {problem}")
                    elif step.rc != 0 and not step.stderr.strip() and name != "run":
                        # a foreground run exits with the container's status, silently
                        res.internal_errors.append(f"{name}: exited {step.rc} with no message")
                if not fault_active() and step.rc == 0:
                    self.durations.add((*key, name), step.seconds)
                if name == "kill" and step.rc == 0:
                    pid = self.pid_of(plan, bundle)
                    if pid and pid_is_ours(pid, plan.cid, bundle) and \
                            not wait_pid(pid, EXIT_TIMEOUT):
                        res.hangs.append(f"init {pid} still alive {EXIT_TIMEOUT:.0f}s after "
                                         "kill KILL")
                if fault_active() and not plan.go_on:
                    break
        finally:
            if killer:
                killer.stop()
                res.fault_hit = killer.outcome()
            if plan.fault == "enospc":
                failed = [st for st in res.steps if st.rc != 0]
                res.fault_hit = (f"hit: {failed[0].name} failed: "
                                 f"{failed[0].stderr.strip()[-120:]!r}" if failed else
                                 f"missed: the lifecycle fit in {plan.tmpfs}")

    def _reuse(self, plan: Plan, root: Path, bundle: Path, res: Result) -> None:
        """A fresh create+start+kill+delete of the same id (same kind), all must work."""
        with contextlib.suppress(FileNotFoundError):
            (bundle / "pid").unlink()
        reuse = Plan(index=plan.index, seed=plan.seed, cid=plan.cid, kind=plan.kind,
                     scenario="create-start-kill-delete", fault="none", publish=plan.publish)
        for name in reuse.steps:
            step = run_krun(f"reuse {name}", self.argv(root, reuse, name, bundle))
            res.steps.append(step)
            if step.hung:
                res.hangs.append(f"reuse {name} hung")
            if step.rc != 0:
                res.reuse_problem = f"{name} exited {step.rc}: {step.stderr.strip()[:300]!r}"
                run_krun("reuse cleanup", self.argv(root, reuse, "delete-force", bundle))
                return
            if name == "kill":
                pid = self.pid_of(reuse, bundle)
                if pid and pid_is_ours(pid, plan.cid, bundle) and \
                        not wait_pid(pid, EXIT_TIMEOUT):
                    res.hangs.append(f"reuse: init {pid} alive after kill KILL")

    # ----- campaigns

    def make_plans(self, n: int, fault_rate: float, seed: int, *, calibrate: int = 1,
                   kind: str | None = None, scenario: str | None = None,
                   fault: str | None = None) -> tuple[list[Plan], list[Plan]]:
        """(calibration plans, main plans). Calibration: `calibrate` unfaulted lifecycles
        per (kind, scenario) to measure durations before any fault needs them; they count
        as lifecycles, and the main plans carry all of the round(fault_rate x n) faults."""
        rng = random.Random(seed)
        cal: list[Plan] = []
        kinds = [kind] if kind else [k for k, w in zip(KINDS, KIND_WEIGHTS, strict=True) if w]
        scenarios = [scenario] if scenario else list(SCENARIOS)
        for _ in range(calibrate):
            for k in kinds:
                for s in scenarios:
                    i = len(cal)
                    cal.append(draw_plan(i, rng.getrandbits(32), self.cid(i), 0.0, k, s,
                                         "none"))
        rest = max(0, n - len(cal))
        # Exactly round(rate x n) faulted lifecycles overall, at random places: a fault
        # rate that is a promise, not a binomial draw.
        faulted = set(rng.sample(range(rest), min(rest, round(fault_rate * n))))
        plans = []
        for j in range(rest):
            i = len(cal) + j
            plans.append(draw_plan(i, rng.getrandbits(32), self.cid(i),
                                   1.0 if j in faulted else 0.0, kind, scenario, fault))
        return cal, plans

    def cid(self, index: int) -> str:
        return f"{ID_PREFIX}{self.tag}-{index:05d}"

    def campaign(self, n: int, fault_rate: float, seed: int, workers: int = 2,
                 progress: Callable[[Result, int, int], None] | None = None,
                 plans: tuple[list[Plan], list[Plan]] | None = None, **overrides: Any
                 ) -> Campaign:
        camp = Campaign(seed=seed, fault_rate=fault_rate, workers=workers)
        t0 = time.monotonic()
        cal, main = plans or self.make_plans(n, fault_rate, seed, **overrides)
        total = len(cal) + len(main)
        done = 0

        def one(p: Plan) -> Result:
            r = self.lifecycle(p)
            if progress:
                progress(r, done, total)
            return r

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for batch in (cal, main):
                for r in pool.map(one, batch):
                    camp.results.append(r)
                    done += 1
        camp.seconds = time.monotonic() - t0
        camp.global_leftovers = self.sweep()
        return camp

    def sweep(self) -> list[str]:
        """Anything of this harness's ids still on the host, found by prefix."""
        prefix = f"{ID_PREFIX}{self.tag}-"
        left = [f"cgroup {p}" for p in cgroup_dirs(prefix)]
        rules, problem = nat_rules(prefix)
        left += [f"NAT rule {r}" for r in rules] + ([problem] if problem else [])
        leases, problem = read_leases()
        left += [f"lease {ip} -> {o}" for ip, o in leases.items()
                 if isinstance(o, list) and len(o) == 2 and str(o[1]).startswith(prefix)]
        left += [problem] if problem else []
        left += [f"mount {m}" for m, line in _mountinfo()
                 if prefix in line or f"/crash-{self.tag}-" in m]
        for cid in self.seen_ids:
            left += [f"veth {n} ({cid})" for n in veth_names(cid)
                     if os.path.lexists(f"/sys/class/net/{n}")]
        with contextlib.suppress(OSError):
            left += [f"root {ROOTS_BASE / n}" for n in os.listdir(ROOTS_BASE)
                     if n.startswith(f"crash-{self.tag}-")]
        return left

    def close(self) -> None:
        if self.own_workdir:
            remove_tree(self.workdir)


def _is_mountpoint(path: Path) -> bool:
    return any(m == str(path) for m, _ in _mountinfo())


class InitKiller(threading.Thread):
    """SIGKILLs the container's init `delay` seconds after start(), if it exists then."""

    def __init__(self, h: Harness, plan: Plan, bundle: Path, delay: float) -> None:
        super().__init__(daemon=True)
        self.h, self.plan, self.bundle, self.delay = h, plan, bundle, delay
        self.cancel = threading.Event()
        self.current = ""
        self.fired_at: float | None = None
        # Set before the signal goes out: a step that failed because the init died must
        # see the fault as active even if this thread has not recorded fired_at yet.
        self.firing = False
        self.result = ""

    def run(self) -> None:
        t0 = time.monotonic()
        if self.cancel.wait(self.delay):
            self.result = f"missed: the lifecycle ended before {self.delay * 1000:.0f}ms"
            return
        pid = self.h.pid_of(self.plan, self.bundle)
        during = self.current
        self.firing = pid is not None
        if pid and kill_ours(pid, self.plan.cid, self.bundle):
            self.fired_at = time.monotonic() - t0
            self.result = f"hit init {pid} at {self.fired_at * 1000:.0f}ms during {during}"
        else:
            self.result = f"missed: no init at {self.delay * 1000:.0f}ms (during {during})"

    def stop(self) -> None:
        self.cancel.set()
        self.join()

    def outcome(self) -> str:
        return self.result


APPLETS = frozenset({"sh", "sleep", "true", "false", "echo", "cat", "ls", "ps", "kill", "nc",
                     "env", "id", "mount", "ip"})


def link_tree(src: Path, dst: Path, applets: frozenset[str] | None = APPLETS) -> None:
    """A cheap copy of a rootfs: dirs made, symlinks copied, regular files hard-linked.
    busybox's ~270 applet symlinks cost ~0.3 s to recreate on this VM's ext4, so only
    `applets` are (None: all); every dir, file and other symlink is."""
    os.mkdir(dst, stat.S_IMODE(os.stat(src).st_mode))
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else dst / rel
        for name in list(dirnames):
            s = os.path.join(dirpath, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), target / name)
                dirnames.remove(name)
            else:
                os.mkdir(target / name)
                os.chmod(target / name, stat.S_IMODE(os.stat(s).st_mode))
        for name in filenames:
            s = os.path.join(dirpath, name)
            if os.path.islink(s):
                link = os.readlink(s)
                if applets is None or name in applets or \
                        os.path.basename(link) != "busybox":
                    os.symlink(link, target / name)
            else:
                try:
                    os.link(s, target / name)
                except OSError:
                    shutil.copy2(s, target / name)


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


# --------------------------------------------------------------------------- selftest

SELFTEST_CHAIN = "KRT-CRASH-SELFTEST"


def selftest(workdir: Path) -> list[str]:
    """Fakes one leak of every class, checks that `inventory` reports each, that
    `scrub` removes them all, and that a clean container reads as clean. Returns the
    problems found (empty = the inventory can be trusted)."""
    tag = f"{os.getpid()}"
    cid = f"{ID_PREFIX}{tag}-selftest"
    root = ROOTS_BASE / f"crash-{tag}-selftest"
    bundle = workdir / "selftest-bundle"
    problems: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    mnt = bundle / "mnt"
    made_cgroups: list[Path] = []
    veth, _ = veth_names(cid)
    lease_ip = "10.213.0.254"
    try:
        ROOTS_BASE.mkdir(mode=0o700, exist_ok=True)
        for p in (root, bundle):
            if p.exists():
                remove_tree(p)
        bundle.mkdir(mode=0o755)
        link_tree(ROOTFS, bundle / "rootfs")
        if inventory(root, cid, bundle):
            problems.append(f"a container that never existed is not clean: "
                            f"{inventory(root, cid, bundle)}")
        (root / ".krun").mkdir(parents=True, mode=0o700)
        (root / cid).mkdir()
        os.mkfifo(root / cid / "exec.fifo")
        (root / ".krun" / f"{cid}.json").write_text('{"runtime": "krun", "bun')
        (root / ".krun" / f"{cid}.lock").write_text("")
        for h in ("pids", "unified", "systemd", "memory"):
            base = CGROUP_BASE / h
            if base.is_dir():
                (base / cid).mkdir()
                made_cgroups.append(base / cid)
        nested = CGROUP_BASE / "cpu" / f"{cid}-parent"
        if nested.parent.is_dir():
            (nested / "child").mkdir(parents=True)
            made_cgroups += [nested / "child", nested]
        in_cgroup = subprocess.Popen(["sleep", "60"])
        procs.append(in_cgroup)
        (CGROUP_BASE / "pids" / cid / "cgroup.procs").write_text(str(in_cgroup.pid))
        procs.append(subprocess.Popen(["sleep", "60"], cwd=bundle))
        # a pivoted container's init: its root reads `/`, or as here, not the bundle
        alt = workdir / "selftest-alt"
        alt.mkdir(exist_ok=True)
        procs.append(subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" "$1" && cd / && exec chroot "$1" /bin/sleep 60',
             str(bundle / "rootfs"), str(alt)]))
        py = sys.executable
        procs.append(subprocess.Popen([py, "-c", "import time; time.sleep(60)", cid]))
        procs.append(subprocess.Popen([py, "-c", "import sys, time; f = open(sys.argv[1]); "
                                       "time.sleep(60)", str(root / ".krun" / f"{cid}.json")]))
        mnt.mkdir()
        mount_tmpfs(mnt, "size=4k")
        leases = NETWORK_JSON.exists()
        if leases:
            with locked_leases() as table:
                if lease_ip in table:
                    leases = False
                else:
                    table[lease_ip] = [str(root), cid]
        subprocess.run(["iptables", "-w", "-t", "nat", "-N", SELFTEST_CHAIN],
                       capture_output=True)
        nat = subprocess.run(["iptables", "-w", "-t", "nat", "-A", SELFTEST_CHAIN, "-m",
                              "comment", "--comment", f"krun:{cid}", "-j", "RETURN"],
                             capture_output=True).returncode == 0
        link = subprocess.run(["ip", "link", "add", veth, "type", "dummy"],
                              capture_output=True).returncode == 0
        time.sleep(0.3)  # the interpreters start
        found = inventory(root, cid, bundle)
        expect = {
            "state dir": True, "record": True, "stray entry": True, "fifo": True,
            f"cgroup {CGROUP_BASE}/pids/{cid}": True,
            f"cgroup {CGROUP_BASE}/unified/{cid}": (CGROUP_BASE / "unified").is_dir(),
            f"cgroup {nested}": nested.parent.is_dir(),
            f"process {procs[0].pid} ": True, f"process {procs[1].pid} ": True,
            f"process {procs[2].pid} ": True, f"process {procs[3].pid} ": True,
            f"process {procs[4].pid} ": True,
            f"mount {mnt}": True, f"network lease {lease_ip}": leases,
            "NAT rule": nat, f"veth {veth}": link,
        }
        for prefix, wanted in expect.items():
            if wanted and not any(f.startswith(prefix) for f in found):
                problems.append(f"inventory missed a faked leak: {prefix}")
        for i, why in ((0, "in its cgroup"), (1, "cwd in the bundle"),
                       (2, "root is the bundle's rootfs"), (3, "the id in its argv"),
                       (4, "fd ")):
            if not any(why in f for f in found if f.startswith(f"process {procs[i].pid} ")):
                problems.append(f"inventory did not see process {i} as {why!r}: {found}")
        # processes 3-4 are neither in a krt-crash- cgroup nor in the bundle: scrub must
        # not kill them; they are the selftest's own to stop.
        for p in procs[3:]:
            p.kill()
            p.wait()
        done = scrub(root, cid, bundle)
        left = inventory(root, cid, bundle)
        if left:
            problems.append(f"scrub left {left} (did {done})")
        for p in procs[:3]:
            if p.poll() is None and not wait_pid(p.pid, 2):
                problems.append(f"scrub did not kill {p.args}")
    except Exception as e:
        problems.append(f"selftest failed: {type(e).__name__}: {e}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        with contextlib.suppress(OSError):
            umount(mnt)
        for cg in made_cgroups:
            with contextlib.suppress(OSError):
                cg.rmdir()
        subprocess.run(["iptables", "-w", "-t", "nat", "-F", SELFTEST_CHAIN],
                       capture_output=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-X", SELFTEST_CHAIN],
                       capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        if NETWORK_JSON.exists():
            with contextlib.suppress(OSError, ValueError), locked_leases() as table:
                if table.get(lease_ip) == [str(root), cid]:
                    del table[lease_ip]
        for p in (root, bundle):
            if p.exists() and not _is_mountpoint(p):
                remove_tree(p)
    return problems
