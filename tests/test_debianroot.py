"""tests/debianroot.py: a debootstrapped Debian 12 root that OCI containers run inside.

The risk it settles: libcrun (crun, krun) pivot_roots into each container, and
pivot_root/MS_PRIVATE on "/" fail with EINVAL in a plain chroot. So Debian's own crun is
apt-installed into the root, runs a busybox container with cgroupfs limits and a Kontain
container under KM with /dev/kvm, and is purged again, and the snapshot diff of that
install/purge pair must hold nothing but APT_RESIDUE. Skipped, with the reason, when the
root cannot be built or apt cannot reach the Debian mirror.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from debianroot import (
    APT_RESIDUE,
    DebianRoot,
    RootCommandError,
    debian_root,
    mirror_problem,
    mounts_under,
    tarball_path,
)

REPO = Path(__file__).resolve().parent.parent
KRUN_CACHE = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun"))
KM = Path("/opt/kontain/bin/km")
HELLO_KM = REPO / "km_payloads" / "hello.km"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# crun 1.8.1 `delete --force ..` removes the parent of its state root: only ids that
# match this ever reach crun.
SAFE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
CGROUP = Path("/sys/fs/cgroup")


def _host_prerequisites() -> str | None:
    if os.environ.get("KRUN_SKIP_DEBIAN_ROOT") == "1":
        return "KRUN_SKIP_DEBIAN_ROOT=1"
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot, mknod)"
    for tool in ("unshare", "chroot", "mount", "tar"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="module")
def mirror() -> str | None:
    """Why the Debian mirror cannot be used, or None."""
    return mirror_problem()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, mirror: str | None
         ) -> Iterator[DebianRoot]:
    if problem := _host_prerequisites():
        pytest.skip(problem)
    if not tarball_path().is_file() and mirror:
        pytest.skip(f"no cached Debian root and debootstrap cannot fetch one: {mirror}")
    start = time.monotonic()
    with debian_root(tmp_path_factory.mktemp("droot")) as r:
        print(f"debian root ready in {time.monotonic() - start:.1f}s: {r.path}")
        yield r
    assert not r.path.exists()


def _cgroups_named(name: str) -> list[str]:
    return [str(p) for p in CGROUP.glob(f"*/{name}")] + \
        [str(p) for p in CGROUP.glob(name) if p.is_dir()]


def _crun_bundle(root: DebianRoot, bundle: str, args: list[str],
                 edit: Any = None) -> None:
    """`crun spec` in the root's bundle dir, then args and edits from here."""
    root.run(["crun", "spec"], cwd=bundle)
    cfg_path = root.host_path(f"{bundle}/config.json")
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    if edit:
        edit(cfg)
    cfg_path.write_text(json.dumps(cfg, indent=2))


def _crun_run(root: DebianRoot, bundle: str, cid: str) -> subprocess.CompletedProcess[str]:
    assert SAFE_ID.match(cid), cid
    try:
        return root.run(["crun", "--cgroup-manager", "cgroupfs", "run", "--bundle", bundle,
                         cid], check=False, timeout=60)
    finally:
        # Every run() is its own namespace: the state under the root's /run is already
        # gone, and so must be the cgroups crun made on the host. Any that are left are
        # removed (rmdir: only an empty cgroup goes) and reported.
        left = _cgroups_named(cid)
        for path in sorted(left, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        assert not left, f"cgroups left behind: {left}"


def _busybox() -> Path:
    for path in (KRUN_CACHE / "rootfs" / "busybox" / "bin" / "busybox", Path("/bin/busybox")):
        # A dynamic binary names its loader (PT_INTERP) in its first page.
        if path.is_file() and b"/ld-linux" not in path.read_bytes()[:4096]:
            return path
    pytest.skip("no static busybox (install busybox-static or run scripts/setup)")


def test_crun_runs_containers_inside_the_root(root: DebianRoot, mirror: str | None) -> None:
    if mirror:
        pytest.skip(f"apt-get needs the Debian mirror: {mirror}")
    # Lists baked into the cached root go stale; a security update would 404 them.
    root.run("apt-get -q update", env=APT_ENV, timeout=300)
    before = root.snapshot()
    root.run("apt-get -q install -y crun", env=APT_ENV, timeout=300)

    cid = f"droot-{os.getpid()}"
    root.copy_in(_busybox(), "/root/bb/rootfs/bin/busybox")
    root.run(["mkdir", "-p", "/root/bb/rootfs/proc", "/root/bb/rootfs/sys",
              "/root/bb/rootfs/dev", "/root/bb/rootfs/tmp"])

    def limits(cfg: dict[str, Any]) -> None:
        cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 32}}
        cfg["linux"]["cgroupsPath"] = f"/{cid}"

    # A v1 memory file in hybrid mode, else the unified one: either way the limit set in
    # config.json must be the one the container's cgroup has.
    _crun_bundle(root, "/root/bb", ["/bin/busybox", "sh", "-c",
                 "echo hello from busybox; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
                 " 2>/dev/null || cat /sys/fs/cgroup/memory.max; exit 3"], limits)
    proc = _crun_run(root, "/root/bb", cid)
    assert proc.returncode == 3, proc
    assert proc.stdout.split() == ["hello", "from", "busybox", str(64 << 20)], proc

    if KM.is_file() and HELLO_KM.is_file() and Path("/dev/kvm").exists():
        root.copy_in(KM, str(KM))
        root.copy_in(HELLO_KM, "/root/kb/rootfs/hello.km")
        kvm = os.stat("/dev/kvm").st_rdev
        major, minor = os.major(kvm), os.minor(kvm)

        def kontain(cfg: dict[str, Any]) -> None:
            # What krun does for a Kontain container: KM bind-mounted read-only,
            # /dev/kvm made and allowed.
            cfg["mounts"].append({"destination": str(KM), "type": "bind",
                                  "source": str(KM), "options": ["bind", "ro"]})
            cfg["linux"]["devices"] = [{"path": "/dev/kvm", "type": "c", "major": major,
                                        "minor": minor, "fileMode": 0o666}]
            cfg["linux"].setdefault("resources", {}).setdefault("devices", []).append(
                {"allow": True, "type": "c", "major": major, "minor": minor,
                 "access": "rwm"})

        _crun_bundle(root, "/root/kb", [str(KM), "/hello.km"], kontain)
        proc = _crun_run(root, "/root/kb", f"{cid}-km")
        assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc
        root.run(["rm", "-rf", "/root/kb", "/opt/kontain"])

    root.run(["rm", "-rf", "/root/bb"])
    root.run("apt-get -q purge -y crun && apt-get -q autoremove --purge -y",
             env=APT_ENV, timeout=300)
    found = root.diff(before, root.snapshot())
    print("apt-get install + purge + autoremove --purge left:\n  " + "\n  ".join(found))
    assert found, "apt writes its logs: an empty diff means snapshot() saw nothing"
    assert root.diff(before, root.snapshot(), ignore=APT_RESIDUE) == []


@pytest.mark.skipif(not Path("/dev/kvm").exists(), reason="no /dev/kvm on this host")
def test_dev_kvm_opens_inside(root: DebianRoot) -> None:
    # dash's <> opens read-write, as KM does.
    assert root.run("exec 3<>/dev/kvm && echo opened").stdout == "opened\n"
    if KM.is_file() and HELLO_KM.is_file():
        proc = root.run(["/run/host/km", "/run/host/hello.km"],
                        binds={"km": KM, "hello.km": HELLO_KM})
        assert proc.stdout == "Hello from Kontain!\n"


def test_snapshot_diff_round_trip(root: DebianRoot, tmp_path: Path) -> None:
    motd = root.host_path("/etc/motd").read_bytes()
    before = root.snapshot()
    root.run("echo new > /root/new && chmod 600 /etc/hostname && rm /etc/motd"
             " && ln -s /nowhere /root/link && mkdir /root/dir"
             " && echo changed >> /etc/issue")
    found = root.diff(before, root.snapshot())
    motd_size, issue_size = before["/etc/motd"][4], before["/etc/issue"][4]
    hostname_mode = before["/etc/hostname"][1]
    assert found == [
        f"~ /etc/hostname (mode {hostname_mode:04o} -> 0600)",
        f"~ /etc/issue (size {issue_size} -> {issue_size + 8}, content)",
        f"- /etc/motd (file 0644 0:0 {motd_size})",
        "+ /root/dir (dir 0755 0:0)",
        "+ /root/link (link 0777 0:0 -> /nowhere)",
        "+ /root/new (file 0644 0:0 4)",
    ], found
    assert root.diff(before, root.snapshot(), ignore=["/root/*", "/etc/*"]) == []

    # Undo it all: copy_in brings the file back root-owned, whoever owns the source.
    saved = tmp_path / "motd"
    saved.write_bytes(motd)
    saved.chmod(0o644)
    root.copy_in(saved, "/etc/motd")
    root.run(f"rm -r /root/new /root/link /root/dir && chmod {hostname_mode:o} /etc/hostname"
             " && sed -i '$d' /etc/issue")
    assert root.diff(before, root.snapshot()) == []


def test_paths_stay_inside_the_root(root: DebianRoot) -> None:
    # /etc/localtime is an absolute symlink: resolved in the root, not on the host.
    assert root.host_path("/etc/localtime").is_relative_to(root.path)
    assert root.host_path("/../../etc/passwd") == root.path / "etc" / "passwd"
    # A mount target that is a symlink would aim the host-side mount at a host path.
    run_dir = root.host_path("/run")
    os.rename(run_dir, run_dir.with_name("run.real"))
    try:
        os.symlink("/tmp", run_dir)
        with pytest.raises(RuntimeError, match="symlink"):
            root.run("true")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir)
        os.rename(run_dir.with_name("run.real"), run_dir)
    root.run("true")


def test_run_leaves_nothing_behind(root: DebianRoot) -> None:
    # A background process dies with the command's namespace, and so do the mounts.
    root.run("sleep 4242 >/dev/null 2>&1 &")
    with pytest.raises(subprocess.TimeoutExpired):
        root.run(["sleep", "4343"], timeout=1)
    time.sleep(0.2)
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
            and _cmdline(p) in (b"sleep\x004242\x00", b"sleep\x004343\x00")]
    assert not left, f"processes outlived run(): {left}"
    assert mounts_under(root.path) == []
    with pytest.raises(RootCommandError, match="exit status 7"):
        root.run("echo to-stderr >&2; exit 7")
    assert root.run("exit 7", check=False).returncode == 7
    # Nothing of the caller's environment gets in.
    assert "PYTEST" not in root.run("env").stdout


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
