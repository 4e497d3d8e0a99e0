"""The release tarball: built by scripts/release, installed by its install.sh into a
clean Debian 12 root (debootstrap, tests/debianroot.py) with no checkout present, runs
a busybox and a Kontain container there, and uninstall.sh leaves the root as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, ROOTFS, make_config
from debianroot import APT_RESIDUE, DebianRoot, debian_root, mirror_problem

KVM = os.path.exists("/dev/kvm")
BASE = Path("/var/lib/krun-tests")
NAME = "krun-0.1.0-linux-x86_64"
PREFIX = "/opt/krun"
# A KM that is not krun's (Kontain's own, say): install.sh must keep it.
FOREIGN_KM = "#!/bin/sh\necho 'Kontain KM 1.0 (not ours)'\n"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    path = subprocess.run([str(REPO / "scripts" / "release"), "--out", str(out)], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return Path(path)


def test_tarball_holds_the_release(tarball: Path) -> None:
    assert tarball.name == f"{NAME}.tar.gz"
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        km = tar.extractfile(f"{NAME}/km/km")
        pin = tar.extractfile(f"{NAME}/km/km.sha256")
        assert km is not None and pin is not None
        assert pin.read().decode().split()[0] == hashlib.sha256(km.read()).hexdigest()
    names = set(members)
    for want in ("install.sh", "uninstall.sh", "README", "km/km", "payloads/hello.km",
                 "schema/kontain.schema.json"):
        assert f"{NAME}/{want}" in names, want
    wheels = [n for n in names if n.startswith(f"{NAME}/wheels/")]
    assert any("/krun-0.1.0-cp311" in n for n in wheels)
    for dep in ("click", "cffi", "jsonschema", "pyroute2", "python_prctl", "tomlkit"):
        assert any(f"/wheels/{dep}-" in n for n in wheels), dep
    # Build-only wheels stay out; every entry is root's.
    assert not any("/wheels/setuptools-" in n or "/wheels/wheel-" in n for n in wheels)
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
    assert oct(members[f"{NAME}/install.sh"].mode) == "0o755"
    sums = (tarball.parent / f"{tarball.name}.sha256").read_text().split()
    assert sums == [hashlib.sha256(tarball.read_bytes()).hexdigest(), tarball.name]


def test_release_is_reproducible(tarball: Path, tmp_path: Path) -> None:
    again = subprocess.run([str(REPO / "scripts" / "release"), "--out", str(tmp_path)],
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(again).read_bytes() == tarball.read_bytes()


def _unpacked(tarball: Path, where: Path) -> Path:
    subprocess.run(["tar", "-C", str(where), "-xzf", str(tarball)], check=True)
    return where / NAME


def test_failed_install_undoes_itself(tarball: Path, tmp_path: Path) -> None:
    """A wheel that pip cannot install, after install.sh made its directories and its
    venv: it fails with one message and leaves no file behind (here, on this host: apt
    has nothing to add, and the failure comes before KM and the config)."""
    release = _unpacked(tarball, tmp_path)
    wheel = next((release / "wheels").glob("krun-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:1000])
    BASE.mkdir(mode=0o755, exist_ok=True)
    prefix = BASE / "failed-install"
    assert not prefix.exists()
    had_config = os.path.exists("/etc/krun")
    proc = subprocess.run([str(release / "install.sh"), "--prefix", str(prefix)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed; undoing what it did" in proc.stderr
    assert not prefix.exists(), list(prefix.rglob("*"))
    assert os.path.exists("/etc/krun") == had_config


def test_install_refuses_bad_input(tarball: Path, tmp_path: Path) -> None:
    release = _unpacked(tarball, tmp_path)
    for args, words in ((["--prefix", "relative"], "must be an absolute path"),
                        (["--bogus"], "unknown option --bogus")):
        proc = subprocess.run([str(release / "install.sh"), *args], capture_output=True,
                              text=True)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    (release / "km" / "km").write_bytes(b"tampered")
    proc = subprocess.run([str(release / "install.sh"), "--prefix", str(tmp_path / "p")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "does not match km/km.sha256" in proc.stderr
    assert not (tmp_path / "p").exists()
    proc = subprocess.run([str(release / "uninstall.sh"), "--prefix", str(tmp_path / "p")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "krun is not installed" in proc.stderr


@pytest.fixture(scope="module")
def debian(tarball: Path) -> Iterator[DebianRoot]:
    problem = mirror_problem()
    if problem:
        pytest.skip(f"no Debian 12 root: {problem}")
    BASE.mkdir(mode=0o755, exist_ok=True)
    with debian_root(BASE) as root:
        root.copy_in(tarball, f"/root/{tarball.name}")
        root.copy_in(ROOTFS, "/root/bb/rootfs")
        root.run(["mkdir", "-p", "/opt/kontain/bin"])
        root.run(["sh", "-c", "cat > /opt/kontain/bin/km && chmod 0755 /opt/kontain/bin/km"],
                 input=FOREIGN_KM)
        yield root


def _install(root: DebianRoot, *flags: str) -> str:
    proc = root.run(f"cd /root && tar -xzf {NAME}.tar.gz && {NAME}/install.sh "
                    f"--prefix {PREFIX} {' '.join(flags)}", timeout=900)
    root.run(["rm", "-rf", f"/root/{NAME}"])
    return proc.stdout


def _uninstall(root: DebianRoot) -> str:
    return root.run([f"{PREFIX}/lib/krun/uninstall.sh", "--prefix", PREFIX],
                    timeout=600).stdout


def _bundle(root: DebianRoot, where: str, config: dict[str, Any]) -> None:
    tmp = BASE / f"config-{os.getpid()}.json"
    tmp.write_text(json.dumps(config))
    try:
        root.copy_in(tmp, f"{where}/config.json")
    finally:
        tmp.unlink()


def _busybox(root: DebianRoot) -> None:
    _bundle(root, "/root/bb", make_config(["sh", "-c", "echo hi from debian; exit 7"]))
    proc = root.run([f"{PREFIX}/bin/krun", "run", "--bundle", "/root/bb", "bb"], check=False)
    assert (proc.returncode, proc.stdout) == (7, "hi from debian\n"), proc.stderr
    root.run(["rm", "-f", "/root/bb/config.json"])


def _outside_root(root: DebianRoot) -> list[str]:
    """What a leak would look like on the host: no mount below the root survives."""
    from debianroot import mounts_under

    return mounts_under(root.path)


def test_install_in_debian_keeps_a_foreign_km(debian: DebianRoot) -> None:
    before = debian.snapshot()
    out = _install(debian)
    assert "is not krun's: kept" in out, out
    assert debian.host_path("/opt/kontain/bin/km").read_text() == FOREIGN_KM
    assert not debian.host_path("/etc/krun/krun.toml").exists()  # no pin for a KM not ours
    assert "krun version 0.1.0" in out
    _busybox(debian)
    check = debian.run([f"{PREFIX}/bin/krun", "check"], check=False)
    assert "krun can run containers" in check.stdout, check.stdout
    out = _uninstall(debian)
    assert "purged Debian packages" in out, out
    assert debian.diff(before, debian.snapshot(), ignore=APT_RESIDUE) == []
    assert _outside_root(debian) == []


@pytest.mark.kvm
@pytest.mark.skipif(not KVM, reason="/dev/kvm is missing: Kontain containers cannot run")
def test_install_in_debian_runs_busybox_and_kontain(debian: DebianRoot) -> None:
    before = debian.snapshot()
    out = _install(debian, "--force-km")
    assert "replaced (the previous one is saved" in out, out
    assert "pinned /opt/kontain/bin/km" in out
    # No checkout anywhere in that root: krun runs from its venv alone.
    assert not debian.run("ls -d /work /root/*/.git 2>/dev/null", check=False).stdout
    writable = debian.run(f"find {PREFIX} /opt/kontain /etc/krun ! -type l \\( -perm /022 "
                          "-o ! -user root -o ! -group root \\)").stdout
    assert writable == "", writable
    _busybox(debian)
    krun = f"{PREFIX}/bin/krun"
    debian.run(f"mkdir -p /root/kb/rootfs && cp {PREFIX}/share/krun/payloads/hello.km "
               "/root/kb/rootfs/")
    _bundle(debian, "/root/kb", make_config(["/hello.km"], kontain={"version": 1}))
    proc = debian.run([krun, "run", "--bundle", "/root/kb", "hello"], check=False)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr
    debian.run(["rm", "-rf", "/root/kb"])
    out = _uninstall(debian)
    assert "/opt/kontain/bin/km: restored" in out, out
    assert debian.host_path("/opt/kontain/bin/km").read_text() == FOREIGN_KM
    assert debian.diff(before, debian.snapshot(), ignore=APT_RESIDUE) == []
