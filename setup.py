"""The parts of krun's build that pyproject.toml cannot declare.

setuptools with cffi's own integration (`cffi_modules`) builds the libcrun extension: the
binding is a cffi API-mode module, and cffi ships the setuptools hook that compiles
exactly that, so no second build system (meson, CMake) is needed for one C file and one
static library. build_py adds the files the package carries from outside krun/: the
JSON schemas (spec/), the static krun-init (native/init) and the commit it was built
from, so an installed krun never reads the checkout it came from.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent


def _commit() -> str:
    """HEAD's sha, bare: `krun --version` keeps crun's shape, which tools parse."""
    try:
        return subprocess.run(["git", "-C", str(TOP), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class BuildPy(build_py):
    def run(self) -> None:
        pkg = Path(self.build_lib) / "krun"
        # build/ persists between in-tree builds, and build_py never removes a module
        # deleted from krun/: start the package afresh (the extension relinks, ~2 s).
        if pkg.is_dir() and not pkg.is_symlink():
            shutil.rmtree(pkg)
        super().run()
        schemas = pkg / "schemas"
        schemas.mkdir(parents=True, exist_ok=True)
        for schema in sorted((TOP / "spec").glob("*.json")):
            shutil.copyfile(schema, schemas / schema.name)
        subprocess.run(["make", "-s", "-C", str(TOP / "native" / "init")], check=True)
        libexec = pkg / "libexec"
        libexec.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TOP / "native" / "init" / "build" / "krun-init", libexec / "krun-init")
        (libexec / "krun-init").chmod(0o755)
        self._payload_sdk(pkg / "toolkit" / "sdk")
        (pkg / "_build_info.py").write_text(
            f'"""Written by setup.py at build time."""\n\nCOMMIT = "{_commit()}"\n')

    def _payload_sdk(self, sdk: Path) -> None:
        """`krun payload build`'s SDK: the libc for payloads (native/payload-libc) and
        the module interface with its default core (native/payload-sdk)."""
        libc = TOP / "native" / "payload-libc"
        subprocess.run(["make", "-s", "-C", str(libc)], check=True)
        shutil.copytree(libc / "build" / "include", sdk / "include")
        shutil.copytree(libc / "build" / "lib", sdk / "lib", ignore=shutil.ignore_patterns("*.d"))
        extra = TOP / "native" / "payload-sdk"
        shutil.copyfile(extra / "krun_module.h", sdk / "include" / "krun_module.h")
        (sdk / "src").mkdir()
        shutil.copyfile(extra / "krun_modules_main.c", sdk / "src" / "krun_modules_main.c")


setup(cffi_modules=["native/binding/build_binding.py:ffi"], cmdclass={"build_py": BuildPy})
