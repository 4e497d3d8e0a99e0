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


# TOML files as people write them (tomlkit reads them; krun splices its lines in) --------

def conf_path(root: Path, engine: str) -> Path:
    return root / {"podman": "etc/containers/containers.conf",
                   "containerd": "etc/containerd/config.toml"}[engine]


# Files that install must change, and uninstall must give back byte for byte.
ROUND_TRIPS = {
    "podman": {
        "comments inside and after the table": (
            '[engine.runtimes]\n# the default\ncrun = ["/usr/bin/crun"]  # Debian\'s\n'
            '# gVisor\nrunsc = ["/usr/bin/runsc"]\n# trailing comment\n\n'
            '# about the network\n[network]\nnetwork_backend = "netavark"\n'),
        "no table yet": PODMAN_CONF.replace("[engine.runtimes]", "[engine.other]"),
        "table out of order": ('[engine]\nruntime = "crun"\n\n[network]\nx = 1\n\n'
                               '[engine.runtimes]\ncrun = ["/usr/bin/crun"]\n'),
        "only a sub-table implies it": '[engine.runtimes.x]\ny = 1\n',
        "header but no keys": '[engine.runtimes]\n[engine.runtimes.sub]\nx = 1\n',
        "indented": '[engine]\n  [engine.runtimes]\n    crun = ["/usr/bin/crun"]\n',
        "CRLF": PODMAN_CONF.replace("\n", "\r\n"),
        "CRLF, no table yet": PODMAN_CONF.replace("[engine.runtimes]", "[x]").replace(
            "\n", "\r\n"),
        "no final newline": '[engine.runtimes]\ncrun = ["/usr/bin/crun"]',
        "no final newline, no table": '[engine]\nruntime = "crun"',
        "unicode": ('# Réglages — ünïcode ✓\n[engine.runtimes]\n'
                    '"crün" = ["/usr/bin/crün"]  # 日本\nkey = "ключ"\n'),
        "empty file": "",
        "whitespace only": "\n  \n",
        "comments only": "# nothing set here\n",
    },
    "containerd": {
        "schema 2, indented": CONTAINERD_CONF,
        "a handler after the krun one would go": CONTAINERD_CONF + (
            '\n# gVisor\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]\n'
            '  runtime_type = "io.containerd.runsc.v1"\n'),
        "schema 1": '[plugins.cri]\n  sandbox_image = "pause:3.9"\n',
        "schema 3": 'version = 3\n[plugins."io.containerd.cri.v1.runtime"]\n  x = 1\n',
        "CRLF": CONTAINERD_CONF.replace("\n", "\r\n"),
        "no final newline": 'version = 2\nroot = "/var/lib/containerd"',
        "unicode": '# ünï ✓\nversion = 2\nroot = "/var/lib/cöntainerd"\n',
        "empty file": "",
        "comments only": "# containerd's defaults\n",
    },
}


@pytest.mark.parametrize(("engine", "name"), [(e, n) for e in ROUND_TRIPS for n in ROUND_TRIPS[e]])
def test_uninstall_gives_back_the_file_install_found(tmp_path: Path, engine: str,
                                                     name: str) -> None:
    original = ROUND_TRIPS[engine][name]
    f = conf_path(tmp_path, engine)
    f.parent.mkdir(parents=True)
    f.write_bytes(original.encode())
    install(tmp_path, engine)
    text = f.read_bytes().decode()
    assert text != original
    assert tomllib.loads(text)  # and the values, by the tests above and below
    if "\r\n" in original:
        assert text.count("\n") == text.count("\r\n"), "the file's line endings"
    else:
        assert "\r" not in text
    if original.strip():
        # Everything that was there is still there, in order, byte for byte: krun only
        # inserted lines (or replaced none).
        it = iter(text)
        assert all(c in it for c in original)
    install(tmp_path, engine)
    assert f.read_bytes().decode() == text, "idempotent"
    uninstall(tmp_path, engine)
    assert f.read_bytes() == original.encode(), "an empty file stays, as an empty file"


def test_podman_new_key_goes_after_the_last_key_not_after_comments(tmp_path: Path) -> None:
    conf = ROUND_TRIPS["podman"]["comments inside and after the table"]
    f = write(conf_path(tmp_path, "podman"), conf)
    install(tmp_path, "podman")
    assert f.read_text() == conf.replace('runsc = ["/usr/bin/runsc"]\n',
                                         f'runsc = ["/usr/bin/runsc"]\nkrun = ["{KRUN}"]\n')


def test_podman_new_key_takes_the_indentation_of_the_keys(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "podman"), ROUND_TRIPS["podman"]["indented"])
    install(tmp_path, "podman")
    assert f.read_text().endswith(f'    crun = ["/usr/bin/crun"]\n    krun = ["{KRUN}"]\n')


def test_podman_crlf_file_gets_crlf_lines(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "podman"), "")
    f.write_bytes(PODMAN_CONF.replace("\n", "\r\n").encode())
    install(tmp_path, "podman")
    assert f.read_bytes() == PODMAN_CONF.replace(
        'runsc = ["/usr/bin/runsc"]\n', f'runsc = ["/usr/bin/runsc"]\nkrun = ["{KRUN}"]\n'
    ).replace("\n", "\r\n").encode()


def test_podman_empty_file_stays_and_missing_file_goes(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "podman"), "")
    install(tmp_path, "podman")
    assert tomllib.loads(f.read_text()) == {"engine": {"runtimes": {"krun": [KRUN]}}}
    uninstall(tmp_path, "podman")
    assert f.exists() and f.read_bytes() == b""
    uninstall(tmp_path, "podman")
    assert f.exists() and f.read_bytes() == b"", "uninstall without install: nothing"
    f.unlink()
    install(tmp_path, "podman")
    uninstall(tmp_path, "podman")
    assert not f.exists()


def test_podman_keeps_a_table_someone_added_to(tmp_path: Path) -> None:
    f = conf_path(tmp_path, "podman")
    install(tmp_path, "podman")
    created = f.read_text()
    f.write_text(created + 'crun = ["/usr/bin/crun"]\n\n# about the network\n[network]\n')
    uninstall(tmp_path, "podman")
    text = f.read_text()
    assert tomllib.loads(text) == {"engine": {"runtimes": {"crun": ["/usr/bin/crun"]}},
                                   "network": {}}
    assert text.endswith('crun = ["/usr/bin/crun"]\n\n# about the network\n[network]\n')


def test_podman_unicode_path(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "podman"), PODMAN_CONF)
    path = '/opt/krün "x"/krun'
    run("install", "--engine", "podman", "--config-root", str(tmp_path), "--path", path)
    assert tomllib.loads(f.read_text())["engine"]["runtimes"]["krun"] == [path]
    uninstall(tmp_path, "podman")
    assert f.read_text() == PODMAN_CONF


@pytest.mark.parametrize(("conf", "why"), [
    ('[engine]\nruntimes = { crun = ["/usr/bin/crun"] }\n', "inline"),
    ('engine.runtimes.crun = ["/usr/bin/crun"]\n', "dotted keys"),
    ('[[engine.runtimes]]\ncrun = ["/usr/bin/crun"]\n', "array of tables"),
    ('[engine.runtimes.krun]\npath = "/x"\n', "is a table"),
])
def test_podman_refuses_what_it_cannot_edit_by_a_line(tmp_path: Path, conf: str,
                                                      why: str) -> None:
    f = write(conf_path(tmp_path, "podman"), conf)
    proc = install(tmp_path, "podman", check=False)
    assert proc.returncode == 1 and why in proc.stderr and "by hand" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "nothing was changed" in proc.stderr
    assert f.read_text() == conf


@pytest.mark.parametrize("engine", ["podman", "containerd"])
@pytest.mark.parametrize(("conf", "line"), [
    ('[engine]\nruntime = "crun"\n[engine.runtimes\n', "line 3"),
    ('version = 2\nroot = \n', "line 2"),
    ('[a]\nx = 1\n[a]\n', "line 3"),
    ('x = "unterminated\n', "line 1"),
])
def test_malformed_file_is_one_line_naming_file_and_line(tmp_path: Path, engine: str,
                                                         conf: str, line: str) -> None:
    f = write(conf_path(tmp_path, engine), conf)
    mtime = f.stat().st_mtime_ns
    for command in (install, uninstall):
        proc = command(tmp_path, engine, check=False)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert f"{f}: not valid TOML at {line}, column " in proc.stderr
        assert f.read_text() == conf and f.stat().st_mtime_ns == mtime


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "podman"), "")
    f.write_bytes(b'[engine]\nruntime = "cr\xffun"\n')
    proc = install(tmp_path, "podman", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"{f}: not UTF-8" in proc.stderr
    assert f.read_bytes() == b'[engine]\nruntime = "cr\xffun"\n'


def test_containerd_existing_handler_keeps_its_other_settings(tmp_path: Path) -> None:
    head = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.krun]\n'
    rest = ('# about runsc\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]\n'
            '  runtime_type = "io.containerd.runsc.v1"\n')
    conf = (head + '  runtime_type = "io.containerd.runc.v2"  # the shim\n'
            '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.krun.options]\n'
            '    BinaryName = "/opt/krun"  # old\n    Root = "/run/krun-cri"\n\n' + rest)
    f = write(conf_path(tmp_path, "containerd"), conf)
    install(tmp_path, "containerd")
    # Keys added after the table's last key, with its indentation; the value replaced in
    # place, with its comment; everything else byte for byte.
    assert f.read_text() == (
        head + '  runtime_type = "io.containerd.runc.v2"  # the shim\n'
        '  pod_annotations = ["app.kontain.*"]\n  container_annotations = ["app.kontain.*"]\n'
        '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.krun.options]\n'
        f'    BinaryName = "{KRUN}"  # old\n    Root = "/run/krun-cri"\n\n' + rest)
    # Uninstall removes the handler krun (all of it: krun cannot know what was there
    # before), and not the comment that belongs to the next table.
    uninstall(tmp_path, "containerd")
    assert f.read_text() == "version = 2\n\n" + rest


def test_containerd_refuses_runtimes_defined_inline(tmp_path: Path) -> None:
    conf = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n'
            'runtimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n')
    f = write(conf_path(tmp_path, "containerd"), conf)
    proc = install(tmp_path, "containerd", check=False)
    assert proc.returncode == 1 and "by hand" in proc.stderr and proc.stderr.count("\n") == 1
    assert f.read_text() == conf


def test_containerd_file_without_settings_gets_the_schema_version(tmp_path: Path) -> None:
    f = write(conf_path(tmp_path, "containerd"), "# containerd's defaults\n")
    install(tmp_path, "containerd")
    assert tomllib.loads(f.read_text())["version"] == 2


def test_tomlkit_is_loaded_only_by_install(tmp_path: Path) -> None:
    import sys

    def modules(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-IS", krun_binary(),
                               *args], capture_output=True, text=True, timeout=30)
        return proc.stderr

    state = modules("--root", str(tmp_path / "run"), "state", "nosuch")
    assert "krun.cli" in state, "-X importtime reached krun"
    assert "tomlkit" not in state and "krun.engines" not in state
    assert "tomlkit" in modules("install", "--engine", "podman", "--dry-run", "--config-root",
                                str(tmp_path))
