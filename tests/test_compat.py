"""runc's and crun's command-line surface on real containers: every flag krun takes for
their sake does what theirs does (issue 13), and the output has their shape."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CGROUP_BASE, BundleFactory, Krun, krun_binary


def _cgroup_dirs(cid: str) -> list[Path]:
    return [d for d in CGROUP_BASE.glob(f"*/{cid}") if d.is_dir()]


def _init_pid(krun: Krun, cid: str) -> int:
    return int(krun.state(cid)["pid"])


def _memory_cgroup(pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_BASE / "memory" / path.lstrip("/")
    raise AssertionError(f"no memory cgroup for {pid}")


def test_version_has_crun_shape_and_feature_line(krun: Krun) -> None:
    out = krun("--version").stdout.splitlines()
    assert re.fullmatch(r"krun version \d+\.\d+\.\d+", out[0])
    assert re.fullmatch(r"commit: ([0-9a-f]{40}|unknown)", out[1])
    assert out[2] == f"rundir: {krun.root}"
    assert re.fullmatch(r"spec: 1\.\d+\.\d+", out[3])
    features = out[4].split()
    assert all(f.startswith("+") for f in features)
    # What this libcrun build was configured with (native/libcrun/build).
    for f in ("+SYSTEMD", "+SECCOMP", "+CAP", "+YAJL", "+KONTAIN"):
        assert f in features
    assert "+CRIU" not in features
    assert krun("-v").stdout == krun("--version").stdout
    assert "COMMAND" in krun("--usage").stdout


@pytest.mark.parametrize("name", ["create", "run", "start", "state", "kill", "delete", "exec",
                                  "list", "ps", "events", "pause", "resume", "update", "spec",
                                  "features"])
def test_help_for_every_command(krun: Krun, name: str) -> None:
    proc = krun(name, "-h")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_cgroup_manager_disabled_creates_no_cgroup(krun: Krun, bundle: BundleFactory,
                                                   cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("--cgroup-manager", "disabled", "run", "-d", "--bundle", str(b), cid)
    try:
        pid = _init_pid(krun, cid)
        own = Path("/proc/self/cgroup").read_text()
        assert Path(f"/proc/{pid}/cgroup").read_text() == own
        assert _cgroup_dirs(cid) == []
    finally:
        krun("--cgroup-manager=disabled", "delete", "--force", cid)
    assert krun("list", "-q").stdout == ""


def test_cgroup_manager_cgroupfs_is_the_default(krun: Krun, bundle: BundleFactory,
                                                cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("--cgroup-manager", "cgroupfs", "run", "-d", "--bundle", str(b), cid)
    assert _cgroup_dirs(cid)
    krun("delete", "--force", cid)
    assert _cgroup_dirs(cid) == []
    proc = krun("--cgroup-manager", "nope", "state", cid, check=False)
    assert proc.returncode == 2 and "--cgroup-manager" in proc.stderr


def test_rootless_and_criu_flags_are_accepted(krun: Krun, bundle: BundleFactory,
                                              cid: str) -> None:
    b = bundle(["true"])
    for flags in (["--rootless", "false"], ["--rootless=auto"], ["--criu", "/usr/sbin/criu"]):
        assert krun(*flags, "run", "--bundle", str(b), cid).returncode == 0
    proc = krun("--rootless", "maybe", "list", check=False)
    assert proc.returncode == 2


def test_run_keep_leaves_a_stopped_container(krun: Krun, bundle: BundleFactory,
                                             cid: str) -> None:
    b = bundle(["sh", "-c", "exit 3"])
    proc = krun("run", "--keep", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 3
    state = krun.state(cid)
    assert state["status"] == "stopped"
    krun("delete", cid)
    assert krun("list", "-q").stdout == "" and _cgroup_dirs(cid) == []
    # Without --keep nothing stays.
    krun("run", "--bundle", str(b), cid, check=False)
    assert krun("list", "-q").stdout == ""


def test_config_flag_names_another_config(krun: Krun, bundle: BundleFactory,
                                          cid: str, tmp_path: Path) -> None:
    b = bundle(["echo", "from-config-json"])
    other = json.loads((b / "config.json").read_text())
    other["process"]["args"] = ["echo", "from-other"]
    (b / "other.json").write_text(json.dumps(other))
    # Relative to the bundle, as in crun.
    assert krun("run", "--config", "other.json", "--bundle", str(b), cid).stdout == \
        "from-other\n"
    assert krun("run", "-f", str(b / "other.json"), "--bundle", str(b), cid).stdout == \
        "from-other\n"
    assert krun("run", "--bundle", str(b), cid).stdout == "from-config-json\n"
    proc = krun("create", "--config", "missing.json", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "no such file or directory" in proc.stderr
    assert krun("list", "-q").stdout == ""


def test_delete_and_kill_regex_touch_exactly_the_matches(krun: Krun, bundle: BundleFactory,
                                                         cid: str) -> None:
    b = bundle(["sleep", "1000"])
    ids = [f"{cid}-web1", f"{cid}-web2", f"{cid}-db1", f"{cid}-webby"]
    for i in ids:
        krun("run", "-d", "--bundle", str(b), i)
    try:
        krun("kill", "--regex", f"^{cid}-web[0-9]$", "KILL")
        for i in ids[:2]:
            krun.wait_status(i, "stopped")
        assert krun.status(ids[2]) == "running" and krun.status(ids[3]) == "running"
        krun("delete", "-r", f"^{cid}-web[0-9]$")
        assert sorted(krun("list", "-q").stdout.split()) == sorted(ids[2:])
        krun("delete", "--force", "--regex", "webby")
        assert krun("list", "-q").stdout.split() == [ids[2]]
        # A pattern that matches nothing is no error; a malformed one is.
        krun("delete", "--regex", "^nothing-matches$")
        proc = krun("delete", "--regex", "(", check=False)
        assert proc.returncode == 1 and "invalid regular expression" in proc.stderr
        # Plain delete of a running match fails, and says which; the others go ahead.
        proc = krun("delete", "--regex", "db1", check=False)
        assert proc.returncode == 1 and ids[2] in proc.stderr
    finally:
        krun("delete", "--force", "--regex", f"^{re.escape(cid)}-", check=False)
    assert krun("list", "-q").stdout == ""


def test_update_takes_runc_flags_and_sizes(krun: Krun, bundle: BundleFactory,
                                           cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        krun("update", "--memory", "50M", "--memory-reservation", "20m", "--cpu-share", "512",
             "--pids-limit", "50", cid)
        pid = _init_pid(krun, cid)
        mem = _memory_cgroup(pid)
        assert (mem / "memory.limit_in_bytes").read_text().strip() == str(50 << 20)
        assert (mem / "memory.soft_limit_in_bytes").read_text().strip() == str(20 << 20)
        cpu = CGROUP_BASE / "cpu" / mem.relative_to(CGROUP_BASE / "memory")
        if (cpu / "cpu.shares").exists():
            assert (cpu / "cpu.shares").read_text().strip() == "512"
        krun("update", "--memory", "1.5g", cid)
        assert (mem / "memory.limit_in_bytes").read_text().strip() == str(3 << 29)
        krun("update", "--cpu-shares", "256", cid)  # krun's older spelling still works
        proc = krun("update", "--memory", "50Q", cid, check=False)
        assert proc.returncode == 2 and "--memory '50Q'" in proc.stderr
    finally:
        krun("delete", "--force", cid)


def test_exec_into_a_sub_cgroup(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        pid = _init_pid(krun, cid)
        made = []
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            name = controllers.split(",")[0].removeprefix("name=") or "unified"
            parent = CGROUP_BASE / name / path.lstrip("/")
            if not parent.is_dir():
                continue
            sub = parent / "sub"
            sub.mkdir()
            made.append(sub)
            for f in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset starts empty
                if (parent / f).exists():
                    (sub / f).write_text((parent / f).read_text())
        out = krun("exec", "--cgroup", "sub", cid, "cat", "/proc/self/cgroup").stdout
        assert any(line.endswith(f"/{cid}/sub") for line in out.splitlines()), out
        # The path stays below the container's cgroup.
        for bad in ("../..", "/", "a/../../b", "memory:sub"):
            proc = krun("exec", "--cgroup", bad, cid, "true", check=False)
            assert proc.returncode == 2 and "--cgroup" in proc.stderr, bad
    finally:
        krun("delete", "--force", cid)
    assert all(not s.exists() for s in made)


def test_exec_ignore_paused(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        krun("pause", cid)
        proc = krun("exec", cid, "true", check=False)
        assert proc.returncode == 255 and "--ignore-paused" in proc.stderr
        # The process joins the frozen cgroup: it runs once the container is resumed.
        result: list[subprocess.CompletedProcess[str]] = []
        t = threading.Thread(target=lambda: result.append(krun(
            "exec", "--ignore-paused", cid, "sh", "-c", "echo ran", timeout=30)))
        t.start()
        time.sleep(1)
        assert not result, "exec ran inside a frozen container"
        krun("resume", cid)
        t.join(30)
        assert result and result[0].stdout == "ran\n"
    finally:
        krun("delete", "--force", cid)


def test_delete_force_of_a_paused_container(krun: Krun, bundle: BundleFactory,
                                            cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    krun("pause", cid)
    assert krun.status(cid) == "paused"
    krun("delete", "--force", cid)
    assert krun("list", "-q").stdout == "" and _cgroup_dirs(cid) == []
    for verb in ("pause", "resume"):
        proc = krun(verb, cid, check=False)
        assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_ps_runs_the_hosts_ps_with_its_options(krun: Krun, bundle: BundleFactory,
                                               cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        krun("exec", "-d", cid, "sleep", "999")
        pids = json.loads(krun("ps", "--format", "json", cid).stdout)
        assert len(pids) == 2
        table = krun("ps", cid).stdout.splitlines()
        assert table[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        assert sorted(int(line.split()[1]) for line in table[1:]) == sorted(pids)
        custom = krun("ps", cid, "-o", "pid,comm").stdout.splitlines()
        assert custom[0].split() == ["PID", "COMMAND"]
        assert {line.split()[1] for line in custom[1:]} == {"sleep"}
        proc = krun("ps", cid, "--no-such-ps-option", check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    finally:
        krun("delete", "--force", cid)


def test_list_json_is_runcs_line(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle", str(b), cid)
    try:
        out = krun("list", "--format", "json").stdout
        assert out.count("\n") == 1 and ", " not in out and '": ' not in out
        (entry,) = json.loads(out)
        assert list(entry) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs",
                               "created", "owner"]
    finally:
        krun("delete", "--force", cid)


def test_debug_says_what_krun_does(krun: Krun, bundle: BundleFactory, cid: str,
                                   tmp_path: Path) -> None:
    b = bundle(["true"])
    proc = krun("--debug", "run", "--bundle", str(b), cid)
    debug = [line for line in proc.stderr.splitlines() if "level=debug" in line]
    assert any("create " + cid in line for line in debug), proc.stderr
    log = tmp_path / "log.json"
    krun("--debug", "--log", str(log), "--log-format", "json", "run", "--bundle", str(b), cid)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["level"] for e in entries} >= {"debug"}
    assert any("journal" in e["msg"] for e in entries)
    # Without --debug, nothing but errors.
    assert krun("run", "--bundle", str(b), cid).stderr == ""


def test_exec_exit_status_is_255_when_exec_itself_fails(krun: Krun, bundle: BundleFactory,
                                                        cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        proc = krun("exec", "--pid-file", "/nonexistent-dir/pid", cid, "true", check=False)
        assert proc.returncode == 255 and "no such file or directory" in proc.stderr.lower()
        assert krun("exec", cid, "/no-such-binary", check=False).returncode == 255
        assert krun("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    finally:
        krun("delete", "--force", cid)


def test_failing_prestart_hook_exits_255_with_one_line(krun: Krun, bundle: BundleFactory,
                                                       cid: str) -> None:
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}
    b = bundle(["true"], mutate=lambda c: c.update(hooks={"prestart": [hook]}))
    for verb in ("run", "create"):
        proc = krun(verb, "--bundle", str(b), cid, check=False)
        assert proc.returncode == 255, (verb, proc.stderr)
        assert proc.stderr.strip().splitlines() == [
            "error executing hook `/bin/sh` (exit code: 3)"], proc.stderr
        assert krun("list", "-q").stdout == ""


def test_terminal_output_survives_a_slow_parent(krun: Krun, bundle: BundleFactory,
                                                cid: str, tmp_path: Path) -> None:
    """A foreground run with a terminal whose container exits before libcrun's wait loop
    starts: libcrun then drains the pty through the context's output handler. strace
    slows krun enough that this happens nearly every time."""
    def tty(c: dict[str, object]) -> None:
        c["process"]["terminal"] = True  # type: ignore[index]

    b = bundle(["echo", "tty-output-line"], mutate=tty)
    argv = " ".join(["strace", "-f", "-o", "/dev/null", krun_binary(), "--root",
                     str(krun.root), "run", "--bundle", str(b), cid])
    lost = 0
    for _ in range(10):
        out = subprocess.run(["script", "-qec", argv, "/dev/null"], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=60, env={**os.environ}).stdout
        lost += b"tty-output-line" not in out
    assert lost == 0, f"output lost in {lost} of 10 runs"
    assert krun("list", "-q").stdout == ""


def test_default_root_of_a_non_root_user_is_xdg_runtime_dir(krun: Krun,
                                                           tmp_path: Path) -> None:
    """runc's and crun's rule; /run/krun is root's. (`nobody` cannot write /run.)"""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, 65534, 65534)
    script = f"XDG_RUNTIME_DIR={xdg} {krun_binary()} --version"
    out = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", script],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"rundir: {xdg}/krun" in out.stdout.splitlines()
    # Root's default is unchanged.
    assert "rundir: /run/krun" in subprocess.run([krun_binary(), "--version"],
                                                 capture_output=True, text=True).stdout
