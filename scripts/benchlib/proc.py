"""Timed process spawns, peak-RSS spawns, and runtimes with a private --root each.

A timed sample is posix_spawn + wait4 between two monotonic clock reads: the same
fork+exec+wait a container engine pays.

Its rusage is no good for memory, though: exec() folds the high-water RSS of the
address space it replaces into ru_maxrss, and posix_spawn's child replaces ours (this
Python process, ~17 MB), hiding any runtime smaller than that. So RSS is taken from
calls made outside the clock, forked by a static busybox shell (a few hundred KiB) and
handed back to us, the subreaper, for wait4.
"""

from __future__ import annotations

import ctypes
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
BUSYBOX = "/bin/busybox"
# Start the command in the background so the shell, not us, forks it; print its pid.
_SMALL_PARENT = '"$@" >/dev/null & echo $!'


class CommandFailed(Exception):
    def __init__(self, argv: list[str], code: int, stderr: str) -> None:
        self.argv, self.code, self.stderr = argv, code, stderr
        last = stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        super().__init__(f"`{' '.join(argv)}` exited {code}: {last[0][:300]}")


@dataclass
class Sample:
    ms: float
    maxrss_kib: int
    code: int


class Spawner:
    """Runs commands with stdin/stdout on /dev/null and stderr kept for error messages.

    `timing` says what calls are for: True while rounds are timed (plain spawns), False
    otherwise (fixtures, clean-up, RSS rounds), when a runtime's calls go through the
    small parent and their peak RSS is recorded.
    """

    def __init__(self) -> None:
        self._null_in = os.open(os.devnull, os.O_RDONLY)
        self._null_out = os.open(os.devnull, os.O_WRONLY)
        # A file, not a pipe: containers inherit stderr and would hold a pipe open.
        self._err = tempfile.TemporaryFile()
        self.timing = False

    def _reset_stderr(self) -> int:
        errfd = self._err.fileno()
        os.ftruncate(errfd, 0)
        os.lseek(errfd, 0, os.SEEK_SET)
        return errfd

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            check: bool = True) -> Sample:
        actions = [(os.POSIX_SPAWN_DUP2, self._null_in, 0),
                   (os.POSIX_SPAWN_DUP2, self._null_out, 1),
                   (os.POSIX_SPAWN_DUP2, self._reset_stderr(), 2)]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ if env is None else env,
                             file_actions=actions)
        status, usage = _wait_for(pid)[pid]
        t1 = time.perf_counter_ns()
        return self._result(argv, status, usage.ru_maxrss, t1 - t0, check)

    def run_small_parent(self, argv: list[str], check: bool = True) -> Sample:
        """Like run(), with a true ru_maxrss; its time includes the shell's start."""
        r, w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, self._null_in, 0),
                   (os.POSIX_SPAWN_DUP2, w, 1),
                   (os.POSIX_SPAWN_DUP2, self._reset_stderr(), 2)]
        t0 = time.perf_counter_ns()
        try:
            shell = os.posix_spawn(BUSYBOX, [BUSYBOX, "sh", "-c", _SMALL_PARENT, "sh", *argv],
                                   os.environ, file_actions=actions)
        finally:
            os.close(w)
        with os.fdopen(r) as out:
            pid_text = out.read().strip()
        if not pid_text.isdigit():
            _wait_for(shell)
            raise CommandFailed(argv, -1, f"busybox sh could not start it: {self.stderr()}")
        # The shell has exited (EOF): its orphan is ours now, as we are a subreaper.
        pid = int(pid_text)
        status, usage = _wait_for(shell, pid)[pid]
        t1 = time.perf_counter_ns()
        return self._result(argv, status, usage.ru_maxrss, t1 - t0, check)

    def _result(self, argv: list[str], status: int, maxrss: int, ns: int,
                check: bool) -> Sample:
        code = os.waitstatus_to_exitcode(status)
        if check and code != 0:
            raise CommandFailed(argv, code, self.stderr())
        return Sample(ns / 1e6, maxrss, code)

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def close(self) -> None:
        os.close(self._null_in)
        os.close(self._null_out)
        self._err.close()


def _wait_for(*pids: int) -> dict[int, tuple[int, resource.struct_rusage]]:
    """wait4 until all `pids` are reaped; returns their (status, rusage).

    Any other child that exits meanwhile is reaped too: a zombie we adopted can keep a
    container's init from dying, and so keep a runtime waiting for it.
    """
    done: dict[int, tuple[int, resource.struct_rusage]] = {}
    while len(done) < len(pids):
        pid, status, usage = os.wait4(-1, 0)
        if pid in pids:
            done[pid] = (status, usage)
    return done


def remove_cgroups(prefix: str) -> list[str]:
    """rmdir leftover (empty) cgroups named `prefix`*; returns the ones that stay.

    The safety net after an interrupted run: a runtime that failed to delete its
    container leaves its cgroup, which no root directory remembers.
    """
    base = Path("/sys/fs/cgroup")
    left = []
    for d in [*base.glob(f"{prefix}*"), *base.glob(f"*/{prefix}*")]:
        try:
            d.rmdir()
        except OSError:
            left.append(str(d))
    return left


def become_subreaper() -> None:
    """Adopt orphaned container processes, as a containerd shim or conmon does.

    A container's init outlives the `create` that made it; as our child we can
    waitpid() it the moment it exits instead of polling `state` (which would cost a
    runtime start per poll and blur the timings).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_strays() -> None:
    """Reap adopted processes that exited (exec'd processes, killed inits)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_exit(pid: int, timeout: float = 30.0) -> None:
    """Wait until process `pid` has exited, reaping every adopted process that did.

    Not a blocking waitpid(pid): a container init killed while a process it no longer
    parents (an exec'd one, adopted by us) is a zombie in its pid namespace cannot
    finish dying until we reap that zombie.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            while (reaped := os.waitpid(-1, os.WNOHANG)[0]) != 0:
                if reaped == pid:
                    return
        except ChildProcessError:
            pass
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            return
        # A zombie of ours goes on the next pass; one of someone else's counts as gone.
        if stat[0] in ("Z", "X") and int(stat[1]) != os.getpid():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still alive after {timeout} s")
        time.sleep(0.0005)


@dataclass
class Runtime:
    """An OCI runtime CLI with its own state root; remembers every id it was given."""

    name: str
    binary: str
    root: Path
    spawner: Spawner
    tag: str = ""
    ids: set[str] = field(default_factory=set)
    rss: dict[str, list[int]] = field(default_factory=dict)
    _serial: int = 0

    def __call__(self, *args: str, check: bool = True) -> Sample:
        argv = [self.binary, "--root", str(self.root), *args]
        if self.spawner.timing:
            return self.spawner.run(argv, check=check)
        sample = self.spawner.run_small_parent(argv, check=check)
        self.rss.setdefault(args[0], []).append(sample.maxrss_kib)
        return sample

    def new_id(self, what: str) -> str:
        # The runtime's name in the id: runc and crun name cgroups after the id, and the
        # three runtimes' containers coexist during the list scenario.
        self._serial += 1
        cid = f"kb{self.tag}-{self.name}-{what}{self._serial}"
        self.ids.add(cid)
        return cid

    def remove(self, cid: str) -> None:
        """delete --force, outside any timing."""
        self("delete", "--force", cid, check=False)
        self.ids.discard(cid)
        reap_strays()

    def remove_all(self) -> None:
        """Delete every container we made, and any other the private root still holds."""
        on_disk = set()
        if self.root.is_dir():
            # krun, crun and runc all keep one directory per container in their root.
            on_disk = {p.name for p in self.root.iterdir()
                       if p.is_dir() and not p.name.startswith(".")}
        for cid in sorted(self.ids | on_disk):
            self.remove(cid)
