"""containerd 1.6 running krun: `ctr run --runc-binary` (no configuration at all).

The CRI side (the `krun` runtime handler that krun install registers) is in test_cri.py.
"""

from __future__ import annotations

import itertools

import pytest
from conftest import krun_binary

from . import images
from .conftest import CGROUP_PARENT, KONTAIN_WIP, Engine

pytestmark = pytest.mark.engines

_ids = itertools.count()


def ctr_run(containerd: Engine, *args: str) -> tuple[int, str, str]:
    cid = f"kt-ctr-{next(_ids)}"
    image, command = args[0], args[1:]
    # Private runtime root and FIFO dir: ctr's defaults are under /run/containerd.
    # ctr's default cgroup, /<namespace>/<id>, would leave an empty /krun behind.
    private = ["--runc-root", str(containerd.run_dir / "ctr-krun"),
               "--fifo-dir", str(containerd.run_dir / "fifo"),
               "--cgroup", f"/{CGROUP_PARENT}/ctr/{cid}"]
    proc = containerd("-n", "krun", "run", "--rm", "--runc-binary", krun_binary(), *private,
                      image, cid, *command, check=False)
    left = containerd.out("-n", "krun", "containers", "ls", "-q")
    assert cid not in left.split(), "ctr run --rm leaves no container"
    return proc.returncode, proc.stdout, proc.stderr


def test_ctr_run_output_and_exit_code(containerd: Engine) -> None:
    rc, out, err = ctr_run(containerd, images.BUSYBOX, "sh", "-c", "echo via ctr; exit 9")
    assert (rc, out) == (9, "via ctr\n"), err


def test_ctr_run_missing_executable_fails(containerd: Engine) -> None:
    rc, _, err = ctr_run(containerd, images.BUSYBOX, "/no/such/program")
    assert rc != 0
    assert "no such file or directory" in err or "not found" in err, err


def test_ctr_run_kontain_image(containerd: Engine) -> None:
    image = containerd.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    rc, out, err = ctr_run(containerd, image)
    assert (rc, out) == (0, "Hello from Kontain!\n"), err


def test_ctr_checkpoint_of_a_kontain_task(containerd: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """containerd's runc shim path: `ctr c checkpoint --task` pauses the task, has the
    runtime checkpoint it (here a KM snapshot) and resumes it; the checkpoint is an image
    in containerd's store, and `ctr c restore --live` makes a running task of it. A
    wrapper logs the runtime calls the shim makes."""
    import re
    import time

    image = containerd.extra["kontain_image"]
    if not image or not images.payload("counter.km"):
        pytest.skip(KONTAIN_WIP)
    cid = f"kt-ctr-{next(_ids)}"
    log = tmp_path / "out.log"
    private = ["--runc-root", str(containerd.run_dir / "ctr-krun"),
               "--fifo-dir", str(containerd.run_dir / "fifo"),
               "--cgroup", f"/{CGROUP_PARENT}/ctr/{cid}"]
    ref = f"krun.test/checkpoint/{cid}:1"
    wrapper = tmp_path / "krun-wrap"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/argv\n'
                       f'exec {krun_binary()} "$@"\n')
    wrapper.chmod(0o755)
    containerd("-n", "krun", "run", "-d", "--log-uri", f"file://{log}", "--runc-binary",
               str(wrapper), *private, image, cid, "/counter.km")
    try:
        def ticks() -> list[int]:
            text = log.read_text() if log.exists() else ""
            return [int(n) for n in re.findall(r"^tick (\d+)$", text, re.M)]

        deadline = time.monotonic() + 15
        while len(ticks()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ticks()) >= 3, "no ticks"
        containerd("-n", "krun", "containers", "checkpoint", "--task", cid, ref)
        assert ref in containerd.out("-n", "krun", "images", "ls", "-q").split()
        at = ticks()[-1]
        deadline = time.monotonic() + 10
        while ticks()[-1] <= at + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ticks()[-1] > at + 1, "the task did not go on after its checkpoint"
        containerd("-n", "krun", "tasks", "kill", "-s", "SIGKILL", cid)
        time.sleep(0.3)
        containerd("-n", "krun", "tasks", "delete", "-f", cid, check=False)
        containerd("-n", "krun", "containers", "delete", cid)
        proc = containerd("-n", "krun", "containers", "restore", "--live", cid, ref,
                          check=False, timeout=30)
        assert proc.returncode == 0, proc.stderr
        time.sleep(0.3)
        tasks = containerd.out("-n", "krun", "tasks", "ls").splitlines()
        assert any(t.split()[0] == cid and t.split()[-1] == "RUNNING" for t in tasks[1:]), tasks
        # The shim's own spelling of the flags (Go's single dash included) reached krun.
        argv = (tmp_path / "argv").read_text()
        assert "checkpoint --image-path" in argv and "restore --image-path" in argv
        assert " -no-subreaper " in argv
    finally:
        containerd("-n", "krun", "tasks", "kill", "-s", "SIGKILL", cid, check=False)
        time.sleep(0.3)
        containerd("-n", "krun", "tasks", "delete", "-f", cid, check=False)
        containerd("-n", "krun", "containers", "delete", cid, check=False)
        containerd("-n", "krun", "images", "rm", ref, check=False)
