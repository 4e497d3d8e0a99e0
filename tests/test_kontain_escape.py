"""Hostile images and hostile containers against Kontain mode's first promise: nothing
from the image ever runs natively. Each test plays the attack a review found (or one
like it) on a real container and asserts the image's code did not run on the host."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, ROOTFS, Krun

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                                reason="no /dev/kvm on this machine: Kontain needs KVM")

PAYLOADS = REPO / "km_payloads"
BUSYBOX_SHA = hashlib.sha256(Path("/bin/busybox").read_bytes()).hexdigest()
NATIVE = "NATIVE-ESCAPE"
EVIL = f"#!/bin/busybox sh\necho {NATIVE}\n"


def _allow(*paths: str) -> dict[str, Any]:
    return {"version": 1, "exec": {"policy": "allow", "allow": [
        {"path": p, "sha256": BUSYBOX_SHA} for p in paths]}}


@pytest.fixture
def image(tmp_path: Path) -> Callable[..., Path]:
    """A Kontain bundle with busybox and the payloads; `allow` lists native helpers."""
    tmp_path.chmod(0o755)
    counter = iter(range(100))

    def make(ext: dict[str, Any], args: list[str] | None = None,
             edit: Callable[[Path], None] | None = None) -> Path:
        from krun.runtime.default_spec import default_spec

        b = tmp_path / f"image{next(counter)}"
        b.mkdir()
        shutil.copytree(ROOTFS, b / "rootfs", symlinks=True)
        for payload in PAYLOADS.glob("*.km"):
            shutil.copy(payload, b / "rootfs" / payload.name)
        config = default_spec()
        config["process"].update(terminal=False, args=args or ["/sleeper.km", "1000"])
        config["root"]["readonly"] = False
        config["kontain"] = ext
        if edit:
            edit(b / "rootfs")
        (b / "config.json").write_text(json.dumps(config))
        return b

    return make


def _no_native(*outputs: str) -> None:
    for out in outputs:
        assert NATIVE not in out, out


def test_renamed_km_directory_does_not_redirect_exec(krun: Krun, image: Callable[..., Path],
                                                     cid: str) -> None:
    """The container moves /opt/kontain (with KM's bind mount inside) aside and plants
    its own km at the old path. libcrun runs KM only from the file krun verified (the
    host KM's inode, on a read-only mount): the planted one is refused, and once put
    back, KM runs again."""
    krun("run", "-d", "--bundle", str(image(_allow("/bin/busybox"))), cid)
    plant = ("mv /opt/kontain /opt/moved && mkdir -p /opt/kontain/bin && "
             f"printf '{EVIL}' > /opt/kontain/bin/km && chmod 755 /opt/kontain/bin/km && "
             "echo planted")
    assert krun("exec", cid, "/bin/busybox", "sh", "-c", plant).stdout == "planted\n"
    for args in (["/hello.km"], ["/opt/kontain/bin/km", "/hello.km"]):
        proc = krun("exec", cid, *args, check=False)
        _no_native(proc.stdout, proc.stderr)
        assert proc.returncode != 0 and "not the host file krun verified" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    krun("exec", cid, "/bin/busybox", "sh", "-c", "rm -r /opt/kontain && mv /opt/moved "
         "/opt/kontain")
    assert krun("exec", cid, "/hello.km").stdout == "Hello from Kontain!\n"
    krun("delete", "--force", cid)


def test_km_sees_its_own_path(krun: Krun, image: Callable[..., Path], cid: str) -> None:
    """KM runs from its bind mount in the container, so /proc/self/exe is a path it can
    re-execute (Kontain's KM does, for a payload's execve), at create and at exec."""
    krun("run", "-d", "--bundle", str(image(_allow("/bin/busybox"))), cid)
    krun("exec", "--detach", cid, "/sleeper.km", "100")
    show = "for p in /proc/[0-9]*; do readlink $p/exe; done"
    out = krun("exec", cid, "/bin/busybox", "sh", "-c", show).stdout.split()
    assert out.count("/opt/kontain/bin/km") == 2, out  # the container's KM and exec's
    krun("delete", "--force", cid)


def test_allow_list_is_checked_in_the_containers_view(krun: Krun, image: Callable[..., Path],
                                                      cid: str) -> None:
    """/bin/sh links to /dev/x/sh: in the image a genuine busybox, inside the container
    (where /dev is a tmpfs) whatever the container wrote there."""
    def edit(rootfs: Path) -> None:
        (rootfs / "dev" / "x").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "dev" / "x" / "sh")
        (rootfs / "bin" / "sh").unlink()
        (rootfs / "bin" / "sh").symlink_to("/dev/x/sh")

    krun("run", "-d", "--bundle", str(image(_allow("/bin/busybox", "/bin/sh"), edit=edit)),
         cid)
    plant = f"mkdir -p /dev/x && printf '{EVIL}' > /dev/x/sh && chmod 755 /dev/x/sh"
    krun("exec", cid, "/bin/busybox", "sh", "-c", plant)
    proc = krun("exec", cid, "/bin/sh", "-c", "echo hi", check=False)
    _no_native(proc.stdout, proc.stderr)
    assert proc.returncode != 0
    krun("delete", "--force", cid)


def test_swapping_the_allowed_file_never_runs_the_swapped_in_one(
        krun: Krun, image: Callable[..., Path], cid: str) -> None:
    """A native helper swaps /bin/echo between the allowed busybox and a script, by
    rename and by rewriting in place, as fast as it can, while execs run. An exec runs
    the allowed bytes (a sealed copy of what was hashed) or falls to KM; never the
    script."""
    def edit(rootfs: Path) -> None:
        (rootfs / "bin" / "echo").unlink()
        shutil.copy("/bin/busybox", rootfs / "bin" / "echo")
        shutil.copy("/bin/busybox", rootfs / "good")
        (rootfs / "evil").write_text(EVIL)
        (rootfs / "evil").chmod(0o755)

    krun("run", "-d", "--bundle", str(image(_allow("/bin/busybox", "/bin/echo"), edit=edit)),
         cid)
    swapper = ("while :; do cp /evil /t1; mv /t1 /bin/echo; cp /good /t2; mv /t2 /bin/echo; "
               "cat /evil > /bin/echo 2>/dev/null; cat /good > /bin/echo 2>/dev/null; done")
    krun("exec", "--detach", cid, "/bin/busybox", "sh", "-c", swapper)
    native_ok = 0
    for _ in range(60):
        proc = krun("exec", cid, "/bin/echo", "ok", check=False)
        _no_native(proc.stdout, proc.stderr)
        native_ok += proc.stdout == "ok\n"
    assert native_ok > 0, "the genuine helper should get through now and then"
    krun("delete", "--force", cid)


def test_no_id_reaches_krun_records(krun: Krun, image: Callable[..., Path], cid: str) -> None:
    """`create .krun` used to fail "already exists" after deleting <root>/.krun: the
    records of running containers, so exec into a Kontain container ran natively."""
    b = image(_allow())
    krun("run", "-d", "--bundle", str(b), cid)
    for bad in (".krun", ".", "..", ".krun.json", ".anything"):
        for cmd in ("create", "run"):
            proc = krun(cmd, "--bundle", str(b), bad, check=False)
            assert proc.returncode == 1 and "invalid container id" in proc.stderr
        assert krun("delete", "--force", bad, check=False).returncode == 1
    assert (krun.root / ".krun" / f"{cid}.json").exists()
    assert krun("list", "-q").stdout.split() == [cid]
    proc = krun("exec", cid, "/bin/busybox", "echo", NATIVE, check=False)
    assert proc.returncode != 0 and NATIVE not in proc.stdout
    krun("delete", "--force", cid)


@pytest.mark.parametrize("again", ["create", "run", "run -d"])
def test_duplicate_create_leaves_the_running_container_alone(
        krun: Krun, image: Callable[..., Path], cid: str, again: str) -> None:
    b = image(_allow())
    krun("run", "-d", "--bundle", str(b), cid)
    before = krun.state(cid)
    record = (krun.root / ".krun" / f"{cid}.json").read_bytes()
    proc = krun(*again.split(), "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert krun.state(cid) == before
    assert (krun.root / ".krun" / f"{cid}.json").read_bytes() == record
    # Still a Kontain container: exec goes under KM.
    assert krun("exec", cid, "/hello.km").stdout == "Hello from Kontain!\n"
    proc = krun("exec", cid, "/bin/busybox", "echo", NATIVE, check=False)
    assert NATIVE not in proc.stdout
    krun("delete", "--force", cid)


def test_validation_cache_lives_under_the_root_in_use(krun: Krun, image: Callable[..., Path],
                                                      cid: str) -> None:
    from krun.kontain.extension import validated_dir

    ext = _allow()
    ext["km"] = {"verbose": False}  # an extension no other test uses
    b = image(ext, args=["/hello.km"])
    krun("run", "--bundle", str(b), cid)
    cache = Path(validated_dir(str(krun.root)))
    assert cache.is_dir() and any(cache.iterdir())
    assert cache.stat().st_mode & 0o077 == 0


def test_exec_before_a_native_init_starts_is_refused(krun: Krun, image: Callable[..., Path],
                                                     cid: str) -> None:
    """With a native init, KM is started by the init, by path: nothing may run in the
    container before start, or it could plant a km there."""
    init = "/usr/bin/docker-init"
    if not os.path.exists(init):
        pytest.fail(f"{init} is missing: scripts/install-engines installs it")
    b = image(_allow("/bin/busybox"), args=["/sbin/docker-init", "--", "/sleeper.km", "100"])
    config = json.loads((b / "config.json").read_text())
    config["mounts"].append({"destination": "/sbin/docker-init", "type": "bind",
                             "source": init, "options": ["bind", "ro"]})
    (b / "config.json").write_text(json.dumps(config))
    krun("create", "--bundle", str(b), cid)
    proc = krun("exec", cid, "/bin/busybox", "true", check=False)
    assert proc.returncode == 255 and "start it first" in proc.stderr
    krun("start", cid)
    krun.wait_status(cid, "running")
    assert krun("exec", cid, "/hello.km").stdout == "Hello from Kontain!\n"
    krun("delete", "--force", cid)
