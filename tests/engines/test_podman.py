"""podman 4.3 + conmon 2.1 running krun (registered in [engine.runtimes] by krun install).

podman passes krun no global flags: krun's default --root (/run/krun) and errors on
stderr are what podman relies on.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Iterator

import pytest

from . import images
from .conftest import KONTAIN_WIP, Engine
from .daemons import wait_for

pytestmark = pytest.mark.engines

_names = itertools.count()
SLEEPER = [images.BUSYBOX, "sleep", "600"]


@pytest.fixture
def name(podman: Engine) -> Iterator[str]:
    n = f"kt-podman-{next(_names)}"
    yield n
    left = podman("ps", "-aq", "--filter", f"name=^{n}$").stdout.strip()
    if left:
        podman("rm", "-f", "-t", "0", n)
    assert not left, f"test left container {n}"


def inspect(podman: Engine, name: str, fmt: str) -> str:
    return podman.out("inspect", "-f", fmt, name)


def run_d(podman: Engine, name: str, *args: str, runtime: str = "krun") -> str:
    cid = podman.out("run", "-d", "--runtime", runtime, "--name", name, *args)
    assert inspect(podman, name, "{{.State.Status}}") == "running"
    return cid


def test_runtime_is_the_registered_krun(podman: Engine, name: str) -> None:
    # `--runtime krun` resolves through containers.conf's [engine.runtimes] (krun install).
    cid = run_d(podman, name, *SLEEPER)
    assert inspect(podman, name, "{{.OCIRuntime}}") == "krun"
    podman("rm", "-f", "-t", "0", name)
    assert cid


def test_run_rm_prints_output_and_returns_the_exit_code(podman: Engine, name: str) -> None:
    proc = podman("run", "--rm", "--runtime", "krun", "--name", name, images.BUSYBOX,
                  "sh", "-c", "echo hello from krun; exit 7", check=False)
    assert (proc.returncode, proc.stdout) == (7, "hello from krun\n"), proc.stderr
    assert podman.out("ps", "-aq", "--filter", f"name={name}") == ""


def test_exec_variants(podman: Engine, name: str) -> None:
    run_d(podman, name, *SLEEPER)
    assert podman.out("exec", name, "echo", "plain") == "plain"
    proc = podman("exec", "-t", name, "tty")
    assert re.fullmatch(r"/dev/pts/\d+\r?\n", proc.stdout), proc.stdout
    assert podman("exec", "-i", name, "cat", input="via stdin\n").stdout == "via stdin\n"
    rc, out = podman.cli.pty("exec", "-it", name, "sh", input=b"echo $((6*7)); exit 3\n")
    assert "42" in out and rc == 3
    podman("exec", "-d", name, "sh", "-c", "echo detached > /tmp/flag")
    wait_for(lambda: podman("exec", name, "cat", "/tmp/flag", check=False).stdout
             == "detached\n", what="the detached exec's file")
    out = podman.out("exec", "-u", "1:1", "-w", "/tmp", "-e", "FOO=bar", name,
                     "sh", "-c", "id -u; id -g; pwd; echo $FOO")
    assert out.split() == ["1", "1", "/tmp", "bar"]
    assert podman("exec", name, "sh", "-c", "exit 5", check=False).returncode == 5
    podman("rm", "-f", "-t", "0", name)


def test_stop_and_kill(podman: Engine, name: str) -> None:
    run_d(podman, name, images.BUSYBOX, "sh", "-c",
          "trap 'echo got HUP' HUP; trap 'echo got TERM; exit 42' TERM; echo ready; "
          "while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in podman.out("logs", name), what="ready")
    podman("kill", "-s", "HUP", name)
    wait_for(lambda: "got HUP" in podman.out("logs", name), what="the HUP trap")
    assert inspect(podman, name, "{{.State.Status}}") == "running"
    podman("stop", "-t", "20", name)
    assert inspect(podman, name, "{{.State.ExitCode}}") == "42"
    assert "got TERM" in podman.out("logs", name)
    podman("start", name)
    wait_for(lambda: podman.out("logs", name).count("ready") == 2, what="second start")
    podman("kill", name)
    wait_for(lambda: inspect(podman, name, "{{.State.Status}}") == "exited", what="exit")
    assert inspect(podman, name, "{{.State.ExitCode}}") == str(128 + signal.SIGKILL)
    podman("rm", name)


def test_pause_unpause_update_restart(podman: Engine, name: str) -> None:
    run_d(podman, name, "--memory", "256m", *SLEEPER)
    podman("pause", name)
    assert inspect(podman, name, "{{.State.Status}}") == "paused"
    podman("unpause", name)
    assert inspect(podman, name, "{{.State.Status}}") == "running"

    read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    assert podman.out("exec", name, "sh", "-c", read).split()[0] == str(256 << 20)
    podman("update", "--memory", "64m", "--cpus", "0.5", name)  # `update --resources=FILE`
    assert podman.out("exec", name, "sh", "-c", read).split() == [str(64 << 20), "50000"]

    pid = inspect(podman, name, "{{.State.Pid}}")
    podman("restart", "-t", "1", name)
    assert inspect(podman, name, "{{.State.Status}}") == "running"
    assert inspect(podman, name, "{{.State.Pid}}") not in (pid, "0")
    podman("rm", "-f", "-t", "0", name)


def test_init_runs_catatonit_as_pid_1(podman: Engine, name: str) -> None:
    out = podman.out("run", "--rm", "--init", "--runtime", "krun", "--name", name,
                     images.BUSYBOX, "cat", "/proc/1/cmdline")
    # podman bind-mounts its init (catatonit) at /run/podman-init.
    assert out.split("\0")[:4] == ["/run/podman-init", "--", "cat", "/proc/1/cmdline"], out


@pytest.mark.parametrize("command", ["/no/such/program", "/etc/passwd"])
def test_failed_exec_exit_code_matches_runc(podman: Engine, name: str, command: str) -> None:
    codes = {}
    for runtime in ("runc", "krun"):
        proc = podman("run", "--rm", "--runtime", runtime, "--name", f"{name}-{runtime}",
                      images.BUSYBOX, command, check=False)
        codes[runtime] = proc.returncode
    assert codes["krun"] == codes["runc"] and codes["runc"] in (126, 127), codes


def test_kontain_image_runs_its_payload_under_km(podman: Engine, name: str) -> None:
    image = podman.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    proc = podman("run", "--rm", "--runtime", "krun", "--name", name, image, check=False)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr


@pytest.mark.parametrize("payload,status", [("/sigill.km", 132), ("/sigsegv.km", 139)])
def test_kontain_signal_death_is_the_exit_code(podman: Engine, name: str, payload: str,
                                               status: int) -> None:
    image = podman.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    proc = podman("run", "--rm", "--runtime", "krun", "--name", name, image, payload,
                  check=False)
    assert proc.returncode == status, proc.stderr


def test_kontain_podman_stop_runs_the_payloads_sigterm_handler(podman: Engine,
                                                                name: str) -> None:
    image = podman.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    podman("run", "-d", "--runtime", "krun", "--name", name, image, "/sigterm.km")
    wait_for(lambda: "ready" in podman.out("logs", name), what="the payload to start")
    t0 = time.monotonic()
    podman("stop", "-t", "20", name)
    assert time.monotonic() - t0 < 10, "podman stop had to kill the container"
    assert podman.out("inspect", "-f", "{{.State.ExitCode}}", name) == "0"
    assert "got SIGTERM" in podman.out("logs", name)
    podman("rm", name)


def test_kontain_annotation_runs_a_busybox_image_payload_under_km(podman: Engine,
                                                                   name: str) -> None:
    # podman cannot pass --kontain=always (no runtime args): the annotation asks instead.
    if not podman.extra["has_uname_km"]:
        pytest.skip(KONTAIN_WIP)
    out = podman.out("run", "--rm", "--runtime", "krun", "--annotation",
                     "app.kontain.version=1", "--name", name, images.BUSYBOX, "/uname.km")
    assert ".kontain.KVM" in out, out


def _ticks(podman: Engine, name: str) -> list[int]:
    return [int(n) for n in re.findall(r"^tick (\d+)$", podman.out("logs", name), re.M)]


def test_kontain_checkpoint_restore_round_trip(podman: Engine, name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """podman container checkpoint / restore (in place, then --export / --import to a
    tar into a new container) of a Kontain counter: a KM snapshot, no CRIU involved."""
    image = podman.extra["kontain_image"]
    if not image or not images.payload("counter.km"):
        pytest.skip(KONTAIN_WIP)
    podman("run", "-d", "--runtime", "krun", "--name", name, image, "/counter.km")
    wait_for(lambda: len(_ticks(podman, name)) >= 3, what="ticks")
    podman("container", "checkpoint", name)
    assert inspect(podman, name, "{{.State.Status}}") == "exited"
    before = _ticks(podman, name)
    podman("container", "restore", name)
    assert inspect(podman, name, "{{.State.Status}}") == "running"
    wait_for(lambda: len(_ticks(podman, name)) >= len(before) + 2, what="ticks after restore")
    after = _ticks(podman, name)[len(before):]
    assert after[0] == before[-1] + 1, (before[-3:], after[:3])

    archive = tmp_path / "checkpoint.tar.gz"
    podman("container", "checkpoint", "--export", str(archive), name)
    at = _ticks(podman, name)[-1]
    podman("rm", "-f", "-t", "0", name)
    clone = f"{name}-imported"
    try:
        podman("container", "restore", "--import", str(archive), "--name", clone)
        # Its log may hold the exported container's lines: wait for new ones.
        wait_for(lambda: (_ticks(podman, clone) or [0])[-1] > at + 1,
                 what="the imported container's ticks")
        new = [t for t in _ticks(podman, clone) if t > at]
        assert new == list(range(at + 1, at + 1 + len(new))), new
    finally:
        podman("rm", "-f", "-t", "0", clone, check=False)
