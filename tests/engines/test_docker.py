"""docker (Debian's dockerd 20.10, its containerd and runc shim) running krun.

dockerd calls krun through containerd-shim-runc-v2 with `--root --log --log-format json`;
every docker command below ends in one of the calls engines.md lists.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import krun_binary

from . import images
from .conftest import CGROUP_PARENT, KONTAIN_WIP, Engine
from .daemons import processes_mentioning, wait_for

pytestmark = pytest.mark.engines

_names = itertools.count()


@pytest.fixture
def name(docker: Engine) -> Iterator[str]:
    """A container name; the container must be gone when the test ends."""
    n = f"kt-docker-{next(_names)}"
    yield n
    left = docker("ps", "-aq", "--filter", f"name=^{n}$").stdout.strip()
    if left:
        docker("rm", "-f", n)
    assert not left, f"test left container {n}"


def krun_state_root(docker: Engine) -> Path:
    # dockerd 20.10 gives every runtime the same --root, <exec-root>/runtime-runc/moby
    # (engines.md): krun shares it with runc.
    return docker.run_dir / "exec" / "runtime-runc" / "moby"


def krun_ids(docker: Engine) -> list[str]:
    root = krun_state_root(docker)
    out = krun_cli(root, "list", "-q")
    return out.split()


def krun_cli(root: Path, *args: str) -> str:
    proc = subprocess.run([krun_binary(), "--root", str(root), *args], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def inspect(docker: Engine, name: str, fmt: str) -> str:
    return docker.out("inspect", "-f", fmt, name)


def run_d(docker: Engine, name: str, *args: str, runtime: str = "krun") -> str:
    cid = docker.out("run", "-d", "--runtime", runtime, "--name", name, *args)
    assert inspect(docker, name, "{{.State.Status}}") == "running"
    return cid


SLEEPER = [images.BUSYBOX, "sleep", "600"]


def test_run_rm_prints_output_and_returns_the_exit_code(docker: Engine, name: str) -> None:
    proc = docker("run", "--rm", "--runtime", "krun", "--name", name, images.BUSYBOX,
                  "sh", "-c", "echo hello from krun; echo oops >&2; exit 7", check=False)
    assert proc.returncode == 7
    assert proc.stdout == "hello from krun\n"
    assert "oops" in proc.stderr
    assert docker.out("ps", "-aq", "--filter", f"name={name}") == ""
    assert krun_ids(docker) == [], "--rm deletes krun's state too"


def test_run_with_a_terminal(docker: Engine, name: str) -> None:
    # -t: the shim hands krun a --console-socket and relays the pty.
    proc = docker("run", "--rm", "-t", "--runtime", "krun", "--name", name, images.BUSYBOX,
                  "sh", "-c", "tty; stty size")
    lines = proc.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")


def test_exec_variants(docker: Engine, name: str) -> None:
    run_d(docker, name, *SLEEPER)
    assert docker.out("exec", name, "echo", "plain") == "plain"

    proc = docker("exec", "-t", name, "tty")
    assert re.fullmatch(r"/dev/pts/\d+\r?\n", proc.stdout), proc.stdout

    assert docker("exec", "-i", name, "cat", input="through stdin\n").stdout == "through stdin\n"

    rc, out = docker.cli.pty("exec", "-it", name, "sh", input=b"echo $((6*7)); exit 3\n")
    assert "42" in out and rc == 3

    docker("exec", "-d", name, "sh", "-c", "echo detached > /tmp/flag")
    wait_for(lambda: docker("exec", name, "cat", "/tmp/flag", check=False).stdout
             == "detached\n", what="the detached exec's file")

    out = docker.out("exec", "-u", "1:1", "-w", "/tmp", "-e", "FOO=bar", name,
                     "sh", "-c", "id -u; id -g; pwd; echo $FOO")
    assert out.split() == ["1", "1", "/tmp", "bar"]

    proc = docker("exec", name, "sh", "-c", "exit 5", check=False)
    assert proc.returncode == 5

    top = docker.out("top", name)  # `krun ps --format json`
    assert "sleep 600" in top
    docker("rm", "-f", name)


def test_stop_runs_the_containers_term_handler(docker: Engine, name: str) -> None:
    run_d(docker, name, images.BUSYBOX, "sh", "-c",
          "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in docker.out("logs", name), what="ready")
    docker("stop", "-t", "20", name)
    assert inspect(docker, name, "{{.State.Status}}") == "exited"
    assert inspect(docker, name, "{{.State.ExitCode}}") == "42"
    assert "got TERM" in docker.out("logs", name)
    docker("rm", name)


def test_kill_with_a_signal_and_plain_kill(docker: Engine, name: str) -> None:
    run_d(docker, name, images.BUSYBOX, "sh", "-c",
          "trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in docker.out("logs", name), what="ready")
    docker("kill", "-s", "HUP", name)
    wait_for(lambda: "got HUP" in docker.out("logs", name), what="the HUP trap")
    assert inspect(docker, name, "{{.State.Status}}") == "running"
    docker("kill", name)
    wait_for(lambda: inspect(docker, name, "{{.State.Status}}") == "exited", what="exit")
    assert inspect(docker, name, "{{.State.ExitCode}}") == str(128 + signal.SIGKILL)
    docker("rm", name)
    assert krun_ids(docker) == []


def _freezer_state(docker: Engine, cid: str) -> str:
    path = Path("/sys/fs/cgroup/freezer", CGROUP_PARENT, "docker", cid, "freezer.state")
    return path.read_text().strip()


def test_pause_and_unpause(docker: Engine, name: str) -> None:
    cid = run_d(docker, name, *SLEEPER)
    docker("pause", name)
    assert inspect(docker, name, "{{.State.Status}}") == "paused"
    assert _freezer_state(docker, cid) == "FROZEN"
    state = json.loads(krun_cli(krun_state_root(docker), "state", cid))
    assert state["status"] == "paused"
    docker("unpause", name)
    assert inspect(docker, name, "{{.State.Status}}") == "running"
    assert _freezer_state(docker, cid) == "THAWED"
    assert docker.out("exec", name, "echo", "alive") == "alive"
    docker("rm", "-f", name)


def test_update_memory_and_cpus_shows_inside(docker: Engine, name: str) -> None:
    run_d(docker, name, "--memory", "256m", *SLEEPER)
    read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    before = docker.out("exec", name, "sh", "-c", read).split()
    assert before[0] == str(256 << 20)
    docker("update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", name)
    after = docker.out("exec", name, "sh", "-c", read).split()
    assert after == [str(64 << 20), "50000"]
    docker("rm", "-f", name)


def test_restart_starts_a_new_init(docker: Engine, name: str) -> None:
    run_d(docker, name, *SLEEPER)
    pid = inspect(docker, name, "{{.State.Pid}}")
    docker("restart", "-t", "1", name)
    assert inspect(docker, name, "{{.State.Status}}") == "running"
    assert inspect(docker, name, "{{.State.Pid}}") not in (pid, "0")
    assert docker.out("exec", name, "echo", "again") == "again"
    docker("rm", "-f", name)


def test_rm_force_leaves_nothing(docker: Engine, name: str) -> None:
    cid = run_d(docker, name, *SLEEPER)
    pid = int(inspect(docker, name, "{{.State.Pid}}"))
    docker("rm", "-f", name)
    assert krun_ids(docker) == []
    assert not Path(f"/proc/{pid}").exists()
    assert not processes_mentioning(cid)
    assert not Path("/sys/fs/cgroup/memory", CGROUP_PARENT, "docker", cid).exists()


def test_init_runs_docker_init_as_pid_1(docker: Engine, name: str) -> None:
    out = docker.out("run", "--rm", "--init", "--runtime", "krun", "--name", name,
                     images.BUSYBOX, "cat", "/proc/1/cmdline")
    assert out.split("\0")[0].endswith("docker-init"), out


@pytest.mark.parametrize("command,code", [("/no/such/program", 127), ("no-such-program", 127),
                                          ("/etc/passwd", 126)])
def test_failed_exec_exit_code_matches_runc(docker: Engine, name: str, command: str,
                                            code: int) -> None:
    codes = {}
    for runtime in ("runc", "krun"):
        proc = docker("run", "--rm", "--runtime", runtime, "--name", f"{name}-{runtime}",
                      images.BUSYBOX, command, check=False)
        codes[runtime] = proc.returncode
    assert codes == {"runc": code, "krun": code}


def test_user_network_prestart_hook_configures_the_network(docker: Engine, name: str) -> None:
    # dockerd hands krun a prestart hook (`dockerd libnetwork-setkey`) that moves the
    # veth into the container: without it running, eth0 would not exist. The bridge has
    # no uplink (iptables off): no traffic leaves the machine.
    net = f"{name}-net"
    docker("network", "create", "--driver", "bridge", "--subnet", "192.0.2.0/24",
           "-o", f"com.docker.network.bridge.name=kt{next(_names)}", net)
    try:
        out = docker.out("run", "--rm", "--runtime", "krun", "--network", net, "--name", name,
                         images.BUSYBOX, "sh", "-c", "ip -4 -o addr show eth0")
        assert "inet 192.0.2." in out
    finally:
        docker("network", "rm", net)


def test_kontain_image_runs_its_payload_under_km(docker: Engine, name: str) -> None:
    image = docker.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    proc = docker("run", "--rm", "--runtime", "krun", "--name", name, image, check=False)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr


@pytest.mark.parametrize("payload,status", [("/sigill.km", 132), ("/sigsegv.km", 139)])
def test_kontain_signal_death_is_the_exit_code(docker: Engine, name: str, payload: str,
                                               status: int) -> None:
    """krun-init is pid 1, so KM dies of the payload's signal and docker reports it (KM
    as pid 1 would report 139 for everything, after 2 s). KM's own message reaches the
    container's stderr."""
    image = docker.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    proc = docker("run", "--rm", "--runtime", "krun", "--name", name, image, payload,
                  check=False)
    assert proc.returncode == status, proc.stderr
    assert proc.stderr.strip(), "KM's message did not reach docker"


def test_kontain_docker_stop_runs_the_payloads_sigterm_handler(docker: Engine,
                                                                name: str) -> None:
    image = docker.extra["kontain_image"]
    if not image:
        pytest.skip(KONTAIN_WIP)
    run_d(docker, name, image, "/sigterm.km")
    wait_for(lambda: "ready" in docker.out("logs", name), what="the payload to start")
    t0 = time.monotonic()
    docker("stop", "-t", "20", name)
    assert time.monotonic() - t0 < 10, "docker stop had to kill the container"
    assert inspect(docker, name, "{{.State.ExitCode}}") == "0"
    assert "got SIGTERM" in docker.out("logs", name)
    docker("rm", name)


def test_always_kontain_runtime_runs_busybox_image_payload_under_km(docker: Engine,
                                                                     name: str) -> None:
    if not docker.extra["has_uname_km"]:
        pytest.skip(KONTAIN_WIP)
    out = docker.out("run", "--rm", "--runtime", "krun-kontain", "--name", name,
                     images.BUSYBOX, "/uname.km")
    assert out.endswith(".kontain.KVM") or ".kontain.KVM" in out, out
    # The same image and payload under plain krun is not Kontain (and cannot run natively).
    native = docker("run", "--rm", "--runtime", "krun", "--name", name, images.BUSYBOX,
                    "/uname.km", check=False)
    assert ".kontain.KVM" not in native.stdout


def test_registered_runtimes_and_reload_on_sighup(docker: Engine) -> None:
    # krun install wrote them (the fixture ran it over dockerd's private config root).
    def runtimes() -> dict[str, dict[str, object]]:
        return json.loads(docker.out("info", "--format", "{{json .Runtimes}}"))

    got = runtimes()
    assert got["krun"]["path"] == krun_binary()
    assert got["krun-kontain"] == {"path": krun_binary(), "runtimeArgs": ["--kontain=always"]}
    # What install tells the user holds: uninstall + SIGHUP drops them, install + SIGHUP
    # brings them back, with no restart.
    assert docker.daemon is not None
    root = str(docker.run_dir / "root")
    subprocess.run([krun_binary(), "uninstall", "--engine", "docker", "--config-root", root],
                   check=True, capture_output=True)
    docker.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "krun" not in runtimes(), what="dockerd to drop krun")
    assert "crun" in runtimes(), "other runtimes stay"
    subprocess.run([krun_binary(), "install", "--engine", "docker", "--config-root", root],
                   check=True, capture_output=True)
    docker.daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "krun-kontain" in runtimes(), what="dockerd to reload krun")


def test_list_in_the_shared_root_shows_only_krun_containers(docker: Engine, name: str) -> None:
    # dockerd gives runc and krun the same --root: krun must skip runc's entries.
    ours = run_d(docker, name, *SLEEPER)
    theirs = run_d(docker, f"{name}-runc", *SLEEPER, runtime="runc")
    try:
        assert (krun_state_root(docker) / theirs).is_dir(), "runc's state is beside ours"
        assert krun_ids(docker) == [ours]
    finally:
        docker("rm", "-f", name, f"{name}-runc")
