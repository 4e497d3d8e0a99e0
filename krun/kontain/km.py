"""The host's KM: checked, pinned, and opened once for every process that runs it."""

from __future__ import annotations

import os
import stat

from krun.errors import KrunError
from krun.kontain.native import private_ro_fd, root_owned_chain, sha256_fd

KM_IN_CONTAINER = "/opt/kontain/bin/km"


class HostKM:
    """The KM a container gets: its host path, its digest, and `fd`, an executable
    descriptor on a read-only view of exactly the file that was hashed."""

    def __init__(self, path: str, real: str, digest: str, fd: int) -> None:
        self.path, self.real, self.digest, self.fd = path, real, digest, fd


def _resolve(path: str) -> str:
    """KM's real path. A symlink may name another file in KM's own directory (say, a
    versioned km), nothing elsewhere."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise KrunError(f"KM {path}: no such file or directory "
                        "(install Kontain's KM or run scripts/setup)") from None
    except OSError as e:
        raise KrunError(f"KM {path}: {os.strerror(e.errno or 0).lower()}") from None
    real = os.path.realpath(path)
    if stat.S_ISLNK(lst.st_mode):
        home = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if os.path.dirname(real) != home:
            raise KrunError(f"KM {path}: a symlink out of its directory (to {real}): refused")
    return real


def open_km(path: str, pin: str | None) -> HostKM:
    """Refuse a KM that is missing, not an executable file, a symlink out of its
    directory, or replaceable by anyone but root (the file or any directory above it),
    or whose sha256 differs from the pin; the digest is taken through the descriptor
    that will be executed, so what runs is what was hashed."""
    real = _resolve(path)
    st = root_owned_chain(real, "KM")
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise KrunError(f"KM {path}: permission denied (not an executable file)")
    fd = private_ro_fd(real, "KM", st)
    try:
        digest = sha256_fd(fd)
        if pin and pin.lower() != digest:
            raise KrunError(f"KM {path}: sha256 {digest} does not match the pinned {pin}")
    except BaseException:
        os.close(fd)
        raise
    return HostKM(path, real, digest, fd)
