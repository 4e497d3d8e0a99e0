"""Finding and checking a payload inside a container's rootfs, from the host.

Every path is opened by the kernel as the container would see it (openat2 with
RESOLVE_IN_ROOT, in krun's binding): symlinks and `..` resolve inside the root, so a
link can never lead krun out of it. The root is the bundle's rootfs at create, and the
running container's own view (`/proc/<init>/root`, with its mounts) at exec.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from krun.errors import KrunError

MIN_LOAD_ADDRESS = 0x200000  # KM maps guest memory from 2 MiB
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def open_in_root(rootfs: str, path: str, flags: int = os.O_RDONLY) -> int:
    """An fd for container path `path`; raises OSError like open() would."""
    from krun.runtime._libcrun import lib

    fd = lib.krun_open_in_root(os.fsencode(rootfs), os.fsencode(path), flags)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), path)
    return fd


def resolve_in_root(rootfs: str, path: str) -> str:
    """The container path `path` with every symlink resolved inside rootfs."""
    try:
        fd = open_in_root(rootfs, path, os.O_PATH)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KrunError(f"{path}: too many levels of symbolic links") from None
        raise KrunError(f"{path}: {e.strerror.lower()}") from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    root = os.path.realpath(rootfs)
    return "/" + os.path.relpath(real, root).removeprefix(".") if real != root else "/"


def _is_executable_file(rootfs: str, path: str) -> bool:
    try:
        fd = open_in_root(rootfs, path, os.O_PATH)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def find_executable(rootfs: str, name: str, env: list[str], cwd: str) -> str:
    """args[0] as the container would exec it: a path (relative to cwd) or a PATH search.
    Returns the container path to give KM, which opens it in the container's own view."""
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(cwd or "/", name)
        try:
            os.close(open_in_root(rootfs, path, os.O_PATH))
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise KrunError(f"payload {name}: too many levels of symbolic links") from None
            raise KrunError(f"payload {name}: {os.strerror(e.errno or 0).lower()}") from None
        return path
    search = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            search = entry[5:]
    for directory in search.split(":"):
        if not directory:
            continue
        base = directory if directory.startswith("/") else os.path.join(cwd or "/", directory)
        candidate = os.path.join(base, name)
        if _is_executable_file(rootfs, candidate):
            return candidate
    raise KrunError(f'exec: "{name}": executable file not found in $PATH')


def check_payload(rootfs: str, path: str) -> None:
    """A KM payload: x86-64 little-endian ELF, no interpreter, every PT_LOAD >= 2 MiB."""
    try:
        # O_NONBLOCK: a FIFO planted as the payload must not hang the check.
        fd = open_in_root(rootfs, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KrunError(f"payload {path}: too many levels of symbolic links") from None
        raise KrunError(f"payload {path}: {os.strerror(e.errno or 0).lower()}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise KrunError(f"payload {path}: {what} (permission denied)")
    with os.fdopen(fd, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF":
            raise KrunError(f"payload {path}: not an ELF file (exec format error)")
        if header[4] != 2 or header[5] != 1:
            raise KrunError(f"payload {path}: not a 64-bit little-endian ELF")
        e_type, e_machine = struct.unpack_from("<HH", header, 16)
        if e_machine != 62:
            raise KrunError(f"payload {path}: not an x86-64 ELF (machine {e_machine})")
        if e_type not in (2, 3):
            raise KrunError(f"payload {path}: not an executable ELF (type {e_type})")
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    if len(table) < phentsize * phnum or phentsize < 56:
        raise KrunError(f"payload {path}: truncated ELF program headers")
    for i in range(phnum):
        p_type, _, _, p_vaddr = struct.unpack_from("<IIQQ", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            raise KrunError(f"payload {path}: dynamically linked (KM runs static payloads)")
        if p_type == 1 and e_type == 2 and p_vaddr < MIN_LOAD_ADDRESS:
            raise KrunError(f"payload {path}: a segment loads at {p_vaddr:#x}, below 2 MiB")
