"""Real engines, each in private directories, with krun registered by `krun install`.

Every daemon gets its own config root (RUN/<engine>/root/etc/...), where the fixture
writes the private settings and then runs `krun install --config-root` over them, so the
registration under test is the one engines really read. Daemons run from Debian's
packages (docker.io, containerd, podman + conmon) and CRI-O/crictl from
scripts/install-engines; a missing engine skips its tests with that hint.

At the end each daemon is stopped by pid, and the session asserts that nothing is left:
no process naming our directories, no mount under them, no cgroup, no iptables chain.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import krun_binary

from krun.engines import tomlfile

from . import images, setups
from .daemons import (
    CONTAINERD_SHARED,
    Cli,
    Daemon,
    absent,
    cgroup_dirs,
    iptables_chains,
    kill_pids,
    processes_mentioning,
    remove_cgroup_tree,
    rmdir_empty,
    unmount_under,
)

ENGINES_BIN = images.KRUN_CACHE / "engines" / "bin"
DOCKER, DOCKERD, PODMAN, CONMON = setups.DOCKER, setups.DOCKERD, setups.PODMAN, setups.CONMON
write = setups.write
CONTAINERD, CTR = "/usr/bin/containerd", "/usr/bin/ctr"
CRIO, CRICTL, PINNS = ENGINES_BIN / "crio", ENGINES_BIN / "crictl", ENGINES_BIN / "pinns"
# Short: containerd and the shims put unix sockets below these (108-byte limit).
RUN = Path("/run/krun-e") / str(os.getpid())
DATA = Path("/var/lib/krun-engines") / str(os.getpid())
CGROUP_PARENT = "krun-engines"  # every engine's containers go below it
CRI_RUNTIMES = ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")
KONTAIN_WIP = "needs the Kontain payloads km_payloads/*.km (scripts/build-km)"


def need(*programs: str | Path) -> None:
    missing = [str(p) for p in programs if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run scripts/install-engines")


def krun_install(engine: str, config_root: Path, state_root: Path | None = None) -> None:
    setups.krun_install(krun_binary(), engine, config_root, state_root)


class Engine:
    """A running engine: its client, private dirs and the images it holds."""

    def __init__(self, name: str, cli: Cli, run_dir: Path, data_dir: Path,
                 daemon: Daemon | None = None) -> None:
        self.name, self.cli, self.run_dir, self.data_dir = name, cli, run_dir, data_dir
        self.daemon = daemon
        self.extra: dict[str, Any] = {}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cli(*args, check=check, timeout=timeout, input=input)

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.cli.out(*args, timeout=timeout)


@pytest.fixture(scope="session")
def engine_dirs() -> Iterator[tuple[Path, Path]]:
    """RUN and DATA for this session; at the end, the leak checks of every engine."""
    before_chains = iptables_chains()
    made = absent(CONTAINERD_SHARED)  # removed at the end if this session made them
    RUN.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    yield RUN, DATA
    problems = []
    left = processes_mentioning(str(RUN), str(DATA))
    if left:
        problems.append(f"processes left: {left}")
        kill_pids(list(left))
        time.sleep(0.5)
    mounted = unmount_under(RUN, DATA)
    if mounted:
        problems.append(f"mounts left: {mounted}")
    for d in cgroup_dirs(CGROUP_PARENT):
        remove_cgroup_tree(d)
    stuck = cgroup_dirs(CGROUP_PARENT)
    if stuck:
        problems.append(f"cgroups left (busy): {stuck}")
    new_chains = iptables_chains() - before_chains
    if new_chains:
        problems.append(f"iptables chains left: {sorted(new_chains)}")
    shutil.rmtree(RUN, ignore_errors=True)
    shutil.rmtree(DATA, ignore_errors=True)
    busy = rmdir_empty(made)  # a shim socket still there is a leak
    if busy:
        problems.append(f"left in /run/containerd: {busy}")
    for base in (RUN.parent, DATA.parent):
        try:
            base.rmdir()
        except OSError:
            pass
    assert not problems, "; ".join(problems)


def _stop_and_check(daemon: Daemon, *dirs: Path, sig: int = signal.SIGTERM) -> None:
    rc = daemon.stop(sig)
    left = processes_mentioning(*(str(d) for d in dirs))
    kill_pids(list(left))
    mounted = unmount_under(*dirs)
    assert not left, f"{daemon.name} left processes: {left}"
    assert rc is not None
    # Engines may keep (and legitimately leave) their own storage mounts; the session
    # check asserts the rest. A container's rootfs mount left behind is a leak.
    rootfs = [m for m in mounted if m.endswith(("/merged", "/rootfs"))]
    assert not rootfs, f"{daemon.name} left container mounts: {rootfs}"


# docker ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker(engine_dirs: tuple[Path, Path]) -> Iterator[Engine]:
    need(DOCKER, DOCKERD, CONTAINERD)
    run_dir, data_dir = RUN / "docker", DATA / "docker"
    daemon, cli = setups.start_docker(krun_binary(), run_dir, data_dir,
                                      f"/{CGROUP_PARENT}/docker")
    try:
        eng = Engine("docker", cli, run_dir, data_dir, daemon)
        _import_images(eng)
        yield eng
        left = cli.out("ps", "-aq")
        if left:
            cli("rm", "-f", *left.split())
        assert not left, f"containers left in docker: {left}"
    finally:
        _stop_and_check(daemon, run_dir, data_dir)


def _import_images(eng: Engine) -> None:
    """busybox (+ /uname.km when built) and the Kontain image, via `<tool> import`."""
    _import_bytes(eng, images.busybox_layer(_uname_extra()), images.BUSYBOX, ["sh"])
    hello = images.payload("hello.km")
    eng.extra["kontain_image"] = None
    if hello:
        _import_bytes(eng, images.kontain_layer(hello), images.KONTAIN, ["/hello.km"])
        eng.extra["kontain_image"] = images.KONTAIN
    eng.extra["has_uname_km"] = images.payload("uname.km") is not None


def _import_bytes(eng: Engine, layer: bytes, ref: str, cmd: list[str]) -> None:
    setups.import_layer(eng.cli, eng.run_dir, layer, ref, images.import_changes(cmd))


# podman ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def podman(engine_dirs: tuple[Path, Path]) -> Iterator[Engine]:
    need(PODMAN, CONMON)
    run_dir, data_dir = RUN / "podman", DATA / "podman"
    # podman's cgroupfs parent is fixed (/libpod_parent): clean it only if it is ours.
    parents_before = cgroup_dirs("libpod_parent")
    cli = setups.podman_cli(krun_binary(), run_dir, data_dir)
    eng = Engine("podman", cli, run_dir, data_dir)
    try:
        cli("info", "--format", "{{.Host.OCIRuntime.Name}}")
        _import_images(eng)
        yield eng
        left = cli.out("ps", "-aq")
        if left:
            cli("rm", "-f", *left.split())
        assert not left, f"containers left in podman: {left}"
    finally:
        cli("rm", "-af", "-t", "0", check=False)
        left = processes_mentioning(str(run_dir), str(data_dir))
        kill_pids(list(left))
        unmount_under(run_dir, data_dir)
        if not parents_before:
            for d in cgroup_dirs("libpod_parent"):
                remove_cgroup_tree(d)
        assert not left, f"podman left processes: {left}"


# containerd (its own daemon, for ctr and for CRI) ---------------------------------------------

@pytest.fixture(scope="session")
def containerd(engine_dirs: tuple[Path, Path]) -> Iterator[Engine]:
    need(CONTAINERD, CTR)
    run_dir, data_dir = RUN / "ctrd", DATA / "containerd"
    sock = run_dir / "c.sock"
    conf_root = run_dir / "root"
    conf = write(conf_root / "etc/containerd/config.toml", f"""\
version = 2
root = "{data_dir}/root"
state = "{run_dir}/state"

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{images.PAUSE}"
    # No CAP_SYS_RESOURCE on these machines: lowering oom_score_adj fails otherwise.
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{run_dir}/cni/bin"
      conf_dir = "{run_dir}/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{data_dir}/opt"
""")
    krun_install("containerd", conf_root)
    # Without a Root option the runc shim keeps runtime state in /run/containerd/runc:
    # point krun's at a private directory (what krun install wrote stays as it is).
    text = conf.read_text()
    options = (*CRI_RUNTIMES, "krun", "options")
    conf.write_text(tomlfile.set_value(text, options, "Root", str(run_dir / "krun")))
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    daemon = Daemon("containerd", [CONTAINERD, "--config", str(conf)],
                    run_dir / "containerd.log", env)
    ctr = Cli([CTR, "--address", str(sock)], env)
    try:
        daemon.wait_ready(lambda: ctr("version", check=False, timeout=10).returncode == 0)
        eng = Engine("containerd", ctr, run_dir, data_dir, daemon)
        eng.extra["socket"] = sock
        eng.extra["krun_root"] = run_dir / "krun" / "k8s.io"  # the shim adds the namespace
        for namespace in ("k8s.io", "krun"):
            _ctr_import(eng, namespace)
        yield eng
    finally:
        _stop_and_check(daemon, run_dir, data_dir)


def _ctr_import(eng: Engine, namespace: str) -> None:
    """OCI image-layout archives, built in Python, through `ctr image import`."""
    archives = [
        (images.BUSYBOX, images.busybox_layer(_uname_extra()), ["sh"], None),
        (images.PAUSE, images.busybox_layer(), images.PAUSE_CMD, None),
    ]
    hello = images.payload("hello.km")
    if hello:
        archives.append((images.KONTAIN, images.kontain_layer(hello), ["/hello.km"], None))
    for ref, layer, cmd, entrypoint in archives:
        path = eng.run_dir / "image.tar"
        path.write_bytes(images.oci_archive(layer, ref, cmd, entrypoint))
        try:
            eng("-n", namespace, "image", "import", str(path))
        finally:
            path.unlink()
    eng.extra["kontain_image"] = images.KONTAIN if hello else None


def _uname_extra() -> dict[str, bytes]:
    uname = images.payload("uname.km")
    return {"uname.km": uname.read_bytes()} if uname else {}


def crictl_cli(sock: Path, run_dir: Path) -> Cli:
    config = write(run_dir / "crictl.yaml", f"runtime-endpoint: unix://{sock}\n"
                   f"image-endpoint: unix://{sock}\ntimeout: 60\n")
    return Cli([str(CRICTL), "--config", str(config)],
               {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.fixture(scope="session")
def containerd_cri(containerd: Engine) -> Engine:
    need(CRICTL)
    cli = crictl_cli(containerd.extra["socket"], containerd.run_dir)
    cli("version")
    eng = Engine("containerd-cri", cli, containerd.run_dir, containerd.data_dir,
                 containerd.daemon)
    eng.extra.update(containerd.extra)
    return eng


# CRI-O ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def crio(engine_dirs: tuple[Path, Path]) -> Iterator[Engine]:
    need(CRIO, CRICTL, PINNS, CONMON, PODMAN)
    run_dir, data_dir = RUN / "crio", DATA / "crio"
    sock = run_dir / "crio.sock"
    storage_root, storage_run = data_dir / "storage", run_dir / "storage"
    _podman_store_import(run_dir, storage_root, storage_run)
    conf_root = run_dir / "root"
    policy = write(run_dir / "policy.json",
                   '{"default": [{"type": "insecureAcceptAnything"}]}\n')
    conf = write(conf_root / "etc/crio/crio.conf", f"""\
[crio]
root = "{storage_root}"
runroot = "{storage_run}"
storage_driver = "overlay"
log_dir = "{run_dir}/pods"
version_file = "{run_dir}/version"
version_file_persist = "{data_dir}/version"
clean_shutdown_file = "{data_dir}/clean.shutdown"

[crio.api]
listen = "{sock}"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
# The infra (pause) container fails here as with every runtime (no CAP_SYS_RESOURCE);
# pods with their own pid namespace then need none.
drop_infra_ctr = true
pinns_path = "{PINNS}"
namespaces_dir = "{run_dir}/ns"
container_exits_dir = "{run_dir}/exits"
container_attach_socket_dir = "{run_dir}/attach"
hooks_dir = []

[crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"
runtime_type = "oci"
runtime_root = "{run_dir}/runc"
monitor_path = "{CONMON}"

[crio.image]
pause_image = "{images.PAUSE}"
signature_policy = "{policy}"

[crio.network]
network_dir = "{run_dir}/cni/net.d"
plugin_dirs = ["{run_dir}/cni/bin"]

[crio.metrics]
enable_metrics = false

[crio.nri]
enable_nri = false
""")
    # krun's --root becomes the handler's runtime_root: private, not /run/krun.
    krun_install("crio", conf_root, state_root=run_dir / "krun")
    chains_before = iptables_chains()
    env = {**os.environ, "PATH": f"/usr/sbin:/usr/bin:/sbin:/bin:{ENGINES_BIN}"}
    daemon = Daemon("crio", [str(CRIO), "--config", str(conf), "--config-dir",
                             str(conf_root / "etc/crio/crio.conf.d")],
                    run_dir / "crio.log", env)
    cli = crictl_cli(sock, run_dir)
    try:
        daemon.wait_ready(lambda: cli("version", check=False, timeout=10).returncode == 0)
        eng = Engine("crio", cli, run_dir, data_dir, daemon)
        eng.extra["krun_root"] = run_dir / "krun"
        eng.extra["kontain_image"] = images.KONTAIN if images.payload("hello.km") else None
        yield eng
    finally:
        # SIGTERM: after an unclean stop CRI-O wipes its image store at the next start.
        _stop_and_check(daemon, run_dir, data_dir)
        _remove_kube_chains(chains_before)


def _podman_store_import(run_dir: Path, root: Path, runroot: Path) -> None:
    """CRI-O and podman share containers/storage: fill CRI-O's store with podman."""
    storage = write(run_dir / "podman-storage.conf", f"""\
[storage]
driver = "overlay"
runroot = "{runroot}"
graphroot = "{root}"
""")
    conf = write(run_dir / "podman.conf", f"""\
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "{run_dir}/podman-tmp"
[network]
network_config_dir = "{run_dir}/podman-net"
""")
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    eng = Engine("podman-for-crio", Cli([PODMAN], env), run_dir, root)
    _import_bytes(eng, images.busybox_layer(_uname_extra()), images.BUSYBOX, ["sh"])
    _import_bytes(eng, images.busybox_layer(), images.PAUSE, images.PAUSE_CMD)
    hello = images.payload("hello.km")
    if hello:
        _import_bytes(eng, images.kontain_layer(hello), images.KONTAIN, ["/hello.km"])
    # podman's storage mount must not outlive it: CRI-O mounts the store itself.
    unmount_under(root, runroot)


def _remove_kube_chains(before: set[str]) -> None:
    """CRI-O creates an empty KUBE-MARK-MASQ chain (hostport code) at start: remove the
    KUBE-* chains it made (and only those), so the host's iptables end as they began."""
    for entry in sorted(iptables_chains() - before):
        tool, table, chain = entry.split("/", 2)
        if chain.startswith("KUBE-"):
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)
