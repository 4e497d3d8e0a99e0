"""Build krun's cffi extension (API mode) statically linked against libcrun.

Usage: python build_binding.py LIBCRUN_DIR OUTPUT_DIR
Rebuilds only when an input (cdef, C helpers, this file, libcrun.a, interpreter) changed.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "_libcrun"
SYSTEM_LIBS = ["yajl", "seccomp", "cap", "systemd"]


def _inputs_digest(libcrun_dir: Path) -> str:
    h = hashlib.sha256()
    for path in (HERE / "libcrun.cdef", HERE / "krun_binding.c", Path(__file__).resolve(),
                 libcrun_dir / "lib" / "libcrun.a"):
        h.update(path.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def build(libcrun_dir: Path, out_dir: Path) -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = out_dir / f"{MODULE}{suffix}"
    stamp = out_dir / f"{MODULE}.stamp"
    digest = _inputs_digest(libcrun_dir)
    if target.exists() and stamp.exists() and stamp.read_text() == digest:
        return target

    import cffi

    ffi = cffi.FFI()
    ffi.cdef((HERE / "libcrun.cdef").read_text())
    ffi.set_source(
        f"krun.runtime.{MODULE}",
        (HERE / "krun_binding.c").read_text(),
        include_dirs=[str(libcrun_dir / "include"), str(libcrun_dir / "include" / "libcrun")],
        extra_objects=[str(libcrun_dir / "lib" / "libcrun.a")],
        libraries=SYSTEM_LIBS,
        extra_compile_args=["-O2", "-Wno-unused-parameter"],
    )
    with tempfile.TemporaryDirectory(prefix="krun-binding-") as tmp:
        built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp_target = target.with_suffix(".tmp")
        tmp_target.write_bytes(built.read_bytes())
        tmp_target.chmod(0o755)
        tmp_target.replace(target)
    stamp.write_text(digest)
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
