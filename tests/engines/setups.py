"""Private docker and podman setups, shared by the engine tests and scripts/bench-engines.

Each writes its private settings under a config root and then runs `krun install
--config-root` over them, so the runtime registration used is krun's own. Standard
library only (the benchmark runs without pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .daemons import Cli, Daemon

DOCKER, DOCKERD = "/usr/bin/docker", "/usr/sbin/dockerd"  # not /usr/local/bin/docker (v28)
PODMAN, CONMON = "/usr/bin/podman", "/usr/bin/conmon"
CRUN = "/usr/bin/crun"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def krun_install(krun: str, engine: str, config_root: Path,
                 state_root: Path | None = None) -> None:
    root = ["--root", str(state_root)] if state_root else []
    subprocess.run([krun, *root, "install", "--engine", engine, "--config-root",
                    str(config_root)], check=True, capture_output=True, timeout=30)


def start_docker(krun: str, run_dir: Path, data_dir: Path, cgroup_parent: str
                 ) -> tuple[Daemon, Cli]:
    """dockerd with its own containerd, data, exec root, socket and cgroup parent; no
    iptables and no default bridge, so the host's network stays as it is."""
    sock = run_dir / "docker.sock"
    conf_root = run_dir / "root"
    conf = write(conf_root / "etc/docker/daemon.json", json.dumps({
        "data-root": str(data_dir), "exec-root": str(run_dir / "exec"),
        "pidfile": str(run_dir / "dockerd.pid"), "hosts": [f"unix://{sock}"],
        "storage-driver": "overlay2", "iptables": False, "ip6tables": False,
        "ip-forward": False, "ip-masq": False, "bridge": "none",
        "cgroup-parent": cgroup_parent, "exec-opts": ["native.cgroupdriver=cgroupfs"],
        "userland-proxy": False, "features": {"buildkit": False},
        # Else dockerd 20.10 writes its (unused) trust key to /etc/docker/key.json.
        "deprecated-key-path": str(run_dir / "key.json"),
        # For comparisons with runc (built in) and crun.
        "runtimes": {"crun": {"path": CRUN}},
    }, indent=2))
    krun_install(krun, "docker", conf_root)
    env = {**os.environ, "PATH": SYSTEM_PATH, "DOCKER_CONFIG": str(run_dir / "client")}
    daemon = Daemon("dockerd", [DOCKERD, "--config-file", str(conf)], run_dir / "dockerd.log",
                    env)
    cli = Cli([DOCKER, "-H", f"unix://{sock}"], env)
    try:
        daemon.wait_ready(lambda: cli("version", check=False, timeout=10).returncode == 0)
    except BaseException:
        daemon.stop()
        raise
    return daemon, cli


def podman_cli(krun: str, run_dir: Path, data_dir: Path) -> Cli:
    """podman with private storage, tmp dir, events log and network config."""
    conf_root = run_dir / "root"
    conf = write(conf_root / "etc/containers/containers.conf", f"""\
# Private settings for krun's engine tests; `krun install` adds [engine.runtimes].
[containers]
# No CAP_SYS_RESOURCE here: podman's default ulimits would need it.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{run_dir}/events.log"
tmp_dir = "{run_dir}/tmp"
conmon_path = ["{CONMON}"]

[network]
network_config_dir = "{run_dir}/net"
""")
    krun_install(krun, "podman", conf_root)
    storage = write(run_dir / "storage.conf", f"""\
[storage]
driver = "overlay"
runroot = "{run_dir}/storage"
graphroot = "{data_dir}/storage"
""")
    registries = write(run_dir / "registries.conf", "unqualified-search-registries = []\n")
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage),
           "CONTAINERS_REGISTRIES_CONF": str(registries), "PATH": SYSTEM_PATH}
    return Cli([PODMAN, "--cgroup-manager", "cgroupfs"], env)


def import_layer(cli: Cli, scratch: Path, layer: bytes, ref: str, changes: list[str]) -> None:
    """`docker import` / `podman import` of a layer tarball under a name."""
    path = scratch / f"import-{ref.replace('/', '_').replace(':', '_')}.tar"
    path.write_bytes(layer)
    try:
        cli("import", *changes, str(path), ref)
    finally:
        path.unlink()
