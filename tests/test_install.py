"""`krun install` / `krun uninstall` on temporary config roots, through the real CLI.

Each engine's file is checked three ways: the values engines read (parsed back with
json/tomllib), the rest of the file byte for byte, and install -> uninstall giving back
the file it started from.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import krun_binary

KRUN = "/usr/local/bin/krun"
CRI = ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")

PODMAN_CONF = """\
# containers.conf written by hand
[containers]
default_ulimits = [
  "nofile=1024:1024",
]

[engine]
# the runtime podman picks when --runtime is not given
runtime = "crun"

[engine.runtimes]
crun = [
  "/usr/bin/crun",   # Debian's
  "/usr/local/bin/crun",
]
runsc = ["/usr/bin/runsc"]

[network]
network_backend = "netavark"
"""

CONTAINERD_CONF = """\
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([krun_binary(), *args], capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def install(root: Path, engine: str, *extra: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("install", "--engine", engine, "--config-root", str(root), "--path", KRUN,
               *extra, check=check)


def uninstall(root: Path, engine: str, *extra: str,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("uninstall", "--engine", engine, "--config-root", str(root), *extra, check=check)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# docker ----------------------------------------------------------------------------------

def test_docker_merges_runtimes_and_keeps_everything_else(tmp_path: Path) -> None:
    original = {"storage-driver": "overlay2", "runtimes": {"runsc": {"path": "/usr/bin/runsc"}},
                "default-runtime": "runc", "log-opts": {"max-size": "10m"}}
    f = write(tmp_path / "etc/docker/daemon.json", json.dumps(original, indent=4) + "\n")
    install(tmp_path, "docker")
    doc = json.loads(f.read_text())
    assert list(doc) == list(original), "key order kept"
    assert doc["runtimes"] == {
        "runsc": {"path": "/usr/bin/runsc"},
        "krun": {"path": KRUN},
        "krun-kontain": {"path": KRUN, "runtimeArgs": ["--kontain=always"]},
    }
    assert {k: v for k, v in doc.items() if k != "runtimes"} == \
        {k: v for k, v in original.items() if k != "runtimes"}
    assert f.read_text().startswith('{\n    "storage-driver"'), "the file's indentation kept"

    uninstall(tmp_path, "docker")
    assert json.loads(f.read_text()) == original


def test_docker_install_is_idempotent_and_creates_the_file(tmp_path: Path) -> None:
    install(tmp_path, "docker")
    f = tmp_path / "etc/docker/daemon.json"
    first = f.read_bytes()
    mtime = f.stat().st_mtime_ns
    again = install(tmp_path, "docker")
    assert f.read_bytes() == first
    assert f.stat().st_mtime_ns == mtime, "an install with nothing to do writes nothing"
    assert "already" in again.stderr
    uninstall(tmp_path, "docker")
    assert not f.exists(), "uninstall removes a file install created"


def test_docker_updates_a_stale_krun_path_in_place(tmp_path: Path) -> None:
    f = write(tmp_path / "etc/docker/daemon.json",
              '{"runtimes": {"krun": {"path": "/old/krun"}, "runc": {"path": "runc"}}}')
    install(tmp_path, "docker")
    runtimes = json.loads(f.read_text())["runtimes"]
    assert list(runtimes) == ["krun", "runc", "krun-kontain"]
    assert runtimes["krun"] == {"path": KRUN}


def test_docker_refuses_invalid_json_and_changes_nothing(tmp_path: Path) -> None:
    f = write(tmp_path / "etc/docker/daemon.json", '{"runtimes": ')
    write(tmp_path / "etc/containers/containers.conf", PODMAN_CONF)
    before = snapshot(tmp_path)
    proc = run("install", "--config-root", str(tmp_path), "--path", KRUN, check=False)
    assert proc.returncode == 1
    assert "daemon.json" in proc.stderr and "nothing was changed" in proc.stderr
    assert snapshot(tmp_path) == before, "a refused edit leaves every engine's file alone"
    assert f.read_text() == '{"runtimes": '


def test_docker_uninstall_refuses_while_krun_is_the_default(tmp_path: Path) -> None:
    f = write(tmp_path / "etc/docker/daemon.json",
              '{"default-runtime": "krun", "runtimes": {"krun": {"path": "/x"}}}')
    proc = uninstall(tmp_path, "docker", check=False)
    assert proc.returncode == 1 and "default-runtime" in proc.stderr
    assert json.loads(f.read_text())["runtimes"] == {"krun": {"path": "/x"}}


# podman ----------------------------------------------------------------------------------

def test_podman_adds_krun_to_an_existing_runtimes_table(tmp_path: Path) -> None:
    f = write(tmp_path / "etc/containers/containers.conf", PODMAN_CONF)
    install(tmp_path, "podman")
    text = f.read_text()
    doc = tomllib.loads(text)
    assert doc["engine"]["runtimes"] == {"crun": ["/usr/bin/crun", "/usr/local/bin/crun"],
                                         "runsc": ["/usr/bin/runsc"], "krun": [KRUN]}
    # Exactly one line added, right after the table's last key; the rest byte for byte.
    added = f'krun = ["{KRUN}"]\n'
    assert text == PODMAN_CONF.replace('runsc = ["/usr/bin/runsc"]\n',
                                       'runsc = ["/usr/bin/runsc"]\n' + added)
    install(tmp_path, "podman")
    assert f.read_text() == text, "idempotent"
    uninstall(tmp_path, "podman")
    assert f.read_text() == PODMAN_CONF


def test_podman_replaces_an_existing_krun_entry_in_place(tmp_path: Path) -> None:
    conf = PODMAN_CONF.replace('runsc = ["/usr/bin/runsc"]\n',
                               'krun = [\n  "/opt/old/krun",\n]\nrunsc = ["/usr/bin/runsc"]\n')
    f = write(tmp_path / "etc/containers/containers.conf", conf)
    install(tmp_path, "podman")
    assert f.read_text() == PODMAN_CONF.replace(
        'runsc = ["/usr/bin/runsc"]\n', f'krun = ["{KRUN}"]\nrunsc = ["/usr/bin/runsc"]\n')


def test_podman_creates_the_table_and_uninstall_gives_back_the_file(tmp_path: Path) -> None:
    conf = PODMAN_CONF.replace("[engine.runtimes]", "[engine.other]")
    f = write(tmp_path / "etc/containers/containers.conf", conf)
    install(tmp_path, "podman")
    doc = tomllib.loads(f.read_text())
    assert doc["engine"]["runtimes"] == {"krun": [KRUN]}
    assert f.read_text().startswith(conf), "appended; nothing before it touched"
    uninstall(tmp_path, "podman")
    assert f.read_text() == conf


def test_podman_with_no_file_writes_one_and_uninstall_removes_it(tmp_path: Path) -> None:
    install(tmp_path, "podman")
    f = tmp_path / "etc/containers/containers.conf"
    assert tomllib.loads(f.read_text()) == {"engine": {"runtimes": {"krun": [KRUN]}}}
    uninstall(tmp_path, "podman")
    assert not f.exists()


def test_podman_refuses_a_runtimes_table_defined_by_dotted_keys(tmp_path: Path) -> None:
    conf = '[engine]\nruntimes.crun = ["/usr/bin/crun"]\n'
    f = write(tmp_path / "etc/containers/containers.conf", conf)
    proc = install(tmp_path, "podman", check=False)
    assert proc.returncode == 1 and "by hand" in proc.stderr
    assert f.read_text() == conf


def test_podman_keeps_lookalike_lines_inside_strings(tmp_path: Path) -> None:
    # A multi-line string holding what looks like a table header and a `krun =` line must
    # not be mistaken for either.
    conf = ('[engine]\nhelpers = """\n[engine.runtimes]\nkrun = ["/fake"]\n"""\n\n'
            '[engine.runtimes]\ncrun = ["/usr/bin/crun"]\n')
    f = write(tmp_path / "etc/containers/containers.conf", conf)
    install(tmp_path, "podman")
    doc = tomllib.loads(f.read_text())
    assert doc["engine"]["runtimes"]["krun"] == [KRUN]
    assert doc["engine"]["helpers"] == '[engine.runtimes]\nkrun = ["/fake"]\n'
    uninstall(tmp_path, "podman")
    assert f.read_text() == conf


# containerd ------------------------------------------------------------------------------

def test_containerd_adds_a_cri_handler_and_keeps_the_rest(tmp_path: Path) -> None:
    f = write(tmp_path / "etc/containerd/config.toml", CONTAINERD_CONF)
    install(tmp_path, "containerd")
    text = f.read_text()
    assert text.startswith(CONTAINERD_CONF)
    doc = tomllib.loads(text)
    krun = doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["krun"]
    assert krun["runtime_type"] == "io.containerd.runc.v2"
    assert krun["options"] == {"BinaryName": KRUN}
    assert krun["container_annotations"] == ["app.kontain.*"]
    runc = doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]
    assert runc == {"runtime_type": "io.containerd.runc.v2", "options": {"SystemdCgroup": False}}
    install(tmp_path, "containerd")
    assert f.read_text() == text, "idempotent"
    uninstall(tmp_path, "containerd")
    assert f.read_text() == CONTAINERD_CONF


def test_containerd_new_file_uses_schema_2(tmp_path: Path) -> None:
    install(tmp_path, "containerd")
    f = tmp_path / "etc/containerd/config.toml"
    doc = tomllib.loads(f.read_text())
    assert doc["version"] == 2
    assert doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["krun"][
        "options"]["BinaryName"] == KRUN
    uninstall(tmp_path, "containerd")
    assert not f.exists()


def test_containerd_version_1_file_uses_short_plugin_ids(tmp_path: Path) -> None:
    conf = '[plugins.cri]\n  sandbox_image = "pause:3.9"\n'
    f = write(tmp_path / "etc/containerd/config.toml", conf)
    install(tmp_path, "containerd")
    doc = tomllib.loads(f.read_text())
    assert doc["plugins"]["cri"]["containerd"]["runtimes"]["krun"]["options"]["BinaryName"] \
        == KRUN
    uninstall(tmp_path, "containerd")
    assert f.read_text() == conf


def test_containerd_updates_an_existing_binary_name(tmp_path: Path) -> None:
    conf = CONTAINERD_CONF + (
        '\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.krun]\n'
        'runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.krun.options]\n'
        'BinaryName = "/opt/krun"  # old\nRoot = "/run/krun-cri"\n')
    f = write(tmp_path / "etc/containerd/config.toml", conf)
    install(tmp_path, "containerd")
    doc = tomllib.loads(f.read_text())
    opts = doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["krun"][
        "options"]
    assert opts == {"BinaryName": KRUN, "Root": "/run/krun-cri"}


# CRI-O and Kubernetes --------------------------------------------------------------------

def test_crio_drop_in(tmp_path: Path) -> None:
    main = write(tmp_path / "etc/crio/crio.conf", '[crio.runtime]\ndefault_runtime = "crun"\n')
    before = main.read_bytes()
    run("--root", "/run/krun-cri", "install", "--engine", "crio", "--config-root",
        str(tmp_path), "--path", KRUN)
    f = tmp_path / "etc/crio/crio.conf.d/50-krun.conf"
    assert tomllib.loads(f.read_text()) == {"crio": {"runtime": {"runtimes": {"krun": {
        "runtime_path": KRUN, "runtime_type": "oci", "runtime_root": "/run/krun-cri"}}}}}
    assert main.read_bytes() == before, "crio.conf itself is never edited"
    uninstall(tmp_path, "crio")
    assert not f.exists()


def test_kubernetes_runtime_class(tmp_path: Path) -> None:
    printed = install(tmp_path, "kubernetes").stdout
    assert "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\n" in printed
    assert "\nhandler: krun\n" in printed and "\n  name: krun\n" in printed
    out = tmp_path / "runtimeclass.yaml"
    install(tmp_path, "kubernetes", "--output", str(out))
    assert out.read_text() == printed
    uninstall(tmp_path, "kubernetes", "--output", str(out))
    assert not out.exists()


# the command as a whole --------------------------------------------------------------------

def test_dry_run_prints_diffs_and_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "etc/containers/containers.conf", PODMAN_CONF)
    write(tmp_path / "etc/containerd/config.toml", CONTAINERD_CONF)
    (tmp_path / "etc/docker").mkdir()
    (tmp_path / "etc/crio").mkdir()
    before = snapshot(tmp_path)
    out = run("install", "--dry-run", "--config-root", str(tmp_path), "--path", KRUN).stdout
    assert snapshot(tmp_path) == before
    for name in ("docker/daemon.json", "containers/containers.conf", "containerd/config.toml",
                 "crio/crio.conf.d/50-krun.conf"):
        assert f"+++ {tmp_path}/etc/{name}\n" in out
    assert f'+krun = ["{KRUN}"]\n' in out
    assert "--- /dev/null\n" in out, "a new file diffs against /dev/null"

    # Applying exactly those diffs gives what a real install writes.
    run("install", "--config-root", str(tmp_path), "--path", KRUN)
    after = snapshot(tmp_path)
    restored = tmp_path.parent / "restored"
    restored.mkdir()
    for rel, data in before.items():
        write(restored / rel, data.decode())
    subprocess.run(["patch", "-s", "-p0", "-d", "/"], input=out.replace(
        str(tmp_path), str(restored)), text=True, check=True)
    assert snapshot(restored) == after

    undo = run("uninstall", "--dry-run", "--config-root", str(tmp_path)).stdout
    assert f'-krun = ["{KRUN}"]\n' in undo and "+++ /dev/null\n" in undo
    assert snapshot(tmp_path) == after


def test_all_configures_only_engines_that_are_present(tmp_path: Path) -> None:
    (tmp_path / "etc/containers").mkdir(parents=True)
    run("install", "--config-root", str(tmp_path), "--path", KRUN)
    assert (tmp_path / "etc/containers/containers.conf").exists()
    assert not (tmp_path / "etc/docker").exists()
    assert not (tmp_path / "etc/crio").exists()


def test_no_engine_at_all_is_an_error(tmp_path: Path) -> None:
    proc = run("install", "--config-root", str(tmp_path), check=False)
    assert proc.returncode == 1 and "no container engine found" in proc.stderr


def test_relative_path_is_refused(tmp_path: Path) -> None:
    proc = run("install", "--engine", "docker", "--config-root", str(tmp_path),
               "--path", "bin/krun", check=False)
    assert proc.returncode == 2 and "absolute" in proc.stderr
    assert not (tmp_path / "etc").exists()


def test_default_path_is_the_running_krun(tmp_path: Path) -> None:
    run("install", "--engine", "docker", "--config-root", str(tmp_path))
    doc = json.loads((tmp_path / "etc/docker/daemon.json").read_text())
    assert doc["runtimes"]["krun"]["path"] == krun_binary()


def test_unknown_engine_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("install", "--engine", "lxc", "--config-root", str(tmp_path), check=False)
    assert proc.returncode == 2


@pytest.mark.parametrize("engine", ["docker", "podman", "containerd", "crio"])
def test_uninstall_without_install_changes_nothing(tmp_path: Path, engine: str) -> None:
    write(tmp_path / "etc/containers/containers.conf", PODMAN_CONF)
    write(tmp_path / "etc/containerd/config.toml", CONTAINERD_CONF)
    write(tmp_path / "etc/docker/daemon.json", '{"debug": true}\n')
    before = snapshot(tmp_path)
    uninstall(tmp_path, engine)
    assert snapshot(tmp_path) == before
