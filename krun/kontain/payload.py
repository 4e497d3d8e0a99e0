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


def _refused(what: str, e: OSError) -> KrunError:
    """An open in the root that failed, worded as the kernel's errno reads."""
    if e.errno == errno.ELOOP:
        return KrunError(f"{what}: too many levels of symbolic links")
    return KrunError(f"{what}: {os.strerror(e.errno or 0).lower()}")


def resolve_in_root(rootfs: str, path: str) -> str:
    """The container path `path` with every symlink resolved inside rootfs."""
    try:
        fd = open_in_root(rootfs, path, os.O_PATH)
    except OSError as e:
        raise _refused(path, e) from None
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


def clean(path: str) -> str:
    """`/app/./x.km` -> `/app/x.km`: `.` and repeated slashes go; `..` stays, since what
    it means depends on the symlinks the kernel meets."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def find_executable(rootfs: str, name: str, env: list[str], cwd: str) -> str:
    """args[0] as the container would exec it: a path (relative to cwd) or a PATH search.
    Returns the container path to give KM, which opens it in the container's own view."""
    if "/" in name:
        path = clean(name if name.startswith("/") else os.path.join(cwd or "/", name))
        try:
            os.close(open_in_root(rootfs, path, os.O_PATH))
        except OSError as e:
            raise _refused(f"payload {name}", e) from None
        return path
    search = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            search = entry[5:]
    for directory in search.split(":"):
        if not directory:
            continue
        base = directory if directory.startswith("/") else os.path.join(cwd or "/", directory)
        candidate = clean(os.path.join(base, name))
        if _is_executable_file(rootfs, candidate):
            return candidate
    raise KrunError(f'exec: "{name}": executable file not found in $PATH')


ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
PT_LOAD, PT_INTERP, PT_NOTE = 1, 3, 4
SHEBANG_MAX = 256  # Linux's BINPRM_BUF_SIZE: a longer #! line is not a script to it


def _open_payload(rootfs: str, path: str, what: str) -> int:
    try:
        # O_NONBLOCK: a FIFO planted as the payload must not hang the check.
        fd = open_in_root(rootfs, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise _refused(what, e) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise KrunError(f"{what}: {kind} (permission denied)")
    return fd


def _in_dir(path: str, cwd: str) -> str:
    return path if path.startswith("/") else os.path.join(cwd or "/", path)


def check_payload(rootfs: str, path: str, cwd: str = "/", _via: str = "") -> bool:
    """What KM will run, checked the way KM runs it, refusing only what KM refuses
    (True for a snapshot, which KM resumes rather than starts):
    - a static x86-64 ELF (ET_EXEC with every segment at >= 2 MiB, or ET_DYN);
    - a dynamic one, whose PT_INTERP must resolve inside the root to such an ELF;
    - a script, whose `#!` interpreter must likewise be an ELF payload;
    - a KM snapshot (ET_CORE), which KM resumes."""
    what = f"{_via}{path}" if _via else f"payload {path}"
    fd = _open_payload(rootfs, path, what)
    with os.fdopen(fd, "rb") as f:
        header = f.read(SHEBANG_MAX)
        if header[:2] == b"#!":
            if _via:
                raise KrunError(f"{what}: a script, which cannot be an interpreter")
            line, newline, _ = header[2:].partition(b"\n")
            if not newline:
                raise KrunError(f"{what}: its #! line is longer than {SHEBANG_MAX - 1} bytes")
            interp = line.strip().split(None, 1)[:1]
            if not interp:
                raise KrunError(f"{what}: an empty #! line")
            name = interp[0].decode(errors="replace")
            check_payload(rootfs, _in_dir(name, cwd), cwd, f"payload {path}: its interpreter ")
            return False
        if len(header) < 64 or header[:4] != b"\x7fELF":
            raise KrunError(f"{what}: not an ELF file or a script (exec format error)")
        if header[4] != 2 or header[5] != 1:
            raise KrunError(f"{what}: not a 64-bit little-endian ELF")
        e_type, e_machine = struct.unpack_from("<HH", header, 16)
        if e_machine != 62:
            raise KrunError(f"{what}: not an x86-64 ELF (machine {e_machine})")
        if e_type not in (ET_EXEC, ET_DYN, ET_CORE):
            raise KrunError(f"{what}: not an executable ELF (type {e_type})")
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        if phentsize < 56 or phnum > 4096:
            raise KrunError(f"{what}: truncated ELF program headers")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        if len(table) < phentsize * phnum:
            raise KrunError(f"{what}: truncated ELF program headers")
        interp = None
        kinds = set()
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", table,
                                                                          i * phentsize)
            kinds.add(p_type)
            if p_type == PT_INTERP:
                if p_filesz > 4096:
                    raise KrunError(f"{what}: its interpreter's name is too long")
                f.seek(p_offset)
                interp = f.read(p_filesz).split(b"\0", 1)[0].decode(errors="replace")
            if p_type == PT_LOAD and e_type in (ET_EXEC, ET_CORE) and \
                    p_vaddr < MIN_LOAD_ADDRESS:
                raise KrunError(f"{what}: a segment loads at {p_vaddr:#x}, below 2 MiB")
    if e_type == ET_CORE:
        if _via or PT_NOTE not in kinds or PT_LOAD not in kinds:
            raise KrunError(f"{what}: an ELF core file that is not a KM snapshot")
        return True
    if interp is not None:
        if _via:
            raise KrunError(f"{what}: has an interpreter of its own ({interp})")
        if not interp:
            raise KrunError(f"{what}: an empty interpreter name")
        check_payload(rootfs, _in_dir(interp, cwd), cwd, f"payload {path}: its interpreter ")
    return False
