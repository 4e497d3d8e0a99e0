"""Values derived from a file (KM's sha256, the parsed host config), remembered under
`<root>/.krun/cache/` by the file's identity, so a create need not re-read the file.

An entry is named by the file's (device, inode, size, mtime, ctime) and holds the
value. It is used only when all five still match, and only from a directory this euid
owns that nobody else may write (mode 0700): root's cache cannot be forged by anyone
who could not also replace the file. Why a match means the same bytes: any write, a
truncate, a rename onto the path, a chmod or a utimensat (which can put mtime back, but
not ctime) sets ctime to the current time; a new file at the path is a new inode or at
least a new ctime. The one hole is the clock's coarseness: a file written twice within
one timer tick keeps one ctime. So, as git does for its index ("racy git"), a value is
recorded only when the file's ctime was already `SETTLED_NS` in the past before it was
read, and the file's identity was the same after the read: a later change then cannot
fall in the tick the entry names. Anything else (no root, an untrusted directory, a
full disk) just means the value is computed again: this is a cache, never a source.
"""

from __future__ import annotations

import os

CACHE = "cache"
SETTLED_NS = 2_000_000_000
MAX_ENTRY_BYTES = 1 << 16


def identity(st: os.stat_result) -> str:
    return f"{st.st_dev}.{st.st_ino}.{st.st_size}.{st.st_mtime_ns}.{st.st_ctime_ns}"


def _directory(root: str) -> str:
    from krun.runtime.records import RECORDS

    return os.path.join(root, RECORDS, CACHE)


def trusted(directory: str) -> bool:
    """A directory only this euid could have written into (not followed if a link)."""
    try:
        return _trusted(os.lstat(directory))
    except OSError:
        return False


def _trusted(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def lookup(root: str | None, kind: str, st: os.stat_result) -> str | None:
    """The `kind` value recorded for the file `st` describes; None when there is none."""
    if not root:
        return None
    # The directory is opened without following a link and judged by that descriptor,
    # the entry opened through it: what is judged is what is read.
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dfd = os.open(_directory(root), nofollow | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        if not _trusted(os.fstat(dfd)):
            return None
        fd = os.open(f"{kind}-{identity(st)}", nofollow | os.O_NONBLOCK, dir_fd=dfd)
        try:
            data = os.read(fd, MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    if len(data) > MAX_ENTRY_BYTES:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def settled(st: os.stat_result) -> bool:
    """Whether a value read from this file now may be recorded (see the module doc)."""
    import time

    return time.time_ns() - st.st_ctime_ns > SETTLED_NS


def store(root: str | None, kind: str, before: os.stat_result, after: os.stat_result,
          value: str) -> None:
    """Record `value` for the file, read between the stats `before` and `after`."""
    if not root or identity(before) != identity(after) or not settled(before):
        return
    data = value.encode()
    if len(data) > MAX_ENTRY_BYTES:
        return
    directory = _directory(root)
    try:
        # Only the leaf: `.krun` itself is made (0700) by krun.runtime.records.
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if _trusted(os.fstat(dfd)):
            _write(dfd, kind, f"{kind}-{identity(before)}", data)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _write(dfd: int, kind: str, name: str, data: bytes) -> None:
    tmp = f".{name}.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        # Renamed into place: a concurrent reader sees the whole value or none.
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        _unlink(dfd, tmp)
        return
    # The file changed (an upgraded KM, an edited config): its old entries are dead,
    # and so are temporary ones whose writer died.
    for other in os.listdir(dfd):
        if (other.startswith(f"{kind}-") and other != name) or \
                (other.startswith(f".{kind}-") and not _alive(other.rpartition(".")[2])):
            _unlink(dfd, other)


def _alive(pid: str) -> bool:
    """Whether the writer of a temporary entry may still be writing it."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except OSError:
        return True
    return True


def _unlink(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass
