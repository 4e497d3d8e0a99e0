"""Rootless krun: a real unprivileged user, with subordinate ids and its own
$XDG_RUNTIME_DIR, runs containers through the installed krun, podman (rootless) runs
busybox with krun as its runtime, and a Kontain container runs when the user may open
/dev/kvm through group kvm. Every permission failure is one line naming the path.

The module makes the user `krun-rootless` (home HOME, XDG_RUNTIME_DIR /run/user/UID),
and, for the Kontain tests, group kvm with /dev/kvm chgrp'd to it. What it changed is
written to STATE before it is changed, so a run that was killed is undone by the next
one; teardown removes the user, its subordinate ids, its runtime dir, its processes
(podman's pause process among them) and its podman storage, and gives /dev/kvm back
its owner, group and mode.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PAYLOADS, ROOTFS, krun_binary

USER = "krun-rootless"
HOME = Path("/var/lib/krun-rootless")
SUBIDS = 65536
STATE = Path("/run/krun-tests-rootless.json")  # what this module changed on the host
KVM = Path("/dev/kvm")
KVM_GROUP = "kvm"
PODMAN = "/usr/bin/podman"
CRUN = "/usr/bin/crun"
PODMAN_FLAGS = ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
IMAGE = "krun.test/busybox:1"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


# Host state: recorded before it is changed, undone idempotently ----------------------

def _load_state() -> dict[str, Any]:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict[str, Any]) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE)


def _restore_kvm(state: dict[str, Any]) -> None:
    """/dev/kvm's owner, group and mode as they were before this module changed them."""
    saved = state.get("kvm")
    if saved and KVM.exists():
        os.chown(KVM, saved["uid"], saved["gid"])
        os.chmod(KVM, saved["mode"])
    if state.get("kvm_group_created"):
        subprocess.run(["groupdel", KVM_GROUP], capture_output=True, check=False)


def _user_pids(uid: int, subid_start: int | None) -> list[int]:
    """Processes running as the user, or as one of its subordinate ids (podman's)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                real = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue
        if real == uid or (subid_start is not None
                           and subid_start <= real < subid_start + SUBIDS):
            pids.append(int(entry))
    return pids


def _kill_user_processes(uid: int, subid_start: int | None) -> list[int]:
    """SIGKILL each of the user's processes, by pid; returns those that were there."""
    found = _user_pids(uid, subid_start)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while _user_pids(uid, subid_start) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _drop_subid_lines() -> None:
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        if not path.exists():
            continue
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(f"{USER}:")]
        if kept != lines:
            path.write_text("".join(kept))


def _remove_user(state: dict[str, Any]) -> None:
    """Everything the user had: processes, account, subordinate ids, runtime dir, home
    (podman's storage is in it and in the runtime dir). Safe to call when it is gone."""
    uid = state.get("uid")
    try:
        uid = pwd.getpwnam(USER).pw_uid
    except KeyError:
        pass
    if isinstance(uid, int):
        _kill_user_processes(uid, state.get("subid_start"))
        xdg = Path(f"/run/user/{uid}")
        if xdg.is_dir() and not xdg.is_symlink() and xdg.stat().st_uid == uid:
            shutil.rmtree(xdg)
        for leftover in (Path(f"/tmp/podman-run-{uid}"), Path(f"/tmp/containers-user-{uid}"),
                         Path(f"/tmp/run-{uid}")):
            if leftover.is_dir() and not leftover.is_symlink() and leftover.stat().st_uid == uid:
                shutil.rmtree(leftover)
    subprocess.run(["userdel", USER], capture_output=True, check=False)
    try:
        grp.getgrnam(USER)
        subprocess.run(["groupdel", USER], capture_output=True, check=False)
    except KeyError:
        pass
    _drop_subid_lines()
    if HOME.is_dir() and not HOME.is_symlink():
        shutil.rmtree(HOME)


def _undo(state: dict[str, Any]) -> None:
    _remove_user(state)
    _restore_kvm(state)
    STATE.unlink(missing_ok=True)


def _free_subid_start() -> int:
    """The first subordinate id past every range already given out (and >= 100000)."""
    end = 100000
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    return end


# The user -------------------------------------------------------------------------------

class User:
    """The unprivileged user; run() executes a command as it, with a clean environment."""

    def __init__(self, uid: int, gid: int, subid_start: int) -> None:
        self.uid, self.gid, self.subid_start = uid, gid, subid_start
        self.xdg = Path(f"/run/user/{uid}")
        self.root = self.xdg / "krun"  # krun's default root for this user
        self.krun = krun_binary()
        self.env = {"HOME": str(HOME), "XDG_RUNTIME_DIR": str(self.xdg), "PATH": USER_PATH,
                    "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8"}

    def run(self, *argv: str, input: bytes | None = None, timeout: float = 60,
            cwd: Path = HOME) -> subprocess.CompletedProcess[str]:
        # setpriv --init-groups reads /etc/group now: a membership change applies at once.
        cmd = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
               "--", *argv]
        # Files, not pipes: a detached container would hold a pipe open.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(cmd, stdout=out, stderr=err, timeout=timeout, input=input,
                                stdin=None if input is not None else subprocess.DEVNULL,
                                cwd=cwd, env=self.env).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, rc, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))

    def krun_(self, *args: str, check: bool = True, **kw: Any
              ) -> subprocess.CompletedProcess[str]:
        """The installed krun as the user, with no flags of ours: its defaults."""
        proc = self.run(self.krun, *args, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"krun {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def bundle(self, name: str, busybox: bool = True) -> Path:
        """A fresh bundle dir in the user's home, its rootfs copied by the user."""
        path = HOME / name
        self.run("rm", "-rf", str(path))
        self.run("mkdir", "-p", str(path))
        if busybox:
            assert self.run("cp", "-a", str(ROOTFS), str(path / "rootfs")).returncode == 0
        else:
            self.run("mkdir", str(path / "rootfs"))
        return path

    def edit_config(self, bundle: Path, **process: Any) -> dict[str, Any]:
        path = bundle / "config.json"
        config = json.loads(path.read_text())
        config["process"].update(process)
        path.write_text(json.dumps(config, indent=2))
        os.chown(path, self.uid, self.gid)
        return config

    def processes(self) -> list[str]:
        """The user's live processes but podman's rootless pause process (it keeps
        podman's user namespace for the session, by design). Zombies are dead already:
        an orphan's is reaped by pid 1, in its own time."""
        left = []
        for pid in _user_pids(self.uid, self.subid_start):
            try:
                stat_line = Path(f"/proc/{pid}/stat").read_bytes()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if stat_line[stat_line.rindex(b")") + 2:][:1] in (b"Z", b"X"):
                continue
            if cmdline[:2] != [b"catatonit", b"-P"]:
                left.append(f"{pid} {b' '.join(cmdline).decode(errors='replace')}")
        return left

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """Container state under the user's krun root, its records, its processes. An
        engine's helpers exit in their own time after the command that stopped the
        container returned (conmon runs podman's cleanup, then exits): they get `grace`
        seconds to go."""
        deadline = time.monotonic() + grace
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        left: list[str] = []
        if self.root.is_dir():
            left += [p.name for p in self.root.iterdir() if not p.name.startswith(".")]
            records = self.root / ".krun"
            if records.is_dir():
                left += [f".krun/{p.name}" for p in records.glob("*.json")]
        return left + self.processes()


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    if not shutil.which("setpriv") or not shutil.which("newuidmap"):
        pytest.skip("setpriv (util-linux) and newuidmap (uidmap) are needed")
    if not ROOTFS.is_dir():
        pytest.skip(f"{ROOTFS} missing: run scripts/setup")
    _undo(_load_state())  # a previous run that was killed
    state: dict[str, Any] = {}
    if KVM.exists():
        st = KVM.stat()
        state["kvm"] = {"uid": st.st_uid, "gid": st.st_gid, "mode": stat.S_IMODE(st.st_mode)}
    state["subid_start"] = start = _free_subid_start()
    _save_state(state)
    try:
        subprocess.run(["useradd", "--system", "--user-group", "--home-dir", str(HOME),
                        "--create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(USER)
        state["uid"] = pw.pw_uid
        _save_state(state)
        ids = f"{start}-{start + SUBIDS - 1}"
        subprocess.run(["usermod", "--add-subuids", ids, "--add-subgids", ids, USER],
                       check=True, capture_output=True)
        HOME.chmod(0o755)
        xdg = Path(f"/run/user/{pw.pw_uid}")
        xdg.parent.mkdir(mode=0o755, exist_ok=True)
        xdg.mkdir(mode=0o700)
        os.chown(xdg, pw.pw_uid, pw.pw_gid)
        u = User(pw.pw_uid, pw.pw_gid, start)
        yield u
        left = u.leftovers()
        assert not left, f"left behind by the user: {left}"
    finally:
        _undo(_load_state())
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(HOME) in line.split()[4] or f"/run/user/{state['uid']}" in line.split()[4]]
    assert not mounts, f"mounts left behind: {mounts}"


_ids = iter(range(1_000_000))


@pytest.fixture
def cid(user: User) -> Iterator[str]:
    """A fresh id (the conftest's prefix, for its cgroup check); whatever the test left
    of the user's containers is removed and reported."""
    container_id = f"krt-{os.getpid()}-rl{next(_ids)}"
    yield container_id
    left = user.leftovers()
    user.krun_("delete", "--force", container_id, check=False)
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        assert not (ctrl / container_id).exists(), f"cgroup left: {ctrl / container_id}"
    assert not left, f"test left behind: {left}"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line: {stderr!r}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# krun spec --rootless, run, create/start/state/delete ---------------------------------------

def test_spec_rootless_then_run_with_no_flags(user: User, cid: str) -> None:
    b = user.bundle("spec-run")
    user.krun_("spec", "--rootless", cwd=b)
    config = user.edit_config(b, terminal=False,
                              args=["sh", "-c", "echo hello rootless; id -u; exit 3"])
    linux = config["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert {"type": "network"} not in linux["namespaces"]  # runc's rootless spec too
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": user.gid, "size": 1}]
    proc = user.krun_("run", cid, cwd=b, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "hello rootless\n0\n", "")
    assert user.krun_("list", "-q").stdout == ""


def test_default_rootless_spec_runs_its_shell_on_a_terminal(user: User, cid: str) -> None:
    """The config exactly as `krun spec --rootless` wrote it: `sh` on a terminal."""
    if not shutil.which("script"):
        pytest.skip("script (util-linux) is needed for a terminal")
    b = user.bundle("spec-tty")
    user.krun_("spec", "--rootless", cwd=b)
    proc = user.run("script", "-qec", f"{user.krun} run {cid}", "/dev/null",
                    input=b"echo tty-$((6*7)); exit 7\n", cwd=b)
    assert proc.returncode == 7, proc
    assert "tty-42" in proc.stdout


def test_create_start_state_delete_under_xdg_runtime_dir(user: User, cid: str) -> None:
    b = user.bundle("lifecycle")
    user.krun_("spec", "--rootless", cwd=b)
    user.edit_config(b, terminal=False, args=["sleep", "30"])
    assert f"rundir: {user.root}" in user.krun_("--version").stdout.splitlines()
    user.krun_("create", "--bundle", str(b), cid)
    assert (user.root / cid / "status").is_file()
    assert (user.root / ".krun" / f"{cid}.json").is_file()
    state = json.loads(user.krun_("state", cid).stdout)
    assert (state["status"], state["bundle"], state["owner"]) == ("created", str(b), USER)
    listed = json.loads(user.krun_("list", "--format", "json").stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "created")]
    user.krun_("start", cid)
    assert json.loads(user.krun_("state", cid).stdout)["status"] == "running"
    # The init runs as the user on the host (uid 0 only in its namespace).
    status = Path(f"/proc/{state['pid']}/status").read_text().splitlines()
    assert next(line for line in status if line.startswith("Uid:")).split()[1:] == \
        [str(user.uid)] * 4
    out = user.krun_("exec", cid, "sh", "-c", "echo exec $(id -u)").stdout
    assert out == "exec 0\n"
    user.krun_("kill", cid, "KILL")
    deadline = time.monotonic() + 10
    while json.loads(user.krun_("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, "the container did not stop"
        time.sleep(0.05)
    user.krun_("delete", cid)
    assert user.krun_("list", "-q").stdout == ""
    assert not (user.root / cid).exists()
    assert not (user.root / ".krun" / f"{cid}.json").exists()


# Permission failures: one line naming the path, nothing left --------------------------------

@pytest.fixture
def rooted(user: User) -> Iterator[Path]:
    """A root-owned directory in the user's home (0755: the user may not write it), and
    in it a root-owned 0700 one (the user may not enter it)."""
    base = HOME / "root-owned"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(mode=0o755)
    (base / "private").mkdir(mode=0o700)
    yield base
    shutil.rmtree(base)


def _permission_cases(user: User, base: Path, cid: str) -> dict[str, tuple[list[str], str]]:
    """name -> (krun argv, the one line it must print)."""
    ok = user.bundle("perm-ok")
    user.krun_("spec", "--rootless", cwd=ok)
    user.edit_config(ok, terminal=False, args=["true"])
    unreadable = user.bundle("perm-unreadable-config")
    user.krun_("spec", "--rootless", cwd=unreadable)
    (unreadable / "config.json").chmod(0)
    hidden = base / "private" / "bundle"  # in a directory the user may not search
    shutil.copytree(ok, hidden, symlinks=True)
    root_rootfs = base / "root-rootfs"  # root's 0700 rootfs
    shutil.copytree(ok, root_rootfs, symlinks=True)
    (root_rootfs / "rootfs").chmod(0o700)
    root_rootfs.chmod(0o755)
    private = base / "private"
    return {
        "unwritable --root, missing": (
            ["--root", str(base / "state"), "run", "--bundle", str(ok), cid],
            f"krun: mkdir {base}/state: permission denied"),
        "unwritable --root, existing": (
            ["--root", str(base), "run", "--bundle", str(ok), cid],
            f"krun: mkdir {base}/.krun: permission denied"),
        "create under an unwritable --root": (
            ["--root", str(base), "create", "--bundle", str(ok), cid],
            f"krun: mkdir {base}/.krun: permission denied"),
        "list of a --root it may not read": (
            ["--root", str(private), "list"],
            f"krun: open {private}/.krun: permission denied"),
        "state in a --root it may not read": (
            ["--root", str(private), "state", cid],
            f"krun: open {private}/{cid}/status: permission denied"),
        "delete --force in a --root it may not read": (
            ["--root", str(private), "delete", "--force", cid],
            f"krun: open {private}/{cid}/status: permission denied"),
        "unreadable config.json": (
            ["run", "--bundle", str(unreadable), cid],
            f"krun: open {unreadable}/config.json: permission denied"),
        "bundle it may not reach": (
            ["run", "--bundle", str(hidden), cid],
            f"krun: stat {hidden}: permission denied"),
        "rootfs it may not read": (
            ["run", "--bundle", str(root_rootfs), cid],
            f"krun: open {root_rootfs}/rootfs: permission denied"),
        "spec into a directory it may not write": (
            ["spec", "--rootless", "--bundle", str(base)],
            f"krun: open {base}/config.json: permission denied"),
    }


def test_permission_failures_name_the_path(user: User, cid: str, rooted: Path) -> None:
    failed = []
    for name, (argv, want) in _permission_cases(user, rooted, cid).items():
        proc = user.krun_(*argv, check=False)
        try:
            assert proc.returncode == 1, proc.returncode
            assert one_line(proc.stderr) == want
            assert proc.stdout == ""
        except AssertionError as e:
            failed.append(f"{name}: {e}: {proc.stderr!r}")
    assert not failed, "\n".join(failed)
    # Nothing made in the directories it was refused, nothing left in its own root.
    assert sorted(p.name for p in rooted.iterdir()) == ["private", "root-rootfs"]
    assert [p.name for p in (rooted / "private").iterdir()] == ["bundle"]
    assert user.krun_("list", "-q").stdout == ""


# Kontain, rootless: /dev/kvm through group kvm ----------------------------------------------

class KvmAccess:
    """Sets /dev/kvm's group and mode and the user's membership of group kvm; the
    original owner, group and mode are in STATE before anything changes."""

    def __init__(self, user: User) -> None:
        self.user = user

    def set(self, group: str, mode: int, member: bool) -> None:
        state = _load_state()
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            state["kvm_group_created"] = True  # written down before it is made
            _save_state(state)
            subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
            gid = grp.getgrnam(group).gr_gid
        os.chown(KVM, 0, gid)
        os.chmod(KVM, mode)
        if group != "root":
            flag = "--add" if member else "--delete"
            subprocess.run(["gpasswd", flag, USER, group], capture_output=True, check=False)


@pytest.fixture
def kvm(user: User) -> Iterator[KvmAccess]:
    if not KVM.exists():
        pytest.skip("no /dev/kvm on this machine: Kontain needs KVM")
    if not (PAYLOADS / "hello.km").is_file():
        pytest.skip("km_payloads/hello.km is not built (scripts/build-km)")
    try:
        yield KvmAccess(user)
    finally:
        state = _load_state()
        subprocess.run(["gpasswd", "--delete", USER, KVM_GROUP], capture_output=True,
                       check=False)
        _restore_kvm(state)
        state.pop("kvm_group_created", None)
        _save_state(state)


def _kontain_bundle(user: User, name: str) -> Path:
    b = user.bundle(name, busybox=False)
    assert user.run("cp", str(PAYLOADS / "hello.km"), str(b / "rootfs/")).returncode == 0
    user.krun_("spec", "--rootless", "--kontain", "--payload", "/hello.km", cwd=b)
    config = json.loads((b / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"] and "kontain" in config
    return b


@pytest.mark.kvm
def test_kontain_rootless_with_group_kvm(user: User, kvm: KvmAccess, cid: str) -> None:
    kvm.set(KVM_GROUP, 0o660, member=True)
    b = _kontain_bundle(user, "kontain-ok")
    proc = user.krun_("run", cid, cwd=b, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "Hello from Kontain!\n", "")
    assert user.krun_("list", "-q").stdout == ""


@pytest.mark.kvm
def test_kontain_rootless_with_subordinate_ids_keeps_group_kvm(user: User, kvm: KvmAccess,
                                                              cid: str) -> None:
    """With the subordinate ids mapped too (newuidmap/newgidmap), libcrun would set the
    process's groups and drop kvm: krun keeps the user's groups for KM."""
    kvm.set(KVM_GROUP, 0o660, member=True)
    b = _kontain_bundle(user, "kontain-subids")
    path = b / "config.json"
    config = json.loads(path.read_text())
    for key, host in (("uidMappings", user.uid), ("gidMappings", user.gid)):
        config["linux"][key] = [{"containerID": 0, "hostID": host, "size": 1},
                                {"containerID": 1, "hostID": user.subid_start,
                                 "size": SUBIDS}]
    path.write_text(json.dumps(config))
    proc = user.krun_("run", cid, cwd=b, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "Hello from Kontain!\n", "")
    assert user.krun_("list", "-q").stdout == ""


@pytest.mark.kvm
@pytest.mark.parametrize("group, mode, member, hint", [
    (KVM_GROUP, 0o660, False,
     f"add {USER} to group kvm, which may open it, then log in again"),
    ("root", 0o600, False,
     f"it is crw------- root:root: as root, chgrp kvm /dev/kvm && chmod 0660 /dev/kvm, "
     f"then add {USER} to group kvm"),
], ids=["not-in-group-kvm", "device-0600"])
def test_kontain_rootless_without_kvm_access_is_one_line(
        user: User, kvm: KvmAccess, cid: str, group: str, mode: int, member: bool,
        hint: str) -> None:
    kvm.set(group, mode, member)
    b = _kontain_bundle(user, "kontain-denied")
    for verb in ("run", "create"):
        proc = user.krun_(verb, cid, cwd=b, check=False)
        assert proc.returncode == 1, proc
        assert one_line(proc.stderr) == f"krun: open /dev/kvm: permission denied ({hint})"
        assert proc.stdout == ""
        assert user.leftovers() == []


# podman, rootless, with krun as its runtime (and crun beside it) ----------------------------

@pytest.fixture(scope="module")
def podman_image(user: User) -> str:
    """The busybox image (tests/engines/images.py) in the user's own podman storage."""
    if not os.access(PODMAN, os.X_OK):
        pytest.skip(f"{PODMAN} missing: apt-get install podman")
    from engines import images

    layer = HOME / "busybox-layer.tar"
    layer.write_bytes(images.busybox_layer())
    os.chown(layer, user.uid, user.gid)
    try:
        changes = images.import_changes(["sh"])
        proc = user.run(PODMAN, *PODMAN_FLAGS, "import", *changes, str(layer), IMAGE,
                        timeout=120)
        assert proc.returncode == 0, proc.stderr
    finally:
        layer.unlink()
    return IMAGE


# No slirp4netns or pasta here: podman rootless could not make a network namespace
# with a network; `--network none` gives the container its own, empty one.
def _podman(user: User, *args: str) -> subprocess.CompletedProcess[str]:
    return user.run(PODMAN, *PODMAN_FLAGS, *args, timeout=120)


@pytest.mark.parametrize("runtime", ["krun", "crun"])
def test_podman_rootless_runs_busybox(user: User, podman_image: str, runtime: str) -> None:
    binary = krun_binary() if runtime == "krun" else CRUN
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} missing")
    proc = _podman(user, "--runtime", binary, "run", "--rm", "--network", "none",
                   podman_image, "sh", "-c", "echo hi; id -u; exit 5")
    assert (proc.returncode, proc.stdout) == (5, "hi\n0\n"), proc.stderr
    assert user.leftovers() == []


def test_podman_rootless_container_is_in_the_users_krun_root(user: User,
                                                             podman_image: str) -> None:
    """podman gives krun no --root: in podman's user namespace krun is root there, and
    its state goes to the user's $XDG_RUNTIME_DIR/krun, where the user's krun sees it."""
    name = f"krt-{os.getpid()}-podman"
    proc = _podman(user, "--runtime", krun_binary(), "run", "-d", "--name", name,
                   "--network", "none", podman_image, "sleep", "60")
    try:
        assert proc.returncode == 0, proc.stderr
        full_id = proc.stdout.strip()
        assert user.krun_("list", "-q").stdout == f"{full_id}\n"
        assert json.loads(user.krun_("state", full_id).stdout)["status"] == "running"
    finally:
        _podman(user, "rm", "-f", "-t", "0", name)
    assert user.krun_("list", "-q").stdout == ""
    assert user.leftovers() == []

