"""The host's KM: checked and pinned, by content and by file identity.

libcrun runs KM from its read-only bind mount in the container, and only when that
open file is the one krun hashed here (the same device and inode; libcrun patch 0004),
so KM's /proc/self/exe is a container path it can re-execute for a payload's execve.
"""

from __future__ import annotations

import os
import stat

from krun import filecache
from krun.errors import KrunError
from krun.kontain.native import root_owned_chain, same_file, sha256_fd

KM_IN_CONTAINER = "/opt/kontain/bin/km"
# In the container's /dev tmpfs: KM's management socket (krun.kontain.checkpoint) and
# the snapshot a restore resumes. Here, so a create need not import the checkpoint code.
MGT_IN_CONTAINER = "/dev/.krun-km-mgt"
SNAPSHOT_IN_CONTAINER = "/dev/.krun-snapshot"
KIND = "km-sha256"
_HEX = frozenset("0123456789abcdef")


class HostKM:
    """The KM a container gets: its host path, its digest, and the (device, inode) of
    exactly the file that was hashed."""

    def __init__(self, path: str, real: str, digest: str, dev: int, ino: int) -> None:
        self.path, self.real, self.digest, self.dev, self.ino = path, real, digest, dev, ino


def _resolve(path: str) -> str:
    """KM's real path. A symlink may name another file in KM's own directory (say, a
    versioned km), nothing elsewhere."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise KrunError(f"KM {path}: no such file or directory "
                        "(install Kontain's KM, or krun's release with install.sh)") from None
    except OSError as e:
        raise KrunError(f"KM {path}: {os.strerror(e.errno or 0).lower()}") from None
    real = os.path.realpath(path)
    if stat.S_ISLNK(lst.st_mode):
        home = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if os.path.dirname(real) != home:
            raise KrunError(f"KM {path}: a symlink out of its directory (to {real}): refused")
    return real


def open_km(path: str, pin: str | None, root: str | None = None) -> HostKM:
    """Refuse a KM that is missing, not an executable file, a symlink out of its
    directory, or replaceable by anyone but root (the file or any directory above it),
    or whose sha256 differs from the pin. The digest is taken through a descriptor
    of the very inode that libcrun will accept, or, under a `root`, found in its
    cache by that inode's identity (krun.filecache says why that cannot be fooled):
    hashing KM costs a create more than everything else krun adds for Kontain."""
    real = _resolve(path)
    st = root_owned_chain(real, "KM")
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise KrunError(f"KM {path}: permission denied (not an executable file)")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise KrunError(f"KM {path}: {os.strerror(e.errno or 0).lower()}") from None
    try:
        same_file(fd, st, "KM", path)
        before = os.fstat(fd)
        digest = filecache.lookup(root, KIND, before)
        if digest is None or len(digest) != 64 or not _HEX.issuperset(digest):
            digest = sha256_fd(fd)
            filecache.store(root, KIND, before, os.fstat(fd), digest)
    finally:
        os.close(fd)
    if pin and pin.lower() != digest:
        raise KrunError(f"KM {path}: sha256 {digest} does not match the pinned {pin}")
    return HostKM(path, real, digest, st.st_dev, st.st_ino)
