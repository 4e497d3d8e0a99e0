"""Running engine daemons and their clients in private directories, and finding leaks.

Daemons start in their own session, are stopped by pid (never by name), and whatever
they leave (processes naming our directories, mounts under them, cgroups) is found by
looking at /proc, not by trusting the daemon's shutdown.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class Cli:
    """A client command line (e.g. docker -H unix://...) run to completion."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = env

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv + list(args), capture_output=True, text=True,
                              timeout=timeout, input=input, env=self.env,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(self.argv[:1] + list(args))} exited "
                                 f"{proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}")
        return proc

    def out(self, *args: str, timeout: float = 120) -> str:
        return self(*args, timeout=timeout).stdout.strip()

    def pty(self, *args: str, input: bytes = b"", timeout: float = 60) -> tuple[int, str]:
        """Run with a terminal as stdin/stdout/stderr (for -it); returns (rc, output)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(self.argv + list(args), stdin=slave, stdout=slave,
                                stderr=slave, env=self.env, start_new_session=True)
        os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        if input:
            os.write(master, input)
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every holder of the terminal is gone
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif proc.poll() is not None:
                    break
            else:
                proc.kill()
                raise AssertionError(f"{args} still running after {timeout}s: "
                                     f"{b''.join(chunks)!r}")
            return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")
        finally:
            os.close(master)


class Daemon:
    """One daemon process, its log, and how to stop it."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log = name, list(argv), log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True, cwd="/")
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode} at start:\n"
                                   f"{self.log_tail()}")
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Signal the daemon (by pid) and wait; SIGKILL only if it ignores us."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def wait_for(cond: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def processes_mentioning(*needles: str) -> dict[int, str]:
    """Live processes whose command line mentions any of the needles."""
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and any(n in cmd for n in needles):
            found[int(entry)] = cmd
    return found


def kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def mounts_under(*bases: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(b) or point.startswith(f"{b}/") for b in bases):
                out.append(point)
    return out


def unmount_under(*bases: Path) -> list[str]:
    """Unmount everything below the bases, deepest first; returns what was mounted."""
    points = mounts_under(*bases)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return points


def cgroup_dirs(name: str) -> list[Path]:
    """Every cgroup directory called `name` directly under a hierarchy's root."""
    dirs = []
    if CGROUP_ROOT.is_dir():
        for hierarchy in CGROUP_ROOT.iterdir():
            if (hierarchy / name).is_dir():
                dirs.append(hierarchy / name)
    return dirs


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup and its (empty) children, deepest first; live ones stay."""
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


# containerd 1.6 always puts shim sockets in /run/containerd/s whatever its state dir,
# and ctr its FIFOs in /run/containerd/fifo by default.
CONTAINERD_SHARED = (Path("/run/containerd/s"), Path("/run/containerd/fifo"),
                     Path("/run/containerd"))


def absent(paths: Sequence[Path]) -> list[Path]:
    """The paths that do not exist yet (to remove later only what we made)."""
    return [p for p in paths if not p.exists()]


def rmdir_empty(paths: Sequence[Path]) -> list[str]:
    """rmdir each path that is empty; returns what is left inside the others."""
    for d in paths:
        try:
            d.rmdir()
        except OSError:
            pass
    return [str(p) for d in paths if d.is_dir() for p in d.iterdir()
            if p not in paths]


def iptables_chains() -> set[str]:
    chains: set[str] = set()
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in ("nat", "filter"):
            proc = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True,
                                  check=False)
            chains.update(f"{tool}/{table}/{line.split()[1]}" for line in proc.stdout.splitlines()
                          if line.startswith("-N "))
    return chains
