"""A bounded run of scripts/fuzz-inputs (atheris over krun's input readers) in CI.

The seeds hold the inputs an adversarial review found (a truncated config, `[` x 100000,
an integer annotation, `km_sha256 = ""`...), so they replay deterministically first;
then a short coverage-guided run from them. Long campaigns: scripts/fuzz-inputs
--seconds N --corpus DIR. Nothing here starts a container.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "fuzz-inputs"
FUZZ_SECONDS = 20  # with the seeds and start-up, under the 30 s this file may take

pytest.importorskip("atheris", reason="atheris is a dev dependency: rerun scripts/setup")


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if not line.startswith("INFO: Instrumenting")]
    return "\n".join(lines[-40:])


def test_seeds_replay() -> None:
    proc = _run("--seeds", timeout=60)
    assert proc.returncode == 0, _tail(proc)
    assert re.search(r"^\d+ seeds passed$", proc.stdout, re.M), _tail(proc)


def test_bounded_fuzzing_finds_nothing(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    proc = _run("--seconds", str(FUZZ_SECONDS), "--artifacts", str(artifacts),
                timeout=FUZZ_SECONDS + 60)
    found = sorted(p.name for p in artifacts.iterdir()) if artifacts.exists() else []
    assert proc.returncode == 0 and not found, f"findings {found}:\n{_tail(proc)}"
    runs = re.search(r"^Done (\d+) runs in (\d+) second", proc.stdout + proc.stderr, re.M)
    assert runs and int(runs.group(1)) > 1000, _tail(proc)
    print(f"fuzz-inputs: {runs.group(1)} inputs in {runs.group(2)} s, no finding")
