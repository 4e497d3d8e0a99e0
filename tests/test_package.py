"""krun is installed software: `pip install .` gives a krun that needs no checkout.

One module fixture clones this repository (with the working tree's edits), runs
`pip install` of it into a new venv (build isolation on, offline from the cached
wheelhouse), writes the launcher, and deletes the copy. The tests then run containers
through that install, and check the installed tree of the suite's own krun too.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, BundleFactory, KontainBundle, Krun
from test_security import successful_execs

KVM = os.path.exists("/dev/kvm")
# Not under /tmp: krun-init and KM must sit below root-owned directories no one else may
# write (krun refuses to run a host binary natively otherwise).
BASE = Path("/var/lib/krun-tests")


class Installed:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.venv = base / "venv"
        self.python = self.venv / "bin" / "python3"
        self.binary = base / "bin" / "krun"
        self.root = base / "state"

    def __call__(self, *args: str, check: bool = True,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*prefix, str(self.binary), "--root", str(self.root), *args],
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc


def _fresh_clone(dest: Path) -> None:
    """`git clone` of this repository, plus the working tree's uncommitted edits."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True)
    def names(*flags: str) -> list[str]:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", *flags], check=True,
                             capture_output=True).stdout.decode()
        return [n for n in out.split("\0") if n]

    for name in names("--deleted"):
        (dest / name).unlink(missing_ok=True)
    for name in names("--modified", "--others", "--exclude-standard"):
        src = REPO / name
        if src.exists() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)


def _checked_rmtree(path: Path) -> None:
    assert path.is_relative_to(BASE) and path != BASE and not path.is_symlink(), path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    BASE.mkdir(mode=0o755, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="package.", dir=BASE))
    inst = Installed(base)
    try:
        wheels = subprocess.run([str(REPO / "scripts" / "wheelhouse")], check=True,
                                capture_output=True, text=True).stdout.strip()
        src = base / "src"
        _fresh_clone(src)
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--copies", str(inst.venv)],
                       check=True)
        pip = subprocess.run([str(inst.python), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", "--no-index", "--find-links",
                              wheels, str(src)], capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        # The checkout goes away: nothing installed may need it.
        moved = base / "moved"
        src.rename(moved)
        _checked_rmtree(moved)
        subprocess.run([str(inst.python), "-I", "-m", "krun.installer", "launcher",
                        str(inst.binary)], check=True)
        yield inst
    finally:
        if inst.binary.exists():
            subprocess.run([str(inst.binary), "--root", str(inst.root), "delete", "--force",
                            "--regex", ".*"], capture_output=True)
        subprocess.run([str(inst.python), "-I", "-m", "krun.installer", "unprotect"],
                       capture_output=True)
        _checked_rmtree(base)


def _launcher_paths(launcher: Path) -> list[str]:
    text = launcher.read_text()
    first = text.splitlines()[0]
    assert first.startswith("#!/") and first.endswith(" -IS"), first
    line = next(ln for ln in text.splitlines() if ln.startswith("sys.path"))
    return [first[2:].split()[0], *ast.literal_eval(line.split("(", 1)[1].rsplit(")", 1)[0])]


def _writable_or_foreign(tree: Path) -> list[str]:
    bad = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_uid != 0 or st.st_gid != 0 or st.st_mode & 0o022:
                bad.append(f"{path} {stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}")
    return bad


def test_launcher_names_no_source_path(installed: Installed, krun: Krun) -> None:
    for launcher, venv in ((installed.binary, installed.venv),
                           (Path(krun.binary), Path(_launcher_paths(Path(krun.binary))[0])
                            .parent.parent)):
        paths = _launcher_paths(launcher)
        assert paths, launcher
        for path in paths:
            assert Path(path).is_relative_to(venv), (launcher, path)
            assert not Path(path).is_relative_to(REPO), (launcher, path)


def test_installed_trees_are_roots_and_not_writable(installed: Installed, krun: Krun) -> None:
    assert _writable_or_foreign(installed.venv) == []
    suite_venv = Path(_launcher_paths(Path(krun.binary))[0]).parent.parent
    assert _writable_or_foreign(suite_venv) == []
    assert _writable_or_foreign(Path(krun.binary)) == []


def test_package_carries_what_krun_reads(installed: Installed) -> None:
    site = Path(_launcher_paths(installed.binary)[1])
    pkg = site / "krun"
    assert (pkg / "schemas" / "kontain.schema.json").is_file()
    init = pkg / "libexec" / "krun-init"
    assert os.access(init, os.X_OK)
    assert b"\x7fELF" == init.read_bytes()[:4]
    assert list((pkg / "runtime").glob("_libcrun*.so"))
    version = installed("--version").stdout
    assert "commit: unknown" not in version and "libcrun: 1.8.1" in version


def test_runs_busybox_without_a_checkout(installed: Installed, bundle: BundleFactory) -> None:
    b = bundle(["sh", "-c", "echo from the package; exit 3"])
    proc = installed("run", "--bundle", str(b), "pkg-busybox", check=False)
    assert (proc.returncode, proc.stdout) == (3, "from the package\n"), proc.stderr
    assert installed("list", "-q").stdout == ""


@pytest.mark.kvm
@pytest.mark.skipif(not KVM, reason="/dev/kvm is missing: Kontain containers cannot run")
def test_runs_kontain_without_a_checkout(installed: Installed, kbundle: KontainBundle) -> None:
    b = kbundle(["/hello.km"], kontain={"version": 1})
    proc = installed("run", "--bundle", str(b), "pkg-kontain", check=False)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr


def test_cve_2019_5736_guard_on_the_installed_copy(installed: Installed,
                                                    tmp_path: Path) -> None:
    """A fresh install's interpreter is writable: libcrun re-executes krun from a sealed
    copy. Once protected (what install.sh does) it is read-only and krun starts once."""
    interpreter = os.path.realpath(installed.python)
    subprocess.run([str(installed.python), "-I", "-m", "krun.installer", "unprotect"],
                   check=True)
    assert len(successful_execs([str(installed.binary), "--version"], tmp_path)) == 2
    subprocess.run([str(installed.python), "-I", "-m", "krun.installer", "protect"],
                   check=True)
    try:
        assert os.statvfs(interpreter).f_flag & os.ST_RDONLY
        with pytest.raises(OSError):
            os.open(interpreter, os.O_WRONLY)
        assert len(successful_execs([str(installed.binary), "--version"], tmp_path)) == 1
        check = installed("check", "--format", "json", check=False)
        assert '"interpreter"' in check.stdout
    finally:
        subprocess.run([str(installed.python), "-I", "-m", "krun.installer", "unprotect"],
                       check=True)


def test_installer_usage_is_one_screen() -> None:
    proc = subprocess.run([sys.executable, "-I", "-m", "krun.installer"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "launcher DEST" in proc.stderr
