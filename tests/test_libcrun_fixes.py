"""libcrun 1.8.1's own bugs that reached krun users, on real containers.

One hostile test per bug (native/libcrun/patches/0005-0010 and 0012; bug 3 is krun's
undo journal). Each puts the host in the state that triggered the bug (a FROZEN cgroup, a
parent cgroup with a CPU quota, a root-only bundle, ...) and puts it back afterwards:
the host's /dev/null, the cgroups made here, the processes started here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CGROUP_BASE,
    REPO,
    ROOTFS,
    ROOTS_BASE,
    BundleFactory,
    Krun,
    make_config,
    private_krun,
)

USERNS_HOST_ID = 100000
CID = re.compile(r"krt-\d+-\d+")


def _checked(cid: str) -> str:
    # Every cgroup path below is built from a test id: never from anything else.
    assert CID.fullmatch(cid), cid
    return cid


def hierarchies() -> list[Path]:
    return [p for p in CGROUP_BASE.iterdir() if p.is_dir() and not p.is_symlink()]


def cgroup_dirs(rel: str) -> list[Path]:
    """The directories of cgroup `rel` (relative to each hierarchy's root) that exist."""
    return [h / rel for h in hierarchies() if (h / rel).is_dir()]


def remove_cgroup_dirs(rel: str) -> None:
    """rmdir (never rm -rf) cgroup `rel` in every hierarchy, deepest first, after
    thawing it: what a test made, or what a broken build left."""
    assert CID.match(rel) and ".." not in rel, rel
    for d in sorted(cgroup_dirs(rel), key=lambda p: len(p.parts), reverse=True):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True):
            sub.rmdir()
        state = d / "freezer.state"
        if state.exists():
            state.write_text("THAWED")
        for _ in range(200):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.02)  # a killed task is still leaving
        else:
            raise AssertionError(f"cannot remove {d}")


def kill_cgroup_procs(rel: str) -> None:
    """SIGKILL what is left in cgroup `rel` and below it (thawed first: a frozen task
    does not die)."""
    for top in cgroup_dirs(rel):
        if (top / "freezer.state").exists():
            (top / "freezer.state").write_text("THAWED")
    for d in [d for top in cgroup_dirs(rel) for d in (top, *top.rglob("*")) if d.is_dir()]:
        for pid in (d / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass


def userns(config: dict[str, Any]) -> None:
    """A user namespace whose root is host uid/gid 100000."""
    linux = config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": USERNS_HOST_ID, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": USERNS_HOST_ID, "size": 65536}]
    # v1 cgroup file systems cannot be mounted from a user namespace
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]


@contextmanager
def container(krun: Krun, cid: str, b: Path,
              **kw: Any) -> Iterator[subprocess.CompletedProcess[str]]:
    proc = krun("run", "-d", "--bundle", str(b), cid, **kw)
    try:
        yield proc
    finally:
        krun("delete", "--force", cid, check=False)


# --- bug 1: the host's /dev/null chowned to the container's user -------------------

@pytest.fixture
def null_node(tmp_path: Path) -> Path:
    """A device node of the host's null device (1:3), owned by root: the container's
    stdin in place of /dev/null itself, so that a broken build chowns this node, not the
    host's /dev/null (which other suites on the host use, and may chown, meanwhile)."""
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return node


def _owner(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def test_exec_user_leaves_a_device_stdin_alone(krun: Krun, bundle: BundleFactory, cid: str,
                                               null_node: Path) -> None:
    with container(krun, cid, bundle(["sleep", "300"])):
        with open(null_node, "rb") as stdin:
            proc = subprocess.run(krun.argv("exec", "--user", "1000:1000", cid, "id", "-u"),
                                  stdin=stdin, capture_output=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == b"1000", proc
        assert _owner(null_node) == (0, 0), "exec --user chowned the null device it read"
        # A pipe is still handed to the exec user, as before: it is the process's own.
        piped = subprocess.run(krun.argv("exec", "--user", "1000:1000", cid, "sh", "-c",
                                         "stat -L -c %u /proc/self/fd/0"),
                               input=b"", capture_output=True, timeout=60)
        assert piped.stdout.strip() == b"1000", piped


def test_userns_container_leaves_a_device_stdin_alone(krun: Krun, bundle: BundleFactory,
                                                      cid: str, null_node: Path) -> None:
    b = bundle(["sleep", "300"], mutate=userns)
    try:
        with open(null_node, "rb") as stdin, tempfile.TemporaryFile() as out:
            rc = subprocess.run(krun.argv("run", "-d", "--bundle", str(b), cid), stdin=stdin,
                                stdout=out, stderr=out, timeout=60).returncode
            out.seek(0)
            assert rc == 0, out.read()
        pid = krun.state(cid)["pid"]
        with open(f"/proc/{pid}/uid_map") as f:
            assert f.read().split()[:2] == ["0", str(USERNS_HOST_ID)]
        assert _owner(null_node) == (0, 0), "the user namespace's root was given the null device"
    finally:
        krun("delete", "--force", cid, check=False)


# --- bug 2: a pre-existing FROZEN cgroup; a pre-existing busy one -------------------

@contextmanager
def users_frozen_cgroup(krun: Krun, cid: str) -> Iterator[Path]:
    """The freezer cgroup /<cid>, made here and FROZEN as a user would leave it; yields
    its directory. Afterwards it is thawed (a frozen task cannot die), the container
    deleted, and what is left of the cgroup killed and removed in every hierarchy."""
    _checked(cid)
    top = CGROUP_BASE / "freezer" / cid
    top.mkdir()
    try:
        (top / "freezer.state").write_text("FROZEN")
        yield top
    finally:
        if top.is_dir():
            (top / "freezer.state").write_text("THAWED")
        krun("delete", "--force", cid, check=False)
        kill_cgroup_procs(cid)
        remove_cgroup_dirs(cid)


@pytest.mark.parametrize("frozen", ["the cgroup", "its parent"])
def test_create_in_a_frozen_cgroup_is_refused_at_once(krun: Krun, bundle: BundleFactory, cid: str,
                                                     frozen: str) -> None:
    rel = cid if frozen == "the cgroup" else f"{cid}/ctr"
    with users_frozen_cgroup(krun, cid):
        b = bundle(["sleep", "300"],
                   mutate=lambda c: c["linux"].update(cgroupsPath="/" + rel))
        start = time.monotonic()
        try:
            proc = krun("run", "-d", "--bundle", str(b), cid, check=False, timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("run -d into a frozen cgroup hung (its init frozen in D state)")
        took = time.monotonic() - start
        assert proc.returncode != 0
        err = proc.stderr.strip()
        assert "frozen" in err and "\n" not in err, err
        assert took < 10
        assert not (krun.root / cid).exists(), "a refused create leaves no state"


def test_refused_create_leaves_the_users_frozen_cgroup(krun: Krun, bundle: BundleFactory,
                                                       cid: str) -> None:
    with users_frozen_cgroup(krun, cid) as top:
        b = bundle(["sleep", "300"], mutate=lambda c: c["linux"].update(cgroupsPath="/" + cid))
        try:
            krun("run", "-d", "--bundle", str(b), cid, check=False, timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("run -d into a frozen cgroup hung")
        # runc leaves the user's cgroup as it was: there, and still frozen.
        assert top.is_dir() and (top / "freezer.state").read_text().strip() == "FROZEN"


def test_create_in_a_busy_cgroup_warns_and_goes_on(krun: Krun, bundle: BundleFactory,
                                                   cid: str) -> None:
    _checked(cid)
    pids_dir = CGROUP_BASE / "pids" / cid
    pids_dir.mkdir()
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (pids_dir / "cgroup.procs").write_text(str(bystander.pid))
        b = bundle(["sleep", "300"], mutate=lambda c: c["linux"].update(cgroupsPath="/" + cid))
        with container(krun, cid, b) as proc:
            assert "container's cgroup is not empty: 1 process(es) found" in proc.stderr
            assert krun.status(cid) == "running"
    finally:
        bystander.kill()
        bystander.wait()
        kill_cgroup_procs(cid)
        remove_cgroup_dirs(cid)


# --- bug 3: a failed run -d leaves the container's cgroups --------------------------

FAILURES: dict[str, tuple[list[str], Callable[[dict[str, Any]], None] | None]] = {
    # libcrun has made (and joined) the cgroup in every hierarchy when this write fails
    "a cgroup write fails": (["true"], lambda c: c["linux"]["resources"].update(
        cpu={"cpus": str((os.cpu_count() or 1) + 64)})),
    "a prestart hook fails": (["true"], lambda c: c.update(hooks={"prestart": [
        {"path": "/bin/false"}]})),
    "the executable is missing": (["/nonexistent"], None),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_run_detached_leaves_no_cgroup(krun: Krun, bundle: BundleFactory, cid: str,
                                              failure: str) -> None:
    _checked(cid)
    args, mutate = FAILURES[failure]
    try:
        proc = krun("run", "-d", "--bundle", str(bundle(args, mutate=mutate)), cid, check=False)
        assert proc.returncode != 0
        left = cgroup_dirs(cid)
        assert not left, f"cgroups left behind after {failure}: {left}"
        assert not (krun.root / cid).exists()
    finally:
        krun("delete", "--force", cid, check=False)
        kill_cgroup_procs(cid)
        remove_cgroup_dirs(cid)


# --- bugs 4 and 5: CPU quota -1, and the period/quota order -------------------------

def _cpu(rel: str) -> tuple[str, str]:
    d = CGROUP_BASE / "cpu" / rel
    return ((d / "cpu.cfs_period_us").read_text().strip(),
            (d / "cpu.cfs_quota_us").read_text().strip())


def test_update_cpu_quota_minus_one_removes_the_limit(krun: Krun, bundle: BundleFactory,
                                                      cid: str) -> None:
    b = bundle(["sleep", "300"], mutate=lambda c: c["linux"]["resources"].update(
        cpu={"period": 100000, "quota": 50000}))
    with container(krun, cid, b):
        assert _cpu(cid) == ("100000", "50000")
        krun("update", "--cpu-quota", "-1", cid)
        assert _cpu(cid) == ("100000", "-1")
        # and through --resources, the way engines send it
        krun("update", "--resources", "-", cid,
             input=json.dumps({"cpu": {"quota": 20000}}).encode())
        assert _cpu(cid) == ("100000", "20000")
        krun("update", "--resources", "-", cid, input=json.dumps({"cpu": {"quota": -1}}).encode())
        assert _cpu(cid) == ("100000", "-1")


def test_cpu_period_and_quota_under_a_parent_with_a_quota(krun: Krun, bundle: BundleFactory,
                                                          cid: str) -> None:
    _checked(cid)
    parent = f"{cid}-parent"
    (CGROUP_BASE / "cpu" / parent).mkdir()
    try:
        (CGROUP_BASE / "cpu" / parent / "cpu.cfs_quota_us").write_text("50000")  # half a CPU
        b = bundle(["sleep", "300"], mutate=lambda c: (
            c["linux"].update(cgroupsPath=f"/{parent}/{cid}"),
            c["linux"]["resources"].update(cpu={"period": 100000, "quota": 50000})))
        with container(krun, cid, b):
            rel = f"{parent}/{cid}"
            assert _cpu(rel) == ("100000", "50000")
            # a shorter period first would be 50000/50000, a whole CPU: over the parent's
            krun("update", "--cpu-period", "50000", "--cpu-quota", "25000", cid)
            assert _cpu(rel) == ("50000", "25000")
            # the other way round, a larger quota first would be over the limit
            krun("update", "--cpu-period", "200000", "--cpu-quota", "100000", cid)
            assert _cpu(rel) == ("200000", "100000")
            # a pair over the parent's limit is still refused
            proc = krun("update", "--cpu-period", "100000", "--cpu-quota", "90000", cid,
                        check=False)
            assert proc.returncode != 0
    finally:
        krun("delete", "--force", cid, check=False)
        kill_cgroup_procs(parent)
        remove_cgroup_dirs(parent)


# --- bug 6: device rule access "rwa" ------------------------------------------------

def test_device_rule_access_ignores_letters_other_than_rwm(krun: Krun, bundle: BundleFactory,
                                                           cid: str) -> None:
    def rules(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["devices"] = [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 1, "access": "rwa"},
            {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "amr"},
        ]
    with container(krun, cid, bundle(["sleep", "300"], mutate=rules)):
        listed = (CGROUP_BASE / "devices" / cid / "devices.list").read_text().splitlines()
        # runc 1.1 gives exactly these for the same rules
        assert "c 1:1 rw" in listed and "b 7:0 rm" in listed, listed


def test_device_rule_with_no_known_access_is_refused_clearly(krun: Krun, bundle: BundleFactory,
                                                             cid: str) -> None:
    b = bundle(["true"], mutate=lambda c: c["linux"]["resources"].update(devices=[
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 1, "access": "a"}]))
    proc = krun("run", "-d", "--bundle", str(b), cid, check=False)
    assert proc.returncode != 0
    assert "invalid device access `a`" in proc.stderr, proc.stderr
    assert not cgroup_dirs(_checked(cid))


# --- bug 7: a bind-mount source looked up from inside the user namespace ------------

@pytest.fixture
def userns_rootfs(cid: str) -> Iterator[Path]:
    """A busybox rootfs the user namespace's root can reach: not under pytest's 0700
    temporary directory, so an absolute root.path works from any bundle."""
    top = Path(tempfile.mkdtemp(prefix=f"{_checked(cid)}-rootfs-", dir="/tmp"))
    top.chmod(0o755)
    try:
        shutil.copytree(ROOTFS, top / "rootfs", symlinks=True)
        yield top / "rootfs"
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("source", ["relative", "absolute"])
def test_userns_bind_source_in_a_root_only_bundle(krun: Krun, tmp_path: Path, cid: str,
                                                  userns_rootfs: Path, source: str) -> None:
    b = tmp_path / "bundle"
    (b / "data").mkdir(parents=True)
    (b / "data" / "file").write_text("hello from the host\n")
    config = make_config(["cat", "/home/file"])
    userns(config)
    config["root"]["path"] = str(userns_rootfs)
    config["mounts"].append({"destination": "/home", "type": "bind", "options": ["rbind", "ro"],
                             "source": "data" if source == "relative" else str(b / "data")})
    (b / "config.json").write_text(json.dumps(config))
    b.chmod(0o700)  # the user namespace's root (host uid 100000) cannot search it
    try:
        proc = krun("run", "--bundle", str(b), cid, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "hello from the host\n"
    finally:
        krun("delete", "--force", cid, check=False)


# --- bug 7: a READY=1 sent just before the container exits is dropped -------------
# libcrun's foreground run reaped the exited container first and returned without
# reading the notify socket, so whoever waits for READY=1 (systemd, podman
# --sdnotify=container) never got it. crun's own test suite (sd-notify-proxy) flakes on
# this; a poststart hook that sleeps makes the container finish before run's wait loop.

class NotifyServer:
    """The host's NOTIFY_SOCKET: records every datagram, and closes the fd of each
    BARRIER=1 (what systemd does), so libcrun's sd_notify_barrier returns at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o777)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 4096, 8)
            except TimeoutError:
                continue
            for fd in fds:
                os.close(fd)
            self.messages.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_ready(tmp_path: Path) -> Path:
    out = tmp_path / "notify-ready"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out),
                    str(REPO / "tests" / "data" / "notify_ready.c")],
                   check=True, capture_output=True)
    return out


@pytest.fixture
def notify_server(tmp_path: Path) -> Iterator[NotifyServer]:
    server = NotifyServer(tmp_path / "notify.sock")
    yield server
    server.close()


def _notifying_bundle(bundle: BundleFactory, notify_ready: Path, hook_sleep: str | None) -> Path:
    def mutate(c: dict[str, Any]) -> None:
        c["mounts"].append({"destination": "/notify-ready", "type": "bind",
                            "source": str(notify_ready), "options": ["bind", "ro"]})
        if hook_sleep:
            sleep = shutil.which("sleep") or "/bin/sleep"
            c["hooks"] = {"poststart": [{"path": sleep, "args": ["sleep", hook_sleep]}]}
    b = bundle(["/notify-ready"], mutate=mutate)
    (b / "rootfs" / "notify-ready").touch()
    return b


def _env_with(server: NotifyServer) -> dict[str, str]:
    return {**os.environ, "NOTIFY_SOCKET": str(server.path)}


@pytest.fixture
def short_krun() -> Iterator[Krun]:
    """krun with a state root short enough for libcrun's notify socket path
    (<root>/<id>/notify/notify) to fit sun_path: bug 8 below is the long one."""
    yield from private_krun(ROOTS_BASE / f"n{os.getpid()}")


@pytest.mark.parametrize("hook_sleep", ["0.5", None], ids=["exit-before-wait", "plain"])
def test_run_relays_ready_sent_just_before_exit(short_krun: Krun, bundle: BundleFactory,
                                                cid: str, notify_ready: Path,
                                                notify_server: NotifyServer,
                                                hook_sleep: str | None) -> None:
    b = _notifying_bundle(bundle, notify_ready, hook_sleep)
    for i in range(3 if hook_sleep else 10):
        notify_server.messages.clear()
        proc = short_krun("run", "--bundle", str(b), f"{cid}-{i}", check=False, timeout=20,
                          env=_env_with(notify_server))
        assert proc.returncode == 0, proc.stderr
        assert b"READY=1" in notify_server.messages, (i, notify_server.messages)


def test_create_start_relays_ready(short_krun: Krun, bundle: BundleFactory, cid: str,
                                   notify_ready: Path, notify_server: NotifyServer) -> None:
    b = _notifying_bundle(bundle, notify_ready, None)
    env = _env_with(notify_server)
    try:
        short_krun("create", "--bundle", str(b), cid, env=env)
        short_krun("start", cid, env=env, timeout=20)
        assert b"READY=1" in notify_server.messages, notify_server.messages
    finally:
        short_krun("delete", "--force", cid, env=env, check=False)


# --- bug 8: NOTIFY_SOCKET fails under a long state root ----------------------------
# libcrun binds <root>/<id>/notify/notify; a path longer than sun_path (108) was bound
# as /proc/self/fd/<the new socket> instead of through its directory: EADDRINUSE, so
# every run and create with NOTIFY_SOCKET failed under a deep root (containerd's are).

@pytest.mark.parametrize("command", ["run", "create"])
def test_notify_socket_under_a_long_state_root(krun: Krun, bundle: BundleFactory, cid: str,
                                               notify_ready: Path, notify_server: NotifyServer,
                                               command: str) -> None:
    import conftest

    pad = max(0, 120 - len(f"{krun.root}-/{cid}/notify/notify"))
    long_root = Krun(Path(f"{krun.root}-{'d' * pad}"))
    conftest._session_roots.add(long_root.root)  # the session's leak check covers it too
    assert len(str(long_root.root / cid / "notify" / "notify")) >= 108
    b = _notifying_bundle(bundle, notify_ready, None)
    env = _env_with(notify_server)
    try:
        proc = long_root(command, "--bundle", str(b), cid, env=env, check=False, timeout=20)
        assert proc.returncode == 0, proc.stderr
        if command == "create":
            long_root("start", cid, env=env, timeout=20)
        assert b"READY=1" in notify_server.messages, notify_server.messages
    finally:
        long_root("delete", "--force", cid, env=env, check=False)
        shutil.rmtree(long_root.root, ignore_errors=True)
