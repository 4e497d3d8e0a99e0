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
