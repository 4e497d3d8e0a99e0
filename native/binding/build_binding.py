"""krun's cffi extension (API mode), statically linked against the PIC libcrun.

setup.py names this file in `cffi_modules`: setuptools compiles the `ffi` defined here into
krun.runtime._libcrun. libcrun comes from $KRUN_LIBCRUN_DIR (as native/libcrun/build
prints it) or, when unset, from running that script, which builds it once and caches it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cffi

# cffi executes this file without __file__; setup.py runs from the project's top.
HERE = Path(globals().get("__file__") or "native/binding/build_binding.py").resolve().parent
SYSTEM_LIBS = ["yajl", "seccomp", "cap", "systemd"]


def libcrun_dir() -> Path:
    given = os.environ.get("KRUN_LIBCRUN_DIR")
    if given:
        return Path(given)
    script = HERE.parent / "libcrun" / "build"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def make_ffi(libcrun: Path) -> cffi.FFI:
    archive = libcrun / "lib" / "libcrun.a"
    if not archive.is_file():
        raise SystemExit(f"{archive}: no such file (native/libcrun/build makes it)")
    ffi = cffi.FFI()
    ffi.cdef((HERE / "libcrun.cdef").read_text())
    ffi.set_source(
        "krun.runtime._libcrun",
        (HERE / "krun_binding.c").read_text(),
        include_dirs=[str(libcrun / "include"), str(libcrun / "include" / "libcrun")],
        extra_objects=[str(archive)],
        libraries=SYSTEM_LIBS,
        extra_compile_args=["-O2", "-Wno-unused-parameter"],
        # A changed libcrun or helper rebuilds the extension in an existing build tree.
        depends=[str(archive), str(HERE / "krun_binding.c"), str(HERE / "libcrun.cdef")],
    )
    return ffi


ffi = make_ffi(libcrun_dir())
