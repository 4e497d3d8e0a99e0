"""The host's KM: checked and pinned before any container gets it."""

from __future__ import annotations

import hashlib
import os
import stat

from krun.errors import KrunError

KM_IN_CONTAINER = "/opt/kontain/bin/km"
INIT_BINARIES = ("/sbin/docker-init", "/dev/init")


def verify_km(path: str, pin: str | None) -> str:
    """Refuse a KM that is missing, not executable, a symlink out of its directory, or
    writable by anyone but root, or whose sha256 differs from the pin. Returns the digest."""
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise KrunError(f"KM {path}: no such file or directory "
                        "(install Kontain's KM or run scripts/setup)") from None
    real = path
    if stat.S_ISLNK(lst.st_mode):
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.dirname(os.path.realpath(os.path.dirname(path)
                                                                     + "/.")):
            raise KrunError(f"KM {path}: a symlink out of its directory (to {real}): refused")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise KrunError(f"KM {path}: no such file or directory") from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise KrunError(f"KM {path}: permission denied (not an executable file)")
    for what, info in ((real, st), (os.path.dirname(real), os.stat(os.path.dirname(real)))):
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise KrunError(f"KM {path}: {what} is writable by non-root: refused")
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if pin and pin.lower() != hexdigest:
        raise KrunError(f"KM {path}: sha256 {hexdigest} does not match the pinned {pin}")
    return hexdigest
