"""Removing what libcrun made for a container when libcrun itself cannot.

libcrun's delete needs its `status` file. A create killed before libcrun wrote it leaves
a state dir, cgroups and perhaps a process that no libcrun call will find, so krun
removes them itself: the processes by cgroup, the cgroup in every hierarchy, the state
dir. Every path here is derived from a validated id or checked before use: a cgroup
path must be a proper descendant of the hierarchy's root and must not contain krun's own
cgroup, so a bad record can never make krun kill or remove anything else.
"""

from __future__ import annotations

import errno
import os
import time

from krun import fastjson as json

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
KILL_TIMEOUT = 5.0
SIGKILL = 9  # not `import signal`: its enum costs ~7 ms, on every create and delete


def predicted_cgroup(config: dict[str, Any], container_id: str) -> str:
    """The cgroup libcrun 1.8.1's cgroupfs manager gives a container (make_cgroup_path):
    linux.cgroupsPath if absolute, "/" + it if relative, "/<id>" without one."""
    linux = config.get("linux")
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if not isinstance(path, str):
        return "/" + container_id
    return path if path.startswith("/") else "/" + path


def _own_cgroups() -> list[str]:
    try:
        with open("/proc/self/cgroup") as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        return ["/"]


def safe_cgroup(path: str | None) -> str | None:
    """The path if krun may kill and remove that cgroup: normalised, below the root, not
    holding krun itself."""
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    norm = "/" + "/".join(parts)
    for own in _own_cgroups():
        if own == norm or own.startswith(norm + "/"):
            return None
    return norm


def _mounts() -> list[tuple[int, str, str]]:
    """(mount id, mount point, file system type) of each line of our mountinfo."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-") if "-" in fields else -1
                if sep > 4 and len(fields) > sep + 1 and fields[0].isdigit():
                    found.append((int(fields[0]), unescape_mountinfo(fields[4]),
                                  fields[sep + 1]))
    except OSError:
        pass
    return found


def hierarchies() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 controllers and the v2 tree)."""
    return [point for _, point, fstype in _mounts() if fstype in ("cgroup", "cgroup2")]


def _dirs_bottom_up(top: str) -> list[str]:
    out: list[str] = []
    for dirpath, _dirnames, _files in os.walk(top, topdown=False, followlinks=False):
        out.append(dirpath)
    return out


def _pids(dirs: list[str]) -> list[int]:
    pids: list[int] = []
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return pids


def _thaw(dirs: list[str]) -> None:
    # A task frozen by the v1 freezer does not die of SIGKILL until thawed.
    for d in dirs:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(d, name), "w") as f:
                    f.write(value)
            except OSError:
                pass


def existing_cgroup_dirs(path: str | None) -> list[str]:
    """The directories `path` already has, hierarchy by hierarchy: looked at before
    create, they are the user's (a cgroupsPath naming an existing cgroup), not the
    container's, and remove_cgroup(path, keep=them) leaves them alone."""
    norm = safe_cgroup(path)
    if norm is None:
        return []
    return [m + norm for m in hierarchies() if os.path.isdir(m + norm)]


def remove_cgroup(path: str | None, keep: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Kill every process in the cgroup and remove it (with any sub-cgroups) in every
    hierarchy. Returns what could not be removed, as messages.

    `keep`: directories that existed before the container (existing_cgroup_dirs at
    create). A create libcrun refused (a frozen cgroup) or that failed before libcrun
    wrote its status must not thaw, empty or remove a cgroup it did not make: those
    are neither killed nor removed (sub-cgroups the container made below them are)."""
    norm = safe_cgroup(path)
    if norm is None:
        return []
    tops = [m + norm for m in hierarchies() if os.path.isdir(m + norm)]
    if not tops:
        return []
    kept = {os.path.normpath(k) for k in keep if isinstance(k, str)}
    dirs = [d for top in tops for d in _dirs_bottom_up(top) if os.path.normpath(d) not in kept]
    deadline = time.monotonic() + KILL_TIMEOUT
    while True:
        pids = _pids(dirs)
        if not pids or time.monotonic() > deadline:
            break
        _thaw(dirs)
        for pid in pids:
            try:
                os.kill(pid, SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    left = []
    for d in dirs:
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    left.append(f"cgroup {d}: {os.strerror(e.errno or 0)}")
                    break
                time.sleep(0.01)  # a killed task is still exiting
        else:
            left.append(f"cgroup {d}: busy")
    return left


def status_cgroup(state_dir: str) -> str | None:
    """The cgroup path libcrun recorded in the status file, if it got that far."""
    try:
        with open(os.path.join(state_dir, "status"), "rb") as f:
            raw = json.loads(f.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    path = raw.get("cgroup-path") if isinstance(raw, dict) else None
    return path if isinstance(path, str) and path else None


def state_dir_cgroup(state_dir: str, container_id: str) -> str:
    """Without krun's record: the cgroup from the config libcrun copied into the dir."""
    try:
        with open(os.path.join(state_dir, "config.json"), "rb") as f:
            config = json.loads(f.read(16 << 20))
    except (OSError, ValueError, RecursionError):
        config = {}
    return predicted_cgroup(config if isinstance(config, dict) else {}, container_id)


def remove_state_dir(path: str) -> None:
    """`<root>/<id>` (the id is validated, so this is one entry of the root). A link is
    removed, never followed; rmtree walks by file descriptor and does not follow links."""
    if not os.path.lexists(path):
        return  # libcrun removed it: the usual case, which must not pay for shutil
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        elif not _remove_flat_dir(path):
            import shutil

            shutil.rmtree(path)
    except FileNotFoundError:
        pass


def _remove_flat_dir(path: str) -> bool:
    """Remove a directory of files only (libcrun's state dir: status, config.json,
    perhaps exec.fifo) without importing shutil: entries are unlinked relative to a
    descriptor of the directory opened without following a link. False (and the rest
    left to rmtree) when something in it is not a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for name in os.listdir(fd):
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False  # EISDIR (a subdirectory), EPERM...: rmtree's to handle
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError as e:
        return e.errno == errno.ENOENT
    return True


def shares_host_mounts(config: dict[str, Any]) -> bool:
    """No mount namespace of its own: libcrun then mounts /proc, /dev, ... under the
    rootfs in the host's namespace, and nothing would ever unmount them."""
    linux = config.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    if not isinstance(namespaces, list):
        return True
    return not any(isinstance(n, dict) and n.get("type") == "mount" for n in namespaces)


def unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_below(path: str) -> list[tuple[int, str]]:
    """(mount id, mount point) of the host's mounts at or below `path`, in mount order."""
    return [(mount_id, point) for mount_id, point, _ in _mounts()
            if point == path or point.startswith(path + "/")]


def unmount_new(rootfs: str, premounted: list[int]) -> list[str]:
    """Unmount what appeared at or below `rootfs` since create looked (deepest and
    latest first). Never for `/` or a relative path: only a container's own tree."""
    if not isinstance(rootfs, str) or not rootfs.startswith("/") or rootfs.rstrip("/") == "":
        return []
    from krun.runtime._libcrun import lib

    keep = set(premounted)
    left = []
    for mount_id, point in reversed(mounts_below(rootfs)):
        if mount_id in keep:
            continue
        ret = lib.krun_umount(os.fsencode(point), 2)  # MNT_DETACH: busy or not, it goes
        if ret < 0 and -ret not in (errno.EINVAL, errno.ENOENT):
            left.append(f"mount {point}: {os.strerror(-ret)}")
    return left
