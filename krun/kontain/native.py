"""What may run natively in a Kontain container, and how it is made to be exactly that.

Three things ever run outside the VM: KM itself, an engine's host init (docker-init,
catatonit) and, at exec, a helper the container's allow-list names by sha256. Each is
exactly the file krun verified (libcrun patch 0004), so nothing the container does to
its paths between the check and the exec matters:

- KM runs from its read-only bind mount in the container, only when the file libcrun
  opens there is the inode krun hashed (krun.kontain.km);
- a host init is opened through a private read-only clone of its mount (open_tree) and
  run from that descriptor, so it cannot reopen its own binary for writing through
  /proc (CVE-2019-5736) even though the host file system is writable;
- an image file (an allow-listed helper) may change after it was read, so its bytes are
  copied into a sealed memfd first, and the copy is what is hashed and what runs.

Whatever runs natively must also be static: a dynamic executable would load its
interpreter and libraries from the container's files, natively and unverified.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from krun.errors import KrunError

MAX_NATIVE_BYTES = 256 << 20
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _describe(e: OSError) -> str:
    return os.strerror(e.errno or errno.EIO).lower()


def root_owned_chain(path: str, what: str) -> os.stat_result:
    """Refuse `path` unless it and every directory above it are owned by root and not
    writable by group or others: otherwise someone else could replace it between the
    check and the exec. Returns the file's stat."""
    real = os.path.realpath(path)
    current = real
    st_file: os.stat_result | None = None
    while True:
        try:
            st = os.stat(current)
        except OSError as e:
            raise KrunError(f"{what} {path}: {_describe(e)}") from None
        if st_file is None:
            st_file = st
        if st.st_uid != 0 or st.st_mode & 0o022:
            where = "" if current == real else f" ({current})"
            raise KrunError(f"{what} {path}: writable by non-root{where}: refused")
        if current == "/":
            return st_file
        current = os.path.dirname(current)


def same_file(fd: int, expect: os.stat_result, what: str, path: str) -> None:
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino):
        raise KrunError(f"{what} {path}: replaced while it was checked: refused")


def private_ro_fd(path: str, what: str, expect: os.stat_result) -> int:
    """An fd for host file `path` (the file `expect` describes) that execveat can run,
    on a read-only mount: a detached read-only clone of its mount, or (without
    CAP_SYS_ADMIN) a sealed copy."""
    from krun.runtime._libcrun import lib

    fd = lib.krun_open_tree_ro(os.fsencode(path))
    if fd < 0:
        try:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            raise KrunError(f"{what} {path}: {_describe(e)}") from None
        try:
            same_file(src, expect, what, path)
            return sealed_copy(src, what, path)
        finally:
            os.close(src)
    try:
        same_file(fd, expect, what, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def readable(fd: int) -> int:
    """A readable fd for the file behind `fd` (which may be O_PATH)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def sealed_copy(src: int, what: str, path: str) -> int:
    """The bytes of `src` in a memfd nobody can change any more."""
    st = os.fstat(src)
    if not stat.S_ISREG(st.st_mode):
        raise KrunError(f"{what} {path}: not a regular file (permission denied)")
    if st.st_size > MAX_NATIVE_BYTES:
        raise KrunError(f"{what} {path}: larger than {MAX_NATIVE_BYTES >> 20} MiB: refused")
    memfd = os.memfd_create("krun-native", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        offset = 0
        while offset < MAX_NATIVE_BYTES + 1:
            n = os.sendfile(memfd, src, offset, 1 << 20)
            if n == 0:
                break
            offset += n
        if offset > MAX_NATIVE_BYTES:
            raise KrunError(f"{what} {path}: larger than {MAX_NATIVE_BYTES >> 20} MiB: refused")
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError as e:
        os.close(memfd)
        raise KrunError(f"{what} {path}: cannot copy it: {_describe(e)}") from None
    except BaseException:
        os.close(memfd)
        raise
    return memfd


def sha256_fd(fd: int) -> str:
    """sha256 of the file behind `fd`, read through that very file."""
    import hashlib

    h = hashlib.sha256()
    rfd = readable(fd)
    try:
        offset = 0
        while True:
            chunk = os.pread(rfd, 1 << 20, offset)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)
            offset += len(chunk)
    finally:
        os.close(rfd)


def require_static_elf(fd: int, what: str, path: str) -> None:
    """Refuse anything but a static x86-64 ELF executable: a script runs an interpreter
    and a dynamic ELF its loader and libraries, all from the container, unverified."""
    rfd = readable(fd)
    try:
        header = os.pread(rfd, 64, 0)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise KrunError(f"{what} {path}: not a 64-bit ELF executable: it cannot run "
                            "natively")
        e_type, = struct.unpack_from("<H", header, 16)
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        if e_type not in (2, 3) or phentsize < 56 or phnum > 4096:
            raise KrunError(f"{what} {path}: not an ELF executable: it cannot run natively")
        table = os.pread(rfd, phentsize * phnum, phoff)
    finally:
        os.close(rfd)
    if len(table) < phentsize * phnum:
        raise KrunError(f"{what} {path}: truncated ELF program headers")
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            raise KrunError(f"{what} {path}: dynamically linked: its loader and libraries "
                            "would run natively unverified: refused")
