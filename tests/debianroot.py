"""A clean Debian 12 root filesystem for tests that install krun as a user would.

`debian_root(tmp_base)` extracts the root that scripts/build-debian-root caches (a
debootstrap of bookworm, default variant) into a fresh directory under tmp_base and
yields a `DebianRoot`:

    with debian_root(tmp_path) as root:
        root.copy_in(Path("dist/krun-release.tar.gz"), "/root/krun-release.tar.gz")
        before = root.snapshot()
        root.run("cd /root && tar xf krun-release.tar.gz && ./install.sh",
                 env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=900)
        root.run(["krun", "run", "--bundle", "/root/bb", "c1"])
        root.run("/root/krun-release/uninstall.sh")
        assert root.diff(before, root.snapshot(), ignore=APT_RESIDUE) == []

Every run() is one short-lived `unshare --mount --pid` namespace: the root is bind
mounted on itself (so libcrun's pivot_root works inside the chroot), gets its own /proc,
/sys, the host's cgroup hierarchies, a minimal /dev (with /dev/kvm), a tmpfs /run, the
host's resolv.conf and the shared apt archive cache, and then the command runs chrooted.
When the command ends, the kernel kills whatever it left running (it was the namespace's
pid 1) and the mounts go with the namespace: they never exist in the host's mount table,
so deleting the root can never reach the host's /dev, /sys or cgroups through them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-debian-root"
KRUN_CACHE = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun"))
APT_ARCHIVES = KRUN_CACHE / "debian-root" / "apt-archives"

# What root's login shell has on Debian; nothing of the caller's environment (a venv's
# PATH or PYTHONPATH, pytest's variables) leaks into the root.
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
}

# What apt-get install + purge + autoremove --purge of a package leaves in the root (found
# by test_debianroot's crun round trip): its logs, its binary caches and dpkg's
# bookkeeping. Patterns for diff(ignore=...): fnmatch, "*" crosses "/".
APT_RESIDUE = (
    "/var/log/apt/*",                   # history.log, term.log, eipp.log.xz
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",        # packages that register alternatives
    "/var/cache/apt/pkgcache.bin",      # apt's binary caches, rebuilt at each run
    "/var/cache/apt/srcpkgcache.bin",
    "/var/cache/debconf/*.dat",         # packages with debconf templates
    "/var/cache/debconf/*.dat-old",
    "/var/cache/ldconfig/aux-cache",    # ldconfig's, after a library came and went
    "/var/lib/dpkg/status",             # same packages, but dpkg rewrites Priority:
    "/var/lib/dpkg/status-old",         # fields from the archive's overrides
)

# (type, mode, uid, gid, size, detail): detail is the sha256 of a regular file, the
# target of a symlink, "major:minor" of a device, else None. Directory sizes are 0: ext4
# never shrinks a directory, so its size says nothing about what is in it.
Entry = tuple[str, int, int, int, int, str | None]
Snapshot = dict[str, Entry]

_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "link",
          stat.S_IFCHR: "chr", stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "sock"}
# Nodes of the root's /dev, made from the host's (same numbers and modes).
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "kvm")
_BIND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_STAGE = "/run/host"


class RootCommandError(subprocess.CalledProcessError):
    """A command in the root failed; str() carries the end of its output."""

    def __str__(self) -> str:
        def tail(text: str | None) -> str:
            return (text or "")[-4000:]
        return (f"{super().__str__()}\n--- stdout (end) ---\n{tail(self.stdout)}"
                f"\n--- stderr (end) ---\n{tail(self.stderr)}")


def build_script(*args: str, timeout: float = 1800) -> str:
    """scripts/build-debian-root's one line of output for these arguments."""
    proc = subprocess.run([str(BUILD_SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RootCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc.stdout.strip().splitlines()[-1]


def tarball_path(variant: str = "stock") -> Path:
    """Where the cached root of the current recipe is (or would be)."""
    return Path(build_script("--print-path", "--variant", variant))


def mirror_problem(timeout: float = 5) -> str | None:
    """None when the Debian mirror the root is built from answers, else why not."""
    import urllib.error
    import urllib.request

    mirror = build_script("--print-mirror")
    url = f"{mirror.rstrip('/')}/dists/bookworm/InRelease"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                    timeout=timeout):
            return None
    except (urllib.error.URLError, OSError) as e:
        return f"Debian mirror {mirror} unreachable ({url}: {e})"


def _mount_points() -> list[str]:
    """The host's mount points, with mountinfo's octal escapes (\\040 ...) decoded."""
    with open("/proc/self/mountinfo") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                for line in f]


def mounts_under(path: Path) -> list[str]:
    """Host mount points at or below path."""
    p = str(path)
    return [m for m in _mount_points() if m == p or m.startswith(p + "/")]


class DebianRoot:
    """An extracted Debian root at `path`; see the module doc."""

    def __init__(self, path: Path, tmp_base: Path) -> None:
        self.path = path
        self.tmp_base = tmp_base

    # --- paths -----------------------------------------------------------------------
    def host_path(self, path_in_root: str) -> Path:
        """The host path of path_in_root, resolving symlinks as a process chrooted into
        the root would: an absolute target starts again at the root, ".." stops there.
        So the answer is always inside the root, whatever links the root holds."""
        parts = [p for p in PurePosixPath(path_in_root).parts if p != "/"]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = self.path.joinpath(*done, part)
            if candidate.is_symlink():
                hops += 1
                if hops > 40:
                    raise OSError(f"too many symlinks resolving {path_in_root} in the root")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
                continue
            done.append(part)
        return self.path.joinpath(*done)

    def _mount_target(self, rel: str, kind: str, required: bool = True) -> bool:
        """True if root/rel is a real `kind` ("dir" or "file") with no symlink on the
        way: the mounts are made from the host side of the namespace, where a symlink in
        the root (say /dev -> /host-dev) would point the mount at a host path."""
        p = self.path
        for part in PurePosixPath(rel).parts:
            p = p / part
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                if required:
                    raise RuntimeError(f"{p} is missing: cannot set up the root") from None
                return False
            if stat.S_ISLNK(st.st_mode):
                if required:
                    raise RuntimeError(f"{p} is a symlink: refusing to mount over it")
                return False  # an optional mount (resolv.conf, apt cache) is left out
        ok = stat.S_ISDIR(st.st_mode) if kind == "dir" else stat.S_ISREG(st.st_mode)
        if not ok:
            if required:
                raise RuntimeError(f"{p} is not a {kind}: cannot set up the root")
            return False
        return True

    # --- running ---------------------------------------------------------------------
    def _setup_script(self, binds: Mapping[str, Path]) -> str:
        r = shlex.quote(str(self.path))
        lines = [
            "set -eu",
            # Its own hostname, in its own UTS namespace, as a separate machine has.
            f"hostname {self._hostname()}",
            # pivot_root(2) fails with EINVAL when the caller's root is not the root of a
            # mount (a plain chroot): libcrun's pivot_root needs this self-bind.
            f"mount --bind {r} {r}",
            f"mount -t proc -o nosuid,nodev,noexec proc {r}/proc",
            f"mount -t sysfs -o nosuid,nodev,noexec sysfs {r}/sys",
            # The host's hierarchies (v1 controllers and the unified v2): containers in the
            # root get real cgroups, as on the machine the release is installed on.
            f"mount --rbind /sys/fs/cgroup {r}/sys/fs/cgroup",
            # A minimal /dev of its own rather than the host's devtmpfs, which anything
            # in the root could otherwise write into.
            f"mount -t tmpfs -o nosuid,mode=0755,size=1m dev {r}/dev",
        ]
        group = self._group_ids()
        for name in _DEVICES:
            try:
                st = os.stat(f"/dev/{name}")
            except FileNotFoundError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
            gid = group.get("kvm", st.st_gid) if name == "kvm" else st.st_gid
            lines += [f"mknod -m {stat.S_IMODE(st.st_mode):04o} {r}/dev/{name} {kind} "
                      f"{os.major(st.st_rdev)} {os.minor(st.st_rdev)}",
                      f"chown {st.st_uid}:{gid} {r}/dev/{name}"]
        lines += [
            f"mkdir -m 0755 {r}/dev/pts {r}/dev/shm",
            f"mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid="
            f"{group.get('tty', 5)},nosuid,noexec devpts {r}/dev/pts",
            f"ln -s pts/ptmx {r}/dev/ptmx",
            f"mount -t tmpfs -o nosuid,nodev,mode=1777 shm {r}/dev/shm",
            f"ln -s /proc/self/fd {r}/dev/fd",
            f"ln -s /proc/self/fd/0 {r}/dev/stdin",
            f"ln -s /proc/self/fd/1 {r}/dev/stdout",
            f"ln -s /proc/self/fd/2 {r}/dev/stderr",
            # /run is a tmpfs at boot: state under it (/run/crun, /run/krun) never
            # outlives the command, like a reboot between run()s.
            f"mount -t tmpfs -o nosuid,nodev,mode=0755 run {r}/run",
            f"mkdir -m 1777 {r}/run/lock",
        ]
        if self._mount_target("etc/resolv.conf", "file", required=False):
            lines.append(f"mount --bind -o ro /etc/resolv.conf {r}/etc/resolv.conf")
        if self._mount_target("var/cache/apt/archives", "dir", required=False):
            APT_ARCHIVES.joinpath("partial").mkdir(parents=True, exist_ok=True)
            # .debs are downloaded once for all test runs, and never land in the root.
            lines.append(f"mount --bind {shlex.quote(str(APT_ARCHIVES))} "
                         f"{r}/var/cache/apt/archives")
        if binds:
            lines.append(f"mkdir -m 0755 {r}{_STAGE}")
        for name, src in binds.items():
            if not _BIND_NAME.match(name):
                raise ValueError(f"bind name {name!r}: letters, digits, . _ - only")
            tgt = shlex.quote(f"{self.path}{_STAGE}/{name}")
            src_q = shlex.quote(str(Path(src).resolve(strict=True)))
            make = f"mkdir {tgt}" if Path(src).is_dir() else f": > {tgt}"
            lines += [make, f"mount --rbind -o ro {src_q} {tgt}"]
        # Not exec: the command is pid 2, with ordinary signal semantics, and this shell
        # (pid 1) takes every other process of the namespace down with it when it exits.
        lines.append(f'chroot {r} "$@"')
        return "\n".join(lines)

    def _hostname(self) -> str:
        with contextlib.suppress(OSError):
            name = self.host_path("/etc/hostname").read_text().strip()
            if _HOSTNAME.match(name):
                return name
        return "debian-root"

    def _group_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in self.host_path("/etc/group").read_text().splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    ids[fields[0]] = int(fields[2])
        return ids

    def run(self, cmd: list[str] | str, check: bool = True, timeout: float = 600,
            env: Mapping[str, str] | None = None, input: str | None = None,
            cwd: str = "/", binds: Mapping[str, Path] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run cmd chrooted into the root (a str goes to /bin/sh -c), as root, in cwd.

        The environment is DEFAULT_ENV updated with env. stdin is /dev/null unless input
        is given. binds maps names to host paths mounted read-only at /run/host/NAME for
        this command only (nothing is copied into the root). On timeout the whole
        namespace is killed and subprocess.TimeoutExpired raised; with check, a nonzero
        exit raises RootCommandError. A command killed by signal N exits 128+N."""
        for rel in ("proc", "sys", "dev", "run"):
            self._mount_target(rel, "dir")
        argv_in = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        environ = {**DEFAULT_ENV, **(env or {})}
        inner = ["/usr/bin/env", "-i", "-C", cwd,
                 *(f"{k}={v}" for k, v in environ.items()), *argv_in]
        # --kill-child: if we are killed (timeout), the namespace's pid 1 dies with us.
        argv = ["unshare", "--mount", "--propagation", "private", "--pid", "--uts",
                "--fork", "--kill-child", "--", "/bin/sh", "-c", self._setup_script(binds or {}),
                "debianroot", *inner]
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        result = subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise RootCommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return result

    def copy_in(self, src: Path, dest_in_root: str) -> None:
        """Copy a host file or directory tree to dest_in_root (its full new path; an
        existing directory there is merged into). Modes, times and symlinks are kept;
        the copies are owned by root, as if unpacked by root. The copy runs inside the
        root, so a symlink in the root can never send it to a host path."""
        src = Path(src).resolve(strict=True)
        if not dest_in_root.startswith("/"):
            raise ValueError(f"dest_in_root must be absolute: {dest_in_root}")
        self.run(['sh', '-c', 'mkdir -p -- "$(dirname -- "$2")" && '
                  'cp -a --no-preserve=ownership -T -- "$1" "$2"', "copy_in",
                  f"{_STAGE}/src", dest_in_root], binds={"src": src})

    # --- what is in it ---------------------------------------------------------------
    def snapshot(self, exclude: Iterable[str] = ()) -> Snapshot:
        """Every path of the root (as "/etc/passwd") -> Entry; paths matching an
        exclude pattern (fnmatch) are left out, and so is what is below them."""
        patterns = tuple(exclude)
        root_dev = os.lstat(self.path).st_dev
        snap: Snapshot = {}

        def entry(host: str, st: os.stat_result) -> Entry:
            kind = _TYPES.get(stat.S_IFMT(st.st_mode), "other")
            detail: str | None = None
            size = st.st_size if kind in ("file", "link") else 0
            if kind == "file":
                detail = _sha256(host)
            elif kind == "link":
                detail = os.readlink(host)
            elif kind in ("chr", "blk"):
                detail = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            return (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, detail)

        def fail(e: OSError) -> None:
            raise e  # os.walk would skip an unreadable directory without a word

        prefix = len(str(self.path))

        for dirpath, dirnames, filenames in os.walk(self.path, onerror=fail):
            rel_dir = dirpath[prefix:] or "/"
            keep = []
            for name in sorted(dirnames) + sorted(filenames):
                host = os.path.join(dirpath, name)
                rel = f"{rel_dir.rstrip('/')}/{name}"
                if any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                    continue
                st = os.lstat(host)
                if st.st_dev != root_dev:
                    # Only a mount could do this, and none may exist on the host side.
                    raise RuntimeError(f"{host} is on another filesystem: a mount leaked")
                snap[rel] = entry(host, st)
                if stat.S_ISDIR(st.st_mode):
                    keep.append(name)
            dirnames[:] = keep
        snap["/"] = entry(str(self.path), os.lstat(self.path))
        return snap

    @staticmethod
    def diff(before: Snapshot, after: Snapshot, ignore: Iterable[str] = ()) -> list[str]:
        """Sorted lines "+ PATH (what)" added, "- PATH (what)" removed, "~ PATH (fields)"
        changed; paths matching an ignore pattern (fnmatch, "*" crosses "/") are left
        out."""
        patterns = tuple(ignore)
        lines: list[str] = []
        for path in sorted(before.keys() | after.keys()):
            if any(fnmatch.fnmatchcase(path, p) for p in patterns):
                continue
            old, new = before.get(path), after.get(path)
            if old == new:
                continue
            if new is not None and old is None:
                lines.append(f"+ {path} ({_describe(new)})")
            elif old is not None and new is None:
                lines.append(f"- {path} ({_describe(old)})")
            elif old is not None and new is not None:
                names = ("type", "mode", "uid", "gid", "size", "content")
                what = [f"{n} {_field(n, a)} -> {_field(n, b)}" if n != "content"
                        else "content" for n, a, b in zip(names, old, new, strict=True)
                        if a != b]
                lines.append(f"~ {path} ({', '.join(what)})")
        return lines

    # --- removal ---------------------------------------------------------------------
    def remove(self) -> None:
        """Delete the root, after checking that it is what debian_root() made under
        tmp_base and that nothing is mounted on or below it on the host."""
        path, base = self.path, self.tmp_base.resolve()
        if not path.exists():
            return
        if path.is_symlink() or path.resolve() != path or path.parent != base \
                or not path.name.startswith("debian-root-"):
            raise RuntimeError(f"refusing to remove {path}: not a root made under {base}")
        if left := mounts_under(path):
            raise RuntimeError(f"refusing to remove {path}: mounted below it: {left}")
        # --one-file-system as a second guard: rm never crosses into another filesystem.
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _field(name: str, value: object) -> str:
    return f"{value:04o}" if name == "mode" and isinstance(value, int) else str(value)


def _describe(e: Entry) -> str:
    kind, mode, uid, gid, size, detail = e
    extra = f" -> {detail}" if kind == "link" else f" {size}" if kind == "file" else ""
    return f"{kind} {mode:04o} {uid}:{gid}{extra}"


diff = DebianRoot.diff


@contextlib.contextmanager
def debian_root(tmp_base: Path, variant: str = "stock", keep: bool = False,
                build_timeout: float = 1800) -> Iterator[DebianRoot]:
    """A fresh copy of the cached Debian 12 root (built first if the recipe changed)
    in a new directory under tmp_base, removed on exit unless keep (or
    KRUN_KEEP_DEBIAN_ROOT=1, to look at it after a failure)."""
    tarball = Path(build_script("--variant", variant, timeout=build_timeout))
    base = Path(tmp_base).resolve()
    base.mkdir(parents=True, exist_ok=True)
    root = DebianRoot(Path(tempfile.mkdtemp(prefix="debian-root-", dir=base)), base)
    try:
        subprocess.run(["tar", "-C", str(root.path), "--numeric-owner", "--xattrs",
                        "--xattrs-include=*", "--acls", "-xpf", str(tarball)],
                       check=True, stdin=subprocess.DEVNULL)
        # mkdtemp makes 0700; a root directory is 0755 (tar restores it from "./" too).
        root.path.chmod(0o755)
        yield root
    finally:
        if keep or os.environ.get("KRUN_KEEP_DEBIAN_ROOT") == "1":
            print(f"debianroot: kept {root.path}")
        else:
            root.remove()
