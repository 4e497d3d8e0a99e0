"""scripts/demo, the README's first command after setup, does what the README says."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO


@pytest.mark.kvm
@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="/dev/kvm is missing: the "
                    "demo runs Kontain payloads")
def test_demo_builds_packages_and_runs() -> None:
    proc = subprocess.run([str(REPO / "scripts" / "demo")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for want in ("Hello, Kontain, from a payload built by krun (2 args)",
                 "Hello, world, from a payload built by krun (0 args)",
                 "Hello from Kontain!", "hello from busybox", "exit code: 3"):
        assert want in lines, proc.stdout
