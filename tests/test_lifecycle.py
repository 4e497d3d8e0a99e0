"""The container lifecycle through krun, on real containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import ROOTFS, BundleFactory, Krun


def test_run_prints_output_and_returns_exit_code(krun: Krun, bundle: BundleFactory,
                                                 cid: str) -> None:
    b = bundle(["sh", "-c", "echo hello from busybox; exit 7"])
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.stdout == "hello from busybox\n"
    assert proc.returncode == 7
    assert not (krun.root / cid).exists(), "a foreground run deletes its container"


def test_run_uses_cwd_as_default_bundle(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["echo", "from-cwd"])
    assert krun("run", cid, cwd=b).stdout == "from-cwd\n"


def test_run_forwards_signals_to_the_container(krun: Krun, bundle: BundleFactory,
                                               cid: str) -> None:
    b = bundle(["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; "
                            "while true; do sleep 0.05; done"])
    proc = subprocess.Popen(krun.argv("run", "--bundle", str(b), cid), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert "got-term" in out
    assert proc.returncode == 42


def test_run_detach_then_kill_and_delete(krun: Krun, bundle: BundleFactory, cid: str,
                                         tmp_path: Path) -> None:
    b = bundle(["sleep", "1000"])
    pid_file = tmp_path / "pid"
    krun("run", "--detach", "--pid-file", str(pid_file), "--bundle", str(b), cid)
    state = krun.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == int(pid_file.read_text())
    krun("kill", cid, "KILL")
    krun.wait_status(cid, "stopped")
    krun("delete", cid)
    assert krun("delete", "--force", cid, check=False).returncode == 0


def test_create_start_state_delete(krun: Krun, bundle: BundleFactory, cid: str,
                                   tmp_path: Path) -> None:
    b = bundle(["sleep", "1000"], mutate=lambda c: c.update(annotations={"org.test": "yes"}))
    pid_file = tmp_path / "pidfile"
    krun("create", "--bundle", str(b), "--pid-file", str(pid_file), cid)
    state = krun.state(cid)
    assert set(state) == {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                          "owner", "annotations"}
    assert state["id"] == cid and state["status"] == "created"
    assert state["bundle"] == str(b) and state["rootfs"] == str(b / "rootfs")
    assert state["pid"] == int(pid_file.read_text()) > 0
    assert state["annotations"]["org.test"] == "yes"
    assert state["owner"] == "root"
    krun("start", cid)
    assert krun.status(cid) == "running"
    krun("kill", cid)  # default signal: TERM; sleep as pid 1 ignores it...
    krun("kill", cid, "9")
    krun.wait_status(cid, "stopped")
    assert krun.state(cid)["pid"] == 0
    krun("delete", cid)
    assert not (krun.root / cid).exists()


def test_create_does_not_run_the_process_before_start(krun: Krun, bundle: BundleFactory,
                                                      cid: str) -> None:
    b = bundle(["sh", "-c", "echo started > /marker; sleep 1000"])
    krun("create", "--bundle", str(b), cid)
    time.sleep(0.3)
    assert not (b / "rootfs" / "marker").exists(), "the process ran before start"
    assert (krun.root / cid / "exec.fifo").exists(), "create waits on the exec fifo"
    krun("start", cid)
    deadline = time.monotonic() + 10
    while not (b / "rootfs" / "marker").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (b / "rootfs" / "marker").read_text() == "started\n"
    krun("delete", "--force", cid)


def test_200_create_start_cycles(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sh", "-c", "echo $0 > /out/$1", "x"])
    out = b / "rootfs" / "out"
    out.mkdir()
    for i in range(200):
        name = f"{cid}-{i}"
        config = json.loads((b / "config.json").read_text())
        config["process"]["args"] = ["sh", "-c", f"echo {i} > /out/{i}"]
        (b / "config.json").write_text(json.dumps(config))
        krun("create", "--bundle", str(b), name, timeout=30)
        krun("start", name, timeout=30)
        krun.wait_status(name, "stopped", timeout=30)
        krun("delete", name, timeout=30)
    assert sorted(int(p.name) for p in out.iterdir()) == list(range(200)), "a start was lost"
    assert [p.name for p in krun.root.iterdir() if not p.name.startswith(".")] == []
    assert list((krun.root / ".krun").iterdir()) == []


def test_exec_inline_and_process_file(krun: Krun, bundle: BundleFactory, cid: str,
                                      tmp_path: Path) -> None:
    b = bundle(["sleep", "1000"], mutate=lambda c: c["process"]["env"].append("FROM_CONFIG=1"))
    krun("run", "-d", "--bundle", str(b), cid)
    proc = krun("exec", cid, "sh", "-c", "echo $FROM_CONFIG; pwd; id -u; exit 3", check=False)
    assert proc.stdout == "1\n/\n0\n" and proc.returncode == 3
    proc = krun("exec", "--cwd", "/tmp", "--env", "A=b", "-e", "C=d", "--user", "65534:65534",
                cid, "sh", "-c", "echo $A$C; pwd; id -u; id -g")
    assert proc.stdout == "bd\n/tmp\n65534\n65534\n"
    proc = krun("exec", "--cwd=/etc", "--env=A=x", cid, "sh", "-c", "echo $A; pwd")
    assert proc.stdout == "x\n/etc\n"
    process = {"args": ["sh", "-c", "echo from-file; cat"], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0}}
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    # CRI-O's call: foreground exec --process, relaying stdio.
    proc = krun("exec", "--process", str(pfile), cid, input=b"relayed-stdin\n")
    assert proc.stdout == "from-file\nrelayed-stdin\n"
    pid_file = tmp_path / "exec.pid"
    process["args"] = ["sh", "-c", "echo detached > /tmp/d; sleep 1000"]
    pfile.write_text(json.dumps(process))
    krun("exec", "--process", str(pfile), "--detach", "--pid-file", str(pid_file), cid)
    exec_pid = int(pid_file.read_text())
    assert exec_pid in json.loads(krun("ps", "--format", "json", cid).stdout)
    deadline = time.monotonic() + 5
    while not (b / "rootfs" / "tmp" / "d").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (b / "rootfs" / "tmp" / "d").read_text() == "detached\n"
    # runc's table: the host's `ps -ef` header, then the container's lines only.
    table = krun("ps", cid).stdout.splitlines()
    assert table[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(table) == 3
    krun("kill", "--all", cid, "KILL")
    krun.wait_status(cid, "stopped")
    assert krun("exec", cid, "true", check=False).returncode != 0
    krun("delete", cid)


def test_pause_resume(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    krun("pause", cid)
    assert krun.status(cid) == "paused"
    assert krun("pause", cid, check=False).returncode == 1
    krun("resume", cid)
    assert krun.status(cid) == "running"
    assert "not paused" in krun("resume", cid, check=False).stderr
    krun("delete", "--force", cid)


def _cgroup_file(cid: str, ctrl: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{ctrl}/{cid}/{name}").read_text().strip()


def test_update_resources_file_stdin_and_flags(krun: Krun, bundle: BundleFactory, cid: str,
                                               tmp_path: Path) -> None:
    b = bundle(["sleep", "1000"])
    krun("run", "-d", "--bundle", str(b), cid)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 64 * 1024 * 1024}}))
    krun("update", "--resources", str(res), cid)
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
    krun("update", "--resources", "-", cid, input=json.dumps({"pids": {"limit": 77}}).encode())
    assert _cgroup_file(cid, "pids", "pids.max") == "77"
    krun("update", "--resources=" + str(res), cid)
    krun("update", "--memory", str(96 * 1024 * 1024), "--pids-limit=55", cid)
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(96 * 1024 * 1024)
    assert _cgroup_file(cid, "pids", "pids.max") == "55"
    assert krun("update", "--resources", "-", cid, input=b"{not json",
                check=False).returncode == 1
    krun("delete", "--force", cid)


def test_list_table_json_and_skips_foreign_entries(krun: Krun, bundle: BundleFactory,
                                                    cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--bundle", str(b), cid)
    # dockerd shares one --root between runtimes: a runc entry must not show up.
    foreign = krun.root / "runc-container"
    foreign.mkdir()
    (foreign / "state.json").write_text("{}")
    listed = json.loads(krun("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == [cid]
    assert listed[0]["status"] == "created"
    table = krun("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[0] == cid and len(table) == 2
    assert krun("list", "-q").stdout == cid + "\n"
    foreign.joinpath("state.json").unlink()
    foreign.rmdir()
    krun("delete", "--force", cid)
    assert json.loads(krun("list", "--format=json").stdout) == []


def test_console_socket_receives_the_pty(krun: Krun, bundle: BundleFactory, cid: str,
                                         tmp_path: Path) -> None:
    import array
    import socket

    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    b = bundle(["sh", "-c", "tty; sleep 1000"],
               mutate=lambda c: c["process"].update(terminal=True))
    krun("create", "--bundle", str(b), "--console-socket", str(sock_path), cid)
    conn, _ = server.accept()
    fds = array.array("i")
    _, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
    fds.frombytes(ancdata[0][2][: fds.itemsize])
    master = fds[0]
    krun("start", cid)
    out = b""
    deadline = time.monotonic() + 5
    while b"/dev/pts/" not in out and time.monotonic() < deadline:
        out += os.read(master, 1024)
    assert b"/dev/pts/0" in out
    os.close(master)
    conn.close()
    server.close()
    krun("delete", "--force", cid)


def test_preserve_fds(krun: Krun, bundle: BundleFactory, cid: str, tmp_path: Path) -> None:
    b = bundle(["sh", "-c", "cat <&3"])
    data = tmp_path / "data"
    data.write_text("through fd 3\n")
    # fd 3 is opened by the shell so this process's own descriptors stay untouched.
    proc = subprocess.run(["sh", "-c", 'exec "$@" 3<"$DATA"', "sh",
                           *krun.argv("run", "--preserve-fds", "1", "--bundle", str(b), cid)],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "DATA": str(data)})
    assert proc.stdout == "through fd 3\n", proc.stderr


def test_spec_writes_a_runnable_default(krun: Krun, tmp_path: Path, cid: str) -> None:
    b = tmp_path / "specbundle"
    b.mkdir()
    krun("spec", "--bundle", str(b))
    config = json.loads((b / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    proc = krun("spec", "-b", str(b), check=False)
    assert proc.returncode == 1 and "exists" in proc.stderr
    rootless = tmp_path / "rootless"
    rootless.mkdir()
    krun("spec", "--rootless", "--bundle", str(rootless))
    rl = json.loads((rootless / "config.json").read_text())
    assert {"type": "user"} in rl["linux"]["namespaces"]
    assert rl["linux"]["uidMappings"][0]["hostID"] == os.getuid()
    # The default spec runs as it is, once given a rootfs and a command.
    import shutil

    shutil.copytree(ROOTFS, b / "rootfs", symlinks=True)
    config["process"].update(terminal=False, args=["echo", "default-spec-ok"])
    (b / "config.json").write_text(json.dumps(config))
    assert krun("run", "-b", str(b), cid).stdout == "default-spec-ok\n"



def test_negative_pids_limit_means_no_limit(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    """CRI-O sends pids.limit -1; libcrun 1.8.1 alone writes "-1" (EINVAL on cgroup v1)."""
    b = bundle(["sleep", "1000"],
               mutate=lambda c: c["linux"]["resources"].update(pids={"limit": -1}))
    krun("run", "-d", "--bundle", str(b), cid)
    assert _cgroup_file(cid, "pids", "pids.max") == "max"
    krun("delete", "--force", cid)


def test_start_runs_poststart_hooks(krun: Krun, bundle: BundleFactory, cid: str,
                                    tmp_path: Path) -> None:
    marker = tmp_path / "poststart"
    b = bundle(["sleep", "1000"], mutate=lambda c: c.update(hooks={"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {marker}"]}]}))
    krun("create", "--bundle", str(b), cid)
    assert not marker.exists()
    krun("start", cid)
    state = json.loads(marker.read_text())
    assert state["id"] == cid and state["status"] == "running"
    krun("delete", "--force", cid)


def _wait_stopped(krun: Krun, cid: str) -> None:
    deadline = time.monotonic() + 10
    while json.loads(krun("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} did not stop"
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_delete_of_a_stopped_container_removes_everything_with_or_without_libcrun(
        krun: Krun, bundle: BundleFactory, cid: str, tmp_path: Path) -> None:
    """A stopped container is removed without loading libcrun unless it needs what only
    libcrun's delete does: each case must leave nothing (the suite's leak check looks
    at cgroups and processes) and keep libcrun's behaviour."""
    state_dir = krun.root / cid
    # 1. A poststop hook: it runs at delete, once, with the stopped state.
    marker = tmp_path / "poststop"
    b = bundle(["true"], mutate=lambda c: c.update(hooks={"poststop": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {marker}"]}]}))
    krun("create", "--bundle", str(b), cid)
    krun("start", cid)
    _wait_stopped(krun, cid)
    assert not marker.exists()
    krun("delete", cid)
    state = json.loads(marker.read_text())  # one state: the hook ran once
    assert state["id"] == cid and state["status"] == "stopped" and not state_dir.exists()
    # 2. No pid namespace: the init exits, the process it left behind keeps running in
    #    the container's cgroup; delete kills it and removes the cgroup everywhere.
    def no_pid_ns(c: dict) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    b = bundle(["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /left.pid"],
               mutate=no_pid_ns)
    krun("run", "--detach", "--bundle", str(b), cid)
    _wait_stopped(krun, cid)
    pid = int((b / "rootfs" / "left.pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    _wait_stopped(krun, cid)
    krun("delete", cid)
    deadline = time.monotonic() + 5
    while not _gone(pid):
        assert time.monotonic() < deadline, "the process left in the cgroup survived delete"
        time.sleep(0.02)
    assert not state_dir.exists()
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/{cid}")], "a cgroup was left"
    # 3. Something planted in the state dir (not a file): removed all the same, and a
    #    link in it is removed, not followed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    b = bundle(["true"])
    krun("run", "--detach", "--bundle", str(b), cid)
    _wait_stopped(krun, cid)
    (state_dir / "sub" / "deeper").mkdir(parents=True)
    (state_dir / "sub" / "deeper" / "file").write_text("x")
    (state_dir / "link").symlink_to(outside)
    krun("delete", cid)
    assert not state_dir.exists() and (outside / "keep").read_text() == "keep"
