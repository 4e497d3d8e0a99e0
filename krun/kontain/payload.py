"""Finding and checking a payload inside a container's rootfs, from the host.

Paths are resolved as the container would see them: symlinks are followed with the
rootfs as `/`, so a link can never lead out of it (an absolute target restarts at the
rootfs, `..` stops at it).
"""

from __future__ import annotations

import os
import stat
import struct

from krun.errors import KrunError

MAX_SYMLINKS = 40
MIN_LOAD_ADDRESS = 0x200000  # KM maps guest memory from 2 MiB
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_in_root(rootfs: str, path: str) -> str:
    """The container path `path` (absolute) with every symlink resolved inside rootfs."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join([*resolved, part])
        host = rootfs + candidate
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            resolved.append(part)
            resolved.extend(p for p in parts if p not in ("", "."))
            return "/" + "/".join(resolved)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise KrunError(f"{path}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def find_executable(rootfs: str, name: str, env: list[str], cwd: str) -> str:
    """args[0] as the container would exec it: a path (relative to cwd) or a PATH search."""
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(cwd or "/", name)
        resolved = resolve_in_root(rootfs, path)
        if not os.path.isfile(rootfs + resolved):
            raise KrunError(f"payload {name}: no such file or directory")
        return resolved
    search = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            search = entry[5:]
    for directory in search.split(":"):
        if not directory:
            continue
        base = directory if directory.startswith("/") else os.path.join(cwd or "/", directory)
        resolved = resolve_in_root(rootfs, os.path.join(base, name))
        host = rootfs + resolved
        if os.path.isfile(host) and os.stat(host).st_mode & 0o111:
            return resolved
    raise KrunError(f'exec: "{name}": executable file not found in $PATH')


def check_payload(rootfs: str, path: str) -> None:
    """A KM payload: x86-64 little-endian ELF, no interpreter, every PT_LOAD >= 2 MiB."""
    host = rootfs + path
    try:
        with open(host, "rb") as f:
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
    except FileNotFoundError:
        raise KrunError(f"payload {path}: no such file or directory") from None
    except PermissionError:
        raise KrunError(f"payload {path}: permission denied") from None
    if len(table) < phentsize * phnum or phentsize < 56:
        raise KrunError(f"payload {path}: truncated ELF program headers")
    for i in range(phnum):
        p_type, _, _, p_vaddr = struct.unpack_from("<IIQQ", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            raise KrunError(f"payload {path}: dynamically linked (KM runs static payloads)")
        if p_type == 1 and e_type == 2 and p_vaddr < MIN_LOAD_ADDRESS:
            raise KrunError(f"payload {path}: a segment loads at {p_vaddr:#x}, below 2 MiB")
