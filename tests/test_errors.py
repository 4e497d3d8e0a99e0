"""Bad input gets a clear one-line error, a non-zero exit, and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BundleFactory, Krun

from krun.errors import KrunError
from krun.runtime.ids import validate_id


def _leftovers(krun: Krun, cid: str) -> list[str]:
    found = []
    if (krun.root / cid).exists():
        found.append(f"state dir {krun.root / cid}")
    if (krun.root / ".krun" / f"{cid}.json").exists():
        found.append("krun record")
    for ctrl in ("memory", "pids", "cpu", "freezer", "devices"):
        if Path(f"/sys/fs/cgroup/{ctrl}/{cid}").exists():
            found.append(f"cgroup {ctrl}/{cid}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if cid in line]
    return found


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "/", ".krun", ".hidden", "x" * 251,
                                 "é" * 126, "tab\there"])
def test_invalid_ids_are_refused_before_touching_disk(krun: Krun, bundle: BundleFactory,
                                                      bad: str) -> None:
    b = bundle(["true"])
    for args in (["create", "--bundle", str(b), bad], ["run", "--bundle", str(b), bad],
                 ["state", bad], ["delete", "--force", bad], ["kill", bad, "KILL"],
                 ["start", bad], ["exec", bad, "true"]):
        proc = krun(*args, check=False)
        # runc's exec exits 255 for any failure before the process runs.
        assert proc.returncode == (255 if args[0] == "exec" else 1), (args, proc.stderr)
        assert "invalid container id" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not krun.root.exists(), "an invalid id created state"


def test_nul_in_id_is_refused() -> None:
    with pytest.raises(KrunError, match="invalid container id"):
        validate_id("a\0b")
    assert validate_id("x" * 250) == "x" * 250
    assert validate_id("a.b-c_d+e") == "a.b-c_d+e"


def test_duplicate_id_is_refused_and_the_first_survives(krun: Krun, bundle: BundleFactory,
                                                        cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle", str(b), cid)
    pid = krun.state(cid)["pid"]
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert krun.state(cid)["pid"] == pid and krun.status(cid) == "created"
    krun("delete", "--force", cid)


def test_missing_bundle_config_and_rootfs(krun: Krun, bundle: BundleFactory, cid: str,
                                          tmp_path: Path) -> None:
    proc = krun("create", "--bundle", str(tmp_path / "nope"), cid, check=False)
    assert proc.returncode == 1 and "no such file or directory" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = krun("create", "--bundle", str(empty), cid, check=False)
    assert proc.returncode == 1 and "config.json: no such file or directory" in proc.stderr
    b = bundle(["true"], mutate=lambda c: c["root"].update(path="missing-rootfs"))
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "rootfs" in proc.stderr
    assert "no such file or directory" in proc.stderr
    assert _leftovers(krun, cid) == []


def test_malformed_and_invalid_config(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["true"])
    (b / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "malformed config.json" in proc.stderr
    assert "line 1" in proc.stderr
    b2 = bundle(["true"], mutate=lambda c: c["process"].update(args="not-a-list"))
    proc = krun("create", "--bundle", str(b2), cid, check=False)
    assert proc.returncode == 1 and "$.process.args" in proc.stderr
    b3 = bundle(["true"], mutate=lambda c: c["process"].update(cwd="relative"))
    proc = krun("create", "--bundle", str(b3), cid, check=False)
    assert "$.process.cwd" in proc.stderr and "absolute" in proc.stderr
    assert _leftovers(krun, cid) == []


def test_unknown_capability_is_a_create_error(krun: Krun, bundle: BundleFactory,
                                              cid: str) -> None:
    b = bundle(["true"], mutate=lambda c: c["process"]["capabilities"]["bounding"].append(
        "CAP_TEST"))
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "unknown capability 'CAP_TEST'" in proc.stderr
    assert _leftovers(krun, cid) == []


def test_missing_executable_is_worded_like_runc(krun: Krun, bundle: BundleFactory,
                                                cid: str) -> None:
    b = bundle(["no-such-binary"])
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1
    # docker maps exactly these words to exit code 127
    assert 'exec: "no-such-binary": executable file not found in $PATH' in proc.stderr
    assert _leftovers(krun, cid) == []


def test_non_executable_file_is_permission_denied(krun: Krun, bundle: BundleFactory,
                                                  cid: str) -> None:
    b = bundle(["/etc/passwd"])
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.returncode != 0 and "permission denied" in proc.stderr
    assert _leftovers(krun, cid) == []


def test_failed_create_leaves_no_state_cgroup_or_mount(krun: Krun, bundle: BundleFactory,
                                                       cid: str) -> None:
    def bad_mount(c: dict) -> None:
        c["mounts"].append({"destination": "/data", "type": "bind",
                            "source": "/nonexistent/source", "options": ["bind"]})

    b = bundle(["true"], mutate=bad_mount)
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and proc.stderr.strip()
    assert _leftovers(krun, cid) == []
    # The id is free again.
    good = bundle(["true"])
    krun("create", "--bundle", str(good), cid)
    krun("delete", "--force", cid)


def test_unknown_and_numeric_signals(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    for bad in ("SIGFOO", "FOO", "65", "99999", "SIGRTMIN+99"):
        proc = krun("kill", cid, bad, check=False)
        assert proc.returncode != 0 and "signal" in proc.stderr, bad
        assert krun.status(cid) == "running"
    krun("kill", cid, "SIGCONT")
    krun("kill", cid, "cont")
    krun("kill", cid, "18")
    krun("kill", cid, "SIGRTMIN+1")
    # 0, as runc and crun take it: sends nothing, succeeds while the container runs.
    krun("kill", cid, "0")
    krun("kill", "--all", cid, "0")
    assert krun.status(cid) == "running"
    krun("kill", cid, "SIGKILL")
    krun.wait_status(cid, "stopped")
    proc = krun("kill", cid, "KILL", check=False)
    assert proc.returncode == 1 and "not running" in proc.stderr
    krun("delete", cid)


def test_start_twice_and_start_stopped(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle", str(b), cid)
    krun("start", cid)
    proc = krun("start", cid, check=False)
    assert proc.returncode == 1 and "running" in proc.stderr
    krun("kill", cid, "KILL")
    krun.wait_status(cid, "stopped")
    proc = krun("start", cid, check=False)
    assert proc.returncode == 1 and "stopped" in proc.stderr
    krun("delete", cid)


def test_delete_rules(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle", str(b), cid)
    proc = krun("delete", cid, check=False)
    assert proc.returncode == 1 and "not stopped" in proc.stderr
    assert krun.status(cid) == "created", "a refused delete must not touch the container"
    krun("start", cid)
    assert krun("delete", cid, check=False).returncode == 1
    assert krun.status(cid) == "running"
    krun("delete", "--force", cid)
    assert _leftovers(krun, cid) == []
    proc = krun("delete", cid, check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert krun("delete", "--force", "never-existed").returncode == 0
    proc = krun("state", "never-existed", check=False)
    assert proc.returncode == 1 and 'container "never-existed" does not exist' in proc.stderr


def test_exec_into_stopped_or_unknown(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["true"])
    krun("create", "--bundle", str(b), cid)
    krun("start", cid)
    krun.wait_status(cid, "stopped")
    # runc's exec: 255 when the process never ran.
    proc = krun("exec", cid, "true", check=False)
    assert proc.returncode == 255 and "stopped" in proc.stderr
    krun("delete", cid)
    proc = krun("exec", "nope", "true", check=False)
    assert proc.returncode == 255 and "does not exist" in proc.stderr


def test_json_log_goes_to_the_log_file(krun: Krun, tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    for spelling in (["--log", str(log), "--log-format", "json"],
                     [f"--log={log}", "--log-format=json"]):
        proc = krun(*spelling, "state", "missing", check=False)
        assert proc.returncode == 1
        assert proc.stderr == "", "with --log, errors go to the log only"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2
    for entry in lines:
        assert set(entry) == {"level", "msg", "time"}
        assert entry["level"] == "error"
        assert entry["msg"] == 'container "missing" does not exist'
        assert entry["time"].endswith("Z")


def test_text_log_and_stderr(krun: Krun, tmp_path: Path) -> None:
    proc = krun("state", "missing", check=False)
    assert proc.stderr == 'krun: container "missing" does not exist\n'
    log = tmp_path / "log.txt"
    krun("--log", str(log), "state", "missing", check=False)
    assert 'level=error msg="container \\"missing\\" does not exist"' in log.read_text()


def test_root_flag_spellings(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle=" + str(b), cid)
    other = [krun.binary, f"--root={krun.root}", "state", cid]
    import subprocess

    out = subprocess.run(other, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["status"] == "created"
    krun("delete", "--force", cid)


def test_default_root_is_run_krun() -> None:
    from krun.cli import parse

    g, _, _ = parse(["state", "x"])
    assert g.root == "/run/krun"


def test_unwritable_pid_file_fails_create_cleanly(krun: Krun, bundle: BundleFactory,
                                                  cid: str, tmp_path: Path) -> None:
    b = bundle(["true"])
    proc = krun("create", "--bundle", str(b), "--pid-file",
                str(tmp_path / "no" / "such" / "dir" / "pid"), cid, check=False)
    assert proc.returncode == 1
    assert _leftovers(krun, cid) == []


def test_environment_is_not_leaked_into_ids(krun: Krun) -> None:
    # `state` of a missing container does not create the root.
    proc = krun("state", "abc", check=False)
    assert proc.returncode == 1 and not krun.root.exists()
    assert os.path.isdir("/run") and proc.stdout == ""


def test_every_runtime_spec_1x_version_runs(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    """CRI-O writes ociVersion 1.2.x; libcrun 1.8.1 alone accepts only 1.0.x."""
    for version in ("1.0.0", "1.1.0", "1.2.1"):
        b = bundle(["echo", version], mutate=lambda c, v=version: c.update(ociVersion=v))
        assert krun("run", "--bundle", str(b), cid).stdout == version + "\n"
    b = bundle(["true"], mutate=lambda c: c.update(ociVersion="2.0.0"))
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "$.ociVersion" in proc.stderr


def test_no_mount_namespace_leaves_no_host_mounts(krun: Krun, bundle: BundleFactory,
                                                  cid: str) -> None:
    """Without a mount namespace libcrun mounts /proc, /dev, /sys... under the rootfs in
    the host's namespace; a failed create, the end of a foreground run and delete all
    take exactly those back (and leave what was mounted there before)."""
    def no_mount_ns(c: dict) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                    if n["type"] in ("pid", "ipc", "uts", "network")]

    def mounts(b: Path) -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return [line.split()[4] for line in f if str(b) in line.split()[4]]

    b = bundle(["/nonexistent"], mutate=no_mount_ns)
    keep = b / "rootfs" / "keep"
    keep.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "keep", str(keep)], check=True)
    try:
        assert krun("run", "--bundle", str(b), cid, check=False).returncode == 1
        assert mounts(b) == [str(keep)]
        config = json.loads((b / "config.json").read_text())
        config["process"]["args"] = ["sleep", "100"]
        (b / "config.json").write_text(json.dumps(config))
        krun("run", "-d", "--bundle", str(b), cid)
        assert len(mounts(b)) > 5, "libcrun mounted in the host's namespace"
        krun("delete", "--force", cid)
        assert mounts(b) == [str(keep)]
    finally:
        subprocess.run(["umount", str(keep)], check=True)
    assert _leftovers(krun, cid) == []
