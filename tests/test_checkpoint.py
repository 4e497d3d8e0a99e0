"""`krun checkpoint` / `krun restore` of Kontain containers: KM snapshots on real KVM
guests, through the installed krun.

A counter payload (km_payloads/counter.c: `tick N` every 100 ms) shows that a restored
container goes on where the checkpoint stopped it; snapfile.c that an open file's offset
survives. The hostile cases: a corrupted or foreign image, a management socket the
container replaced, a plain container (no CRIU), a duplicate id.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import KontainBundle, Krun

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                                reason="no /dev/kvm on this machine")

TICK = re.compile(rb"^tick (\d+)$", re.M)
V1 = {"version": 1}


def ticks(path: Path) -> list[int]:
    return [int(n) for n in TICK.findall(path.read_bytes())] if path.exists() else []


def wait_for(predicate, timeout: float = 15, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def detached(krun: Krun, out: Path, *args: str) -> Iterator[subprocess.CompletedProcess[bytes]]:
    """`krun ARGS` (run -d or restore -d) with the container's stdout and stderr in
    `out`: a detached container keeps krun's stdio."""
    with open(out, "ab") as f:
        # The container's stderr too: a pipe would stay open in it, and run would wait.
        proc = subprocess.run(krun.argv(*args), stdin=subprocess.DEVNULL, stdout=f,
                              stderr=f, timeout=60)
    proc.stderr = out.read_bytes()[-2000:]  # what krun said, among the output
    yield proc


def start_counter(krun: Krun, kbundle: KontainBundle, cid: str, out: Path,
                  ticks_arg: str | None = None) -> Path:
    b = kbundle(["/counter.km", *([ticks_arg] if ticks_arg else [])], V1)
    with detached(krun, out, "run", "-d", "--bundle", str(b), cid) as proc:
        assert proc.returncode == 0, out.read_text()
    wait_for(lambda: len(ticks(out)) >= 3, what="3 ticks")
    return b


def test_checkpoint_stops_and_restore_goes_on(krun: Krun, kbundle: KontainBundle, cid: str,
                                              tmp_path: Path) -> None:
    out1, out2, image = tmp_path / "out1", tmp_path / "out2", tmp_path / "image"
    b = start_counter(krun, kbundle, cid, out1)
    try:
        krun("checkpoint", "--image-path", str(image), cid)
        assert krun.status(cid) == "stopped"
        before = ticks(out1)
        time.sleep(0.3)
        assert ticks(out1) == before, "the counter went on after a checkpoint"
        assert sorted(p.name for p in image.iterdir()) == [
            "config.json", "inventory.img", "km.snapshot", "krun-checkpoint.json"]
        assert (image / "km.snapshot").stat().st_size < 4 << 20   # sparse: memory in use
        krun("delete", cid)
        with detached(krun, out2, "restore", "-d", "--image-path", str(image),
                      "--bundle", str(b), cid) as proc:
            assert proc.returncode == 0, proc.stderr
        assert krun.status(cid) == "running"
        wait_for(lambda: len(ticks(out2)) >= 3, what="ticks after restore")
        after = ticks(out2)
        assert after[0] == before[-1] + 1, (before[-3:], after[:3])
        assert after == list(range(after[0], after[0] + len(after)))
    finally:
        krun("delete", "--force", cid, check=False)


def test_leave_running_and_restore_into_a_new_id(krun: Krun, kbundle: KontainBundle, cid: str,
                                                 tmp_path: Path) -> None:
    out1, out2, image = tmp_path / "out1", tmp_path / "out2", tmp_path / "image"
    b = start_counter(krun, kbundle, cid, out1)
    clone = f"{cid}-restored"
    try:
        # The original goes on ticking: the snapshot's tick lies between these two.
        low = ticks(out1)[-1]
        krun("checkpoint", "--leave-running", "--image-path", str(image), cid)
        at = ticks(out1)[-1]
        assert krun.status(cid) == "running"
        wait_for(lambda: ticks(out1)[-1] >= at + 3, what="the original to go on")
        with detached(krun, out2, "restore", "-d", "--image-path", str(image),
                      "--bundle", str(b), clone) as proc:
            assert proc.returncode == 0, proc.stderr
        wait_for(lambda: len(ticks(out2)) >= 2, what="the clone's ticks")
        first = ticks(out2)[0]
        assert low < first <= at + 1, (low, at, first)
        assert krun.status(cid) == krun.status(clone) == "running"
        assert krun.state(clone)["pid"] != krun.state(cid)["pid"]
    finally:
        krun("delete", "--force", clone, check=False)
        krun("delete", "--force", cid, check=False)


def test_restore_resumes_even_when_the_config_spells_out_km(
        krun: Krun, kbundle: KontainBundle, cid: str, tmp_path: Path) -> None:
    """A config whose process is `km /counter.km` (Kontain's own spelling) restores as a
    resume too, not as a fresh start of the payload."""
    out1, out2, image = tmp_path / "out1", tmp_path / "out2", tmp_path / "image"
    b = kbundle(["/opt/kontain/bin/km", "/counter.km"], V1)
    with detached(krun, out1, "run", "-d", "--bundle", str(b), cid) as proc:
        assert proc.returncode == 0, proc.stderr
    try:
        wait_for(lambda: len(ticks(out1)) >= 3, what="3 ticks")
        krun("checkpoint", "--image-path", str(image), cid)
        last = ticks(out1)[-1]
        krun("delete", cid)
        with detached(krun, out2, "restore", "-d", "--image-path", str(image),
                      "--bundle", str(b), cid) as proc:
            assert proc.returncode == 0, proc.stderr
        wait_for(lambda: len(ticks(out2)) >= 1, what="a tick after restore")
        assert ticks(out2)[0] == last + 1, (last, ticks(out2))
    finally:
        krun("delete", "--force", cid, check=False)


def test_foreground_restore_runs_to_the_payloads_exit(krun: Krun, kbundle: KontainBundle,
                                                      cid: str, tmp_path: Path) -> None:
    out1, image = tmp_path / "out1", tmp_path / "image"
    b = start_counter(krun, kbundle, cid, out1, ticks_arg="12")
    krun("checkpoint", "--image-path", str(image), cid)
    last = ticks(out1)[-1]
    krun("delete", cid)
    assert last < 12
    proc = krun("restore", "--image-path", str(image), "--bundle", str(b), cid, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [int(n) for n in TICK.findall(proc.stdout.encode())] == list(range(last + 1, 13))
    assert not (krun.root / cid).exists()


def test_an_open_files_offset_survives(krun: Krun, kbundle: KontainBundle, cid: str,
                                       tmp_path: Path) -> None:
    out1, out2, image = tmp_path / "out1", tmp_path / "out2", tmp_path / "image"
    b = kbundle(["/snapfile.km", "/tmp/data"], V1)
    with detached(krun, out1, "run", "-d", "--bundle", str(b), cid) as proc:
        assert proc.returncode == 0, proc.stderr
    try:
        wait_for(lambda: b"wrote first half" in out1.read_bytes(), what="the first half")
        krun("checkpoint", "--image-path", str(image), cid)
        krun("delete", cid)
        data = b / "rootfs" / "tmp" / "data"
        assert data.read_bytes() == b"first half\n"
        with detached(krun, out2, "restore", "-d", "--image-path", str(image),
                      "--bundle", str(b), cid) as proc:
            assert proc.returncode == 0, proc.stderr
        wait_for(lambda: b"done" in out2.read_bytes(), what="done")
        assert data.read_bytes() == b"first half\nsecond half\n"
        wait_for(lambda: krun.status(cid) == "stopped", what="the payload's exit")
    finally:
        krun("delete", "--force", cid, check=False)


@pytest.fixture
def image(krun: Krun, kbundle: KontainBundle, cid: str,
          tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A checkpoint of a counter: (image dir, bundle)."""
    out, image = tmp_path / "out0", tmp_path / "image"
    b = start_counter(krun, kbundle, cid, out)
    krun("checkpoint", "--image-path", str(image), cid)
    krun("delete", "--force", cid)
    yield image, b


def _refused_cleanly(krun: Krun, proc: subprocess.CompletedProcess[str], cid: str,
                     words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (krun.root / cid).exists()
    assert not (krun.root / ".krun" / f"{cid}.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped-note", "not-elf", "missing"])
def test_a_damaged_snapshot_is_refused(krun: Krun, image: tuple[Path, Path], cid: str,
                                       damage: str) -> None:
    img, b = image
    snap = img / "km.snapshot"
    data = bytearray(snap.read_bytes())
    if damage == "truncated":
        snap.write_bytes(data[: len(data) // 2])
        words = "snapshot"
    elif damage == "flipped-note":
        # The program headers' notes: flip a byte inside the first PT_NOTE.
        phoff = int.from_bytes(data[32:40], "little")
        phnum = int.from_bytes(data[56:58], "little")
        for i in range(phnum):
            ph = data[phoff + 56 * i: phoff + 56 * (i + 1)]
            if int.from_bytes(ph[0:4], "little") == 4:  # PT_NOTE
                offset = int.from_bytes(ph[8:16], "little")
                size = int.from_bytes(ph[32:40], "little")
                data[offset + size // 2] ^= 0xFF
                break
        else:
            pytest.fail("no PT_NOTE in the snapshot")
        snap.write_bytes(bytes(data))
        words = "snapshot"
    elif damage == "not-elf":
        snap.write_bytes(b"#!/bin/sh\necho native\n")
        words = "not a KM snapshot"
    else:
        snap.unlink()
        words = "no such file or directory"
    proc = krun("restore", "-d", "--image-path", str(img), "--bundle", str(b), cid,
                check=False, timeout=30)
    if damage in ("truncated", "flipped-note"):
        # KM refuses it inside the container: the restore's container fails to start or
        # stops at once; nothing of it stays once deleted.
        if proc.returncode == 0:
            wait_for(lambda: krun.status(cid) == "stopped", what="KM's refusal")
            krun("delete", cid)
        assert not (krun.root / cid).exists()
        return
    _refused_cleanly(krun, proc, cid, words)


def test_not_a_checkpoint_directory(krun: Krun, tmp_path: Path, cid: str) -> None:
    proc = krun("restore", "--image-path", str(tmp_path), cid, check=False)
    _refused_cleanly(krun, proc, cid, "no such file or directory")
    (tmp_path / "krun-checkpoint.json").write_text('{"format": 99}')
    proc = krun("restore", "--image-path", str(tmp_path), cid, check=False)
    _refused_cleanly(krun, proc, cid, "not a krun checkpoint")
    (tmp_path / "krun-checkpoint.json").write_text("[" * 100000)
    proc = krun("restore", "--image-path", str(tmp_path), cid, check=False)
    _refused_cleanly(krun, proc, cid, "not a krun checkpoint")


def test_restore_onto_an_existing_id_touches_nothing(krun: Krun, image: tuple[Path, Path],
                                                     kbundle: KontainBundle, cid: str,
                                                     tmp_path: Path) -> None:
    img, b = image
    start_counter(krun, kbundle, cid, tmp_path / "out")
    try:
        proc = krun("restore", "-d", "--image-path", str(img), "--bundle", str(b), cid,
                    check=False)
        assert proc.returncode == 1 and "already exists" in proc.stderr
        assert krun.status(cid) == "running"
    finally:
        krun("delete", "--force", cid)


def test_checkpoint_needs_a_running_container(krun: Krun, kbundle: KontainBundle, cid: str,
                                              tmp_path: Path) -> None:
    b = kbundle(["/counter.km"], V1)
    krun("create", "--bundle", str(b), cid)
    try:
        proc = krun("checkpoint", "--image-path", str(tmp_path / "img"), cid, check=False)
        assert proc.returncode == 1
        assert 'in state "created": only a running or paused container' in proc.stderr
    finally:
        krun("delete", "--force", cid)


@pytest.mark.parametrize("swap", ["symlink", "foreign-socket"])
def test_a_replaced_management_socket_gets_nothing(krun: Krun, kbundle: KontainBundle, cid: str,
                                                   tmp_path: Path, swap: str) -> None:
    """Whatever sits at the socket's path in the container, krun only talks to the
    container's KM: a symlink to a host socket is not followed, a socket someone else
    serves is refused, and no snapshot file is left behind."""
    out = tmp_path / "out"
    start_counter(krun, kbundle, cid, out)
    pid = krun.state(cid)["pid"]
    in_container = Path(f"/proc/{pid}/root/dev/.krun-km-mgt")
    host_socket = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(host_socket))
    server.listen(1)
    server.settimeout(0.5)
    try:
        in_container.unlink()
        if swap == "symlink":
            in_container.symlink_to(host_socket)
        else:
            fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            fake.bind(str(in_container))
            fake.listen(1)
        image = tmp_path / "image"
        proc = krun("checkpoint", "--image-path", str(image), cid, check=False)
        assert proc.returncode == 1, proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert ("is not a socket" if swap == "symlink" else "not served by the container's KM") \
            in proc.stderr
        with pytest.raises(TimeoutError):
            server.accept()  # the host socket never heard from krun
        assert not image.exists()  # made by the checkpoint, removed with its failure
        assert krun.status(cid) == "running"
    finally:
        server.close()
        krun("delete", "--force", cid, check=False)


def test_instant_start_from_a_snapshot_as_the_payload(krun: Krun, kbundle: KontainBundle,
                                                      cid: str, tmp_path: Path) -> None:
    """Kontain's warmed-up start: a bundle (or an image) whose payload is a snapshot
    resumes it with a plain `krun run`, from wherever the snapshot was taken."""
    out1, image = tmp_path / "out1", tmp_path / "image"
    start_counter(krun, kbundle, cid, out1, ticks_arg="8")
    krun("checkpoint", "--image-path", str(image), cid)
    last = ticks(out1)[-1]
    krun("delete", cid)
    warm = kbundle(["/warm.km"], V1)
    (warm / "rootfs" / "warm.km").write_bytes((image / "km.snapshot").read_bytes())
    (warm / "rootfs" / "warm.km").chmod(0o755)
    for n in range(2):  # the same snapshot starts any number of times
        proc = krun("run", "--bundle", str(warm), f"{cid}-{n}", check=False)
        assert proc.returncode == 0, proc.stderr
        assert [int(t) for t in TICK.findall(proc.stdout.encode())] == list(range(last + 1, 9))
    extra = kbundle(["/warm.km", "extra"], V1)
    (extra / "rootfs" / "warm.km").write_bytes((image / "km.snapshot").read_bytes())
    (extra / "rootfs" / "warm.km").chmod(0o755)
    proc = krun("run", "--bundle", str(extra), cid, check=False)
    assert proc.returncode == 1
    assert "a KM snapshot resumes where it stopped and takes no arguments" in proc.stderr


def test_a_full_disk_fails_the_checkpoint_and_keeps_the_container(
        krun: Krun, kbundle: KontainBundle, cid: str, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    out = tmp_path / "out"
    try:
        start_counter(krun, kbundle, cid, out)
        proc = krun("checkpoint", "--image-path", str(small / "image"), cid, check=False)
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "no space left on device" in proc.stderr.lower(), proc.stderr
        at = ticks(out)[-1]
        assert krun.status(cid) == "running"
        wait_for(lambda: ticks(out)[-1] > at + 1, what="the counter to go on")
        assert not (small / "image").exists(), list((small / "image").iterdir())
    finally:
        krun("delete", "--force", cid, check=False)
        subprocess.run(["umount", str(small)], check=False)


def test_sigkill_of_checkpoint_then_delete_force_leaves_nothing(
        krun: Krun, kbundle: KontainBundle, cid: str, tmp_path: Path) -> None:
    """krun killed at some point of a checkpoint: delete --force still removes the
    container, and the next checkpoint into that directory sweeps the dead one's files."""
    import random

    image = tmp_path / "image"
    for n in range(4):
        c = f"{cid}-{n}"
        start_counter(krun, kbundle, c, tmp_path / f"out{n}")
        p = subprocess.Popen(krun.argv("checkpoint", "--leave-running", "--image-path",
                                       str(image), c), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.0, 0.08))
        p.kill()
        p.wait()
        krun("delete", "--force", c)
        assert not (krun.root / c).exists()
    start_counter(krun, kbundle, cid, tmp_path / "last")
    try:
        krun("checkpoint", "--leave-running", "--image-path", str(image), cid)
        assert sorted(p.name for p in image.iterdir()) == [
            "config.json", "inventory.img", "km.snapshot", "krun-checkpoint.json"]
    finally:
        krun("delete", "--force", cid)


def test_without_a_dev_tmpfs_the_container_runs_and_checkpoint_says_why_not(
        krun: Krun, kbundle: KontainBundle, cid: str, tmp_path: Path) -> None:
    """KM's socket lives in the container's /dev tmpfs; a config without one (and a
    read-only rootfs) still runs its payload, and checkpoint explains what is missing."""
    def mutate(c: dict) -> None:  # type: ignore[type-arg]
        c["mounts"] = [m for m in c["mounts"] if m["destination"] != "/dev"]
        c["root"]["readonly"] = True

    b = kbundle(["/counter.km"], V1, mutate=mutate)
    (b / "rootfs" / "dev").mkdir()
    out = tmp_path / "out"
    with detached(krun, out, "run", "-d", "--bundle", str(b), cid) as proc:
        assert proc.returncode == 0, proc.stderr
    try:
        wait_for(lambda: len(ticks(out)) >= 2, what="ticks")
        proc = krun("checkpoint", "--image-path", str(tmp_path / "img"), cid, check=False)
        assert proc.returncode == 1
        assert "KM's management socket /dev/.krun-km-mgt: no such file or directory" in \
            proc.stderr, proc.stderr
        assert krun.status(cid) == "running"
    finally:
        krun("delete", "--force", cid)


def test_a_paused_container_is_checkpointed_and_stays_paused(
        krun: Krun, kbundle: KontainBundle, cid: str, tmp_path: Path) -> None:
    """containerd pauses a task before it checkpoints it."""
    out, image = tmp_path / "out", tmp_path / "image"
    start_counter(krun, kbundle, cid, out)
    try:
        krun("pause", cid)
        krun("checkpoint", "--leave-running", "--image-path", str(image), cid)
        assert krun.status(cid) == "paused"
        at = ticks(out)[-1]
        time.sleep(0.3)
        assert ticks(out)[-1] <= at + 1, "a paused container ran on"
        krun("checkpoint", "--image-path", str(tmp_path / "image2"), cid)
        assert krun.status(cid) == "stopped"
    finally:
        krun("delete", "--force", cid)
