"""Fixtures for krun's tests: real containers through the installed `krun`.

Every test gets a private --root, so tests cannot see each other's containers, and the
session ends by asserting that nothing krun made is left: no state entry, cgroup,
mount or process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
KRUN_CACHE = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun"))
ROOTFS = KRUN_CACHE / "rootfs" / "busybox"
ROOTS_BASE = Path("/run/krun-tests")
CGROUP_BASE = Path("/sys/fs/cgroup")


def krun_binary() -> str:
    path = shutil.which("krun") or "/usr/local/bin/krun"
    if not os.access(path, os.X_OK):
        pytest.exit("krun is not installed: run scripts/setup", returncode=3)
    return path


class Krun:
    """Runs the installed krun with a private --root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = krun_binary()

    def argv(self, *args: str, root: bool = True) -> list[str]:
        return [self.binary] + (["--root", str(self.root)] if root else []) + list(args)

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 input: bytes | None = None, root: bool = True,
                 cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a detached container inherits krun's stdio and would hold a
        # pipe open long after krun exits.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(self.argv(*args, root=root), stdout=out, stderr=err,
                                timeout=timeout, input=input,
                                stdin=None if input is not None else subprocess.DEVNULL,
                                cwd=cwd, env=env).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(self.argv(*args, root=root), rc,
                                               out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"krun {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status(cid) == want:
                return
            time.sleep(0.05)
        raise AssertionError(f"{cid} did not become {want}: {self.status(cid)}")


_session_roots: set[Path] = set()


def private_krun(root: Path) -> Iterator[Krun]:
    """krun with its own --root, which the session's leak check also covers; whatever
    containers a test left there are reported (after their removal)."""
    ROOTS_BASE.mkdir(mode=0o700, exist_ok=True)
    _session_roots.add(root)
    shutil.rmtree(root, ignore_errors=True)
    k = Krun(root)
    yield k
    # Tests clean up after themselves; whatever they left is a leak we report and remove.
    left = [d.name for d in root.iterdir() if not d.name.startswith(".")] if root.exists() else []
    for cid in left:
        k("delete", "--force", cid, check=False)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"test left containers behind: {left}"


@pytest.fixture
def krun(request: pytest.FixtureRequest) -> Iterator[Krun]:
    yield from private_krun(
        ROOTS_BASE / f"{os.getpid()}-{request.node.name.replace('/', '_')[:80]}")


def make_config(args: list[str], **overrides: Any) -> dict[str, Any]:
    """A runc-like default config (as `krun spec` writes it) running `args`, no tty."""
    from krun.runtime.default_spec import default_spec

    config = default_spec()
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["root"]["readonly"] = False
    for key, value in overrides.items():
        config[key] = value
    return config


BundleFactory = Callable[..., Path]


@pytest.fixture
def bundle(tmp_path: Path) -> BundleFactory:
    """make(args, name=..., config=...) -> a bundle dir with its own busybox rootfs copy."""
    if not ROOTFS.is_dir():
        pytest.exit(f"{ROOTFS} missing: run scripts/setup", returncode=3)
    counter = iter(range(1_000_000))

    def make(args: list[str] | None = None, config: dict[str, Any] | None = None,
             mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
        path = tmp_path / f"bundle{next(counter)}"
        path.mkdir()
        path.chmod(0o755)
        shutil.copytree(ROOTFS, path / "rootfs", symlinks=True)
        cfg = config if config is not None else make_config(args or ["true"])
        if mutate:
            mutate(cfg)
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        return path

    tmp_path.chmod(0o755)
    return make


def _krun_cgroups() -> set[str]:
    found: set[str] = set()
    for ctrl in ("memory", "pids", "cpu", "freezer", "devices"):
        base = CGROUP_BASE / ctrl
        if base.is_dir():
            # This session's ids only: other suites may run beside this one.
            found.update(f"{ctrl}/{p.name}" for p in base.iterdir()
                         if p.is_dir() and p.name.startswith(f"krt-{os.getpid()}-"))
    return found


def _test_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if "/pytest-of-" in line.split()[4] or str(ROOTS_BASE) in line.split()[4]]


@pytest.fixture(scope="session", autouse=True)
def no_leaks_after_suite() -> Iterator[None]:
    before = _krun_cgroups()
    yield
    # Only this session's roots: another suite may be running beside this one.
    leaked_roots = [str(p) for root in _session_roots if root.exists()
                    for p in root.iterdir() if not p.name.startswith(".")]
    leaked_cgroups = _krun_cgroups() - before
    leaked_mounts = _test_mounts()
    assert not leaked_roots, f"state left behind: {leaked_roots}"
    assert not leaked_cgroups, f"cgroups left behind: {leaked_cgroups}"
    assert not leaked_mounts, f"mounts left behind: {leaked_mounts}"


_ids = iter(range(1_000_000))


@pytest.fixture
def cid(request: pytest.FixtureRequest) -> str:
    """A fresh container id; the `krt-` prefix lets the leak check find its cgroups."""
    return f"krt-{os.getpid()}-{next(_ids)}"


KontainBundle = Callable[..., Path]
PAYLOADS = REPO / "km_payloads"


def payload_files() -> list[Path]:
    """Everything km_payloads builds for a rootfs: payloads, the loader, scripts."""
    return [*PAYLOADS.glob("*.km"), *PAYLOADS.glob("*.so"), *PAYLOADS.glob("*.sh")]


@pytest.fixture
def kbundle(tmp_path: Path) -> KontainBundle:
    """A bundle whose rootfs holds ONLY payloads (no shell, no libc, no KM), or busybox
    and the payloads."""
    counter = iter(range(1000))

    def make(args: list[str], kontain: dict[str, Any] | None = None, busybox: bool = False,
             mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
        from krun.runtime.default_spec import default_spec

        b = tmp_path / f"kbundle{next(counter)}"
        b.mkdir()
        rootfs = b / "rootfs"
        if busybox:
            shutil.copytree(ROOTFS, rootfs, symlinks=True)
        else:
            rootfs.mkdir()
            (rootfs / "tmp").mkdir()
        for payload in payload_files():
            shutil.copy(payload, rootfs / payload.name)
        config = default_spec()
        config["process"].update(terminal=False, args=args)
        config["root"]["readonly"] = False
        if kontain is not None:
            config["kontain"] = kontain
        if mutate:
            mutate(config)
        (b / "config.json").write_text(json.dumps(config))
        return b

    tmp_path.chmod(0o755)
    return make
