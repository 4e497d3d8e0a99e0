"""`krun km PAYLOAD [ARGS...]` on real Kontain containers: output, exit status, docker's
options, detach and delete, signals, every bad input, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Krun, krun_binary

pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                       reason="no /dev/kvm on this machine: Kontain needs KVM"),
]

PAYLOADS = REPO / "km_payloads"
HELLO = str(PAYLOADS / "hello.km")
CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module", autouse=True)
def payloads_built() -> None:
    if not Path("/opt/kontain/bin/km").exists() or not (PAYLOADS / "hello.km").exists():
        pytest.fail("the host KM or the payloads are missing: run scripts/setup")


def _cgroups(cid: str) -> list[str]:
    dirs = [CGROUP / cid] + [p / cid for p in CGROUP.iterdir() if p.is_dir()]
    return [str(d) for d in dirs if d.is_dir()]


def _temp_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("krun-km-*")}


def leftovers(krun: Krun, cid: str) -> list[str]:
    """Everything a krun km container makes, that is still there."""
    found = [str(p) for p in (krun.root / cid, krun.root / ".krun" / f"{cid}.json",
                              krun.root / ".krun" / "km" / cid) if os.path.lexists(p)]
    found += _cgroups(cid)
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if str(krun.root) in line.split()[4]]
    return found


@pytest.fixture(autouse=True)
def no_bundles_left(krun: Krun) -> Iterator[None]:
    temp_before = _temp_dirs()
    yield
    bundles = krun.root / ".krun" / "km"
    left = sorted(p.name for p in bundles.iterdir()) if bundles.exists() else []
    assert left == [], f"krun km bundles left behind: {left}"
    assert _temp_dirs() - temp_before == set(), "temporary directories left behind"


def km(krun: Krun, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", False)
    return krun("km", *args, cwd=PAYLOADS, **kw)  # type: ignore[arg-type]


def test_hello(krun: Krun, cid: str) -> None:
    proc = km(krun, "--name", cid, "hello.km")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "Hello from Kontain!\n", "")
    assert leftovers(krun, cid) == []
    # Any path to the payload; the default id is generated.
    proc = km(krun, HELLO)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n")
    assert krun("list", "-q").stdout == ""


@pytest.mark.parametrize("code", ["0", "3", "255"])
def test_exit_status_is_the_payloads(krun: Krun, cid: str, code: str) -> None:
    assert km(krun, "--name", cid, "exit.km", code).returncode == int(code)
    assert leftovers(krun, cid) == []


def test_signal_death_is_128_plus_n(krun: Krun, cid: str) -> None:
    proc = km(krun, "--name", cid, "sigill.km")
    assert proc.returncode == 128 + signal.SIGILL
    assert leftovers(krun, cid) == []


def test_args_pass_through_even_with_dashes(krun: Krun, cid: str) -> None:
    args = ["-x", "--y", "a b", "-e", "K=V", "--", "-d", "--name"]
    proc = km(krun, "--name", cid, "args.km", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "argv[0]=/args.km"
    assert lines[1:1 + len(args)] == [f"argv[{i}]={a}" for i, a in enumerate(args, 1)]
    assert "env=K=V" not in lines, "-e after PAYLOAD is the payload's, not krun km's"


def test_env_reaches_the_payload(krun: Krun, cid: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\n\nFROM_FILE=1\nOVERRIDDEN=file\nFROM_HOST\n")
    proc = km(krun, "--env-file", str(env_file), "-e", "GREETING=hi there", "-e",
              "OVERRIDDEN=flag", "-e", "FROM_HOST", "-e", "NOT_ON_HOST", "--name", cid,
              "args.km", env={**os.environ, "FROM_HOST": "host-value"})
    assert proc.returncode == 0, proc.stderr
    env = [line[4:] for line in proc.stdout.splitlines() if line.startswith("env=")]
    assert {"GREETING=hi there", "FROM_FILE=1", "OVERRIDDEN=flag",
            "FROM_HOST=host-value", f"HOSTNAME={cid}"} <= set(env)
    assert "OVERRIDDEN=file" not in env and not any(e.startswith("NOT_ON_HOST") for e in env)
    assert any(e.startswith("PATH=") for e in env)


def test_volume_and_workdir(krun: Krun, cid: str, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    # files.km writes a relative path: it lands in the working directory, the volume.
    proc = km(krun, "-v", f"{vol}:/data", "-w", "/data", "--name", cid, "files.km", "out.txt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "krun km_payloads files test\n"
    assert (vol / "out.txt").read_text() == "krun km_payloads files test\n"
    # A working directory that does not exist is made (in the throwaway rootfs).
    proc = km(krun, "-w", "/new/dir", "--name", cid, "files.km", "here")
    assert proc.returncode == 0, proc.stderr
    # :ro is read-only.
    proc = km(krun, "-v", f"{vol}:/data:ro", "--name", cid, "files.km", "/data/x")
    assert proc.returncode == 1 and "EROFS" in proc.stderr
    assert not (vol / "x").exists()
    assert leftovers(krun, cid) == []


def test_rootfs_dir_is_copied_and_never_changed(krun: Krun, cid: str, tmp_path: Path) -> None:
    src = tmp_path / "app"
    (src / "bin").mkdir(parents=True)
    shutil.copy(PAYLOADS / "dyn.km", src / "dyn.km")      # needs its interpreter:
    shutil.copy(PAYLOADS / "ld-krun.so", src / "ld-krun.so")  # only a rootfs has one
    shutil.copy(PAYLOADS / "args.km", src / "bin" / "args.km")
    (src / "hostlink").symlink_to("/etc")
    os.mkfifo(src / "fifo")
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    proc = km(krun, "--rootfs", str(src), "--name", cid, "/dyn.km")
    assert (proc.returncode, proc.stdout) == (0, "hello from a dynamic payload\n"), proc.stderr
    proc = km(krun, "--rootfs", str(src), "--name", cid, "args.km", "x")  # on PATH
    assert proc.stdout.splitlines()[:2] == ["argv[0]=/bin/args.km", "argv[1]=x"]
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before
    # The default rootfs holds the payload only: dyn.km's interpreter is missing.
    proc = km(krun, "--name", cid, "dyn.km")
    assert proc.returncode == 126 and "its interpreter /ld-krun.so" in proc.stderr
    assert leftovers(krun, cid) == []


def test_image(krun: Krun, cid: str, tmp_path: Path) -> None:
    image = tmp_path / "args.tar"
    built = subprocess.run([krun_binary(), "image", "build", str(PAYLOADS / "args.km"),
                            "-t", "args:1", "-o", str(image), "--cmd", "one two", "-e",
                            "IMAGE_VAR=yes", "-w", "/work", "--add",
                            f"{PAYLOADS / 'hello.km'}:/hello.km"],
                           capture_output=True, text=True, timeout=60)
    if built.returncode != 0 and "image" in built.stderr and "build" not in built.stderr:
        pytest.skip(f"krun image build is not available: {built.stderr.strip()}")
    assert built.returncode == 0, built.stderr
    proc = km(krun, "--image", str(image), "--name", cid)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["argv[0]=/args.km", "argv[1]=one", "argv[2]=two"]
    assert "env=IMAGE_VAR=yes" in lines
    # Words after the options replace Cmd; -e overrides the image's Env.
    proc = km(krun, "--image", str(image), "-e", "IMAGE_VAR=no", "--name", cid, "x", "-y")
    assert proc.stdout.splitlines()[:3] == ["argv[0]=/args.km", "argv[1]=x", "argv[2]=-y"]
    assert "env=IMAGE_VAR=no" in proc.stdout.splitlines()
    proc = km(krun, "--image", str(image), "--entrypoint", "/hello.km", "--name", cid)
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n")
    assert leftovers(krun, cid) == []


def _cgroup_value(cid: str, v1: tuple[str, str], v2: str) -> str:
    path = CGROUP / v1[0] / cid / v1[1]
    if not path.exists():
        path = CGROUP / cid / v2
    return path.read_text().strip()


def test_detach_memory_cpus_exec_and_delete(krun: Krun, cid: str) -> None:
    proc = km(krun, "-d", "--memory", "64m", "--cpus", "1.5", "--name", cid, "sleeper.km")
    assert (proc.returncode, proc.stdout) == (0, cid + "\n"), proc.stderr
    assert krun.status(cid) == "running"
    limit = _cgroup_value(cid, ("memory", "memory.limit_in_bytes"), "memory.max")
    assert limit == str(64 << 20)
    quota = _cgroup_value(cid, ("cpu", "cpu.cfs_quota_us"), "cpu.max")
    if " " in quota:  # cgroup v2: "QUOTA PERIOD"
        assert quota == "150000 100000"
    else:
        assert quota == "150000"
        assert _cgroup_value(cid, ("cpu", "cpu.cfs_period_us"), "") == "100000"
    bundle = krun.root / ".krun" / "km" / cid
    assert krun.state(cid)["bundle"] == str(bundle)
    deadline = time.monotonic() + 10
    while "ready" not in (bundle / "output.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (bundle / "output.log").read_text() == "ready\n"
    # An exec runs under KM like any in a Kontain container.
    assert krun("exec", cid, "/sleeper.km", "0").stdout == "ready\n"
    krun("delete", "-f", cid)
    assert leftovers(krun, cid) == []


def test_detached_payload_that_exited_is_removed_by_plain_delete(krun: Krun, cid: str) -> None:
    assert km(krun, "-d", "--name", cid, "exit.km", "4").returncode == 0
    krun.wait_status(cid, "stopped")
    krun("delete", cid)
    assert leftovers(krun, cid) == []


def test_name_in_use_leaves_the_other_container_alone(krun: Krun, cid: str) -> None:
    assert km(krun, "-d", "--name", cid, "sleeper.km").returncode == 0
    proc = km(krun, "--name", cid, "hello.km")
    assert proc.returncode == 125 and f'container "{cid}" already exists' in proc.stderr
    assert krun.status(cid) == "running"
    assert (krun.root / ".krun" / "km" / cid / "config.json").exists()
    krun("delete", "-f", cid)
    assert leftovers(krun, cid) == []


def _krun_links() -> list[str]:
    out = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in out
            if line.split(":")[0].strip().startswith("kr")]


def _nat() -> str:
    return subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True,
                          text=True).stdout


def _leases_of(root: Path) -> list[str]:
    path = Path("/run/krun/.krun/network.json")
    leases = json.loads(path.read_text() or "{}").get("leases", {}) if path.exists() else {}
    return [ip for ip, (lroot, _) in leases.items() if lroot == str(root)]


def test_bridge_with_published_port(krun: Krun, cid: str) -> None:
    """No payload listens: the address, the veth and the NAT rule show the wiring."""
    links_before = set(_krun_links())
    proc = km(krun, "-d", "--network", "bridge", "-p", "18093:80/tcp", "--name", cid,
              "sleeper.km")
    assert proc.returncode == 0, proc.stderr
    address = krun.state(cid)["annotations"]["org.krun.network.address"]
    assert address.startswith("10.213.0.")
    assert f"krun:{cid}" in _nat() and "18093" in _nat()
    assert set(_krun_links()) - links_before, "a veth for the container"
    assert _leases_of(krun.root) == [address]
    krun("delete", "-f", cid)
    assert f"krun:{cid}" not in _nat()
    assert _leases_of(krun.root) == []
    deadline = time.monotonic() + 5
    while set(_krun_links()) - links_before - {"krun0"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(_krun_links()) - links_before - {"krun0"} == set()
    assert leftovers(krun, cid) == []


def test_publish_implies_bridge_and_foreground_bridge_cleans_up(krun: Krun, cid: str) -> None:
    proc = km(krun, "-p", "18094:80", "--name", cid, "hello.km")
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr
    assert f"krun:{cid}" not in _nat() and _leases_of(krun.root) == []
    proc = km(krun, "--network", "host", "--name", cid, "uname.km")
    assert proc.returncode == 0 and proc.stdout.strip().endswith(".kontain.KVM")
    assert leftovers(krun, cid) == []


def test_tty(krun: Krun, cid: str) -> None:
    proc = km(krun, "-t", "--name", cid, "hello.km")
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\r\n"), proc.stderr
    assert km(krun, "-t", "--name", cid, "exit.km", "6").returncode == 6
    # -it on a terminal: the terminal goes raw for the payload and comes back as it was.
    argv = " ".join(krun.argv("km", "-it", "--name", cid, str(PAYLOADS / "uname.km")))
    out = subprocess.run(["script", "-qec", f"{argv}; stty -a | grep -o -- '-\\?icanon'",
                          "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=60).stdout
    assert b".kontain.KVM\r\n" in out and out.rstrip().endswith(b"icanon")
    assert not out.rstrip().endswith(b"-icanon"), "the terminal is cooked again"
    assert leftovers(krun, cid) == []


def test_interactive_stdin(krun: Krun, cid: str) -> None:
    """No payload reads stdin (one that echoes it would be needed to see the bytes
    arrive): -i keeps it attached without hanging or breaking the run."""
    proc = km(krun, "-i", "--name", cid, "hello.km", input=b"some input\n")
    assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n")
    proc = km(krun, "-i", "-t", "--name", cid, "hello.km", input=b"typed\n")
    assert proc.returncode == 0 and "Hello from Kontain!" in proc.stdout
    assert leftovers(krun, cid) == []


def _start(krun: Krun, cid: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(krun.argv("km", "--name", cid, *args), cwd=PAYLOADS,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_remove_everything(krun: Krun, cid: str, sig: int,
                                              code: int) -> None:
    proc = _start(krun, cid, "sleeper.km")
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert leftovers(krun, cid) == []


def test_signal_reaches_the_payload(krun: Krun, cid: str) -> None:
    proc = _start(krun, cid, "sigterm.km")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (0, b"got SIGTERM\n")
    assert leftovers(krun, cid) == []


def test_second_interrupt_kills_a_container_that_does_not_react(krun: Krun, cid: str) -> None:
    proc = _start(krun, cid, "sleeper.km")
    krun("pause", cid)  # frozen: the first SIGINT cannot end it
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None and krun.status(cid) == "paused"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 137
    assert leftovers(krun, cid) == []


def test_early_signals_never_hang_or_leak(krun: Krun, cid: str) -> None:
    """SIGTERM at every stage of the setup: before the bundle, during the create,
    before krun-init runs (a signal sent through libcrun then would be lost)."""
    for i in range(12):
        name = f"{cid}-{i}"
        proc = subprocess.Popen(krun.argv("km", "--name", name, "sleeper.km"), cwd=PAYLOADS,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(0.03 * i)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode in (143, -signal.SIGTERM), (i, proc.returncode, err)
        assert leftovers(krun, name) == [], i


def test_killed_supervisor_still_cleans_up(krun: Krun, cid: str) -> None:
    """SIGKILL of krun km: its runner gets SIGTERM (PR_SET_PDEATHSIG), passes it to the
    container, and removes everything when the payload has gone."""
    proc = _start(krun, cid, "sleeper.km")
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while leftovers(krun, cid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(krun, cid) == []


def test_stale_bundle_of_a_dead_krun_km_is_collected(krun: Krun, cid: str) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = krun.root / ".krun" / "km" / f"{cid}-stale"
    stale.mkdir(parents=True)
    (stale / ".krun-km").write_text(json.dumps({"id": stale.name, "pid": dead.pid,
                                                "start": 1}))
    (stale / "rootfs").mkdir()
    assert km(krun, "--name", cid, "hello.km").returncode == 0
    assert not stale.exists()


@pytest.mark.parametrize("args,code,message", [
    (["nope.km"], 127, "payload nope.km: no such file or directory"),
    (["."], 126, "is a directory"),
    (["/bin/true"], 126, "its interpreter /lib64/ld-linux-x86-64.so.2: no such file"),
    (["script.sh"], 126, "its interpreter /args.km: no such file"),
    (["Makefile"], 126, "not an ELF file or a script"),
    (["--rootfs", str(PAYLOADS), "no-such-payload"], 127, "executable file not found in $PATH"),
    (["--rootfs", "/", "hello.km"], 125, "it holds krun's state root"),
    (["--rootfs", "/sys/fs", "hello.km"], 125, "is a mount point"),
    ([], 2, "no PAYLOAD given"),
    (["-v", "/no/such/dir:/data", "hello.km"], 2, "/no/such/dir: no such file or directory"),
    (["-v", "/tmp:/data/../../etc", "hello.km"], 2, "must not contain `..`"),
    (["-v", "/tmp:data", "hello.km"], 2, "must be an absolute path"),
    (["-v", "/tmp", "hello.km"], 2, "expected HOST:CONTAINER[:ro]"),
    (["-v", "/tmp:/data:rx", "hello.km"], 2, "the mode must be ro or rw"),
    (["-v", "/tmp:/proc/x", "hello.km"], 2, "taken by the container's /proc"),
    (["-v", "/tmp:/opt", "hello.km"], 2, "taken by the container's /opt/kontain/bin/km"),
    (["-v", "/tmp:/", "hello.km"], 2, "cannot be the container's root"),
    (["-v", "/tmp:/a", "-v", "/var:/a", "hello.km"], 125, "two volumes at /a"),
    (["--memory", "lots", "hello.km"], 2, "'lots' is not a size"),
    (["--memory", "1k", "hello.km"], 2, "below the minimum of 6m"),
    (["--cpus", "0", "hello.km"], 2, "the range is 0.01 to"),
    (["--cpus", "many", "hello.km"], 2, "'many' is not a number"),
    (["-p", "80", "hello.km"], 2, "expected HOST_PORT:CONTAINER_PORT[/tcp|udp]"),
    (["-p", "80:70000", "hello.km"], 2, "ports must be 1-65535"),
    (["-p", "80:80/sctp", "hello.km"], 2, "expected HOST_PORT:CONTAINER_PORT"),
    (["--network", "host", "-p", "80:80", "hello.km"], 125, "it needs --network bridge"),
    (["--network", "overlay", "hello.km"], 2, "'overlay' is not one of"),
    (["-d", "-t", "hello.km"], 125, "-t with -d"),
    (["-d", "--rm", "hello.km"], 125, "--rm with -d"),
    (["-e", "=x", "hello.km"], 2, "the name is empty"),
    (["--name", "../x", "hello.km"], 2, "only letters, digits"),
    (["--name", ".krun", "hello.km"], 2, "must not start with `.`"),
    (["--rootfs", "/no/such/dir", "x.km"], 125, "--rootfs /no/such/dir: no such file"),
    (["--image", "/no/such.tar"], 125, "--image /no/such.tar: no such file"),
    (["--entrypoint", "/x", "hello.km"], 125, "--entrypoint goes with --image"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input(krun: Krun, cid: str, args: list[str], code: int, message: str) -> None:
    proc = km(krun, *(["--name", cid] if "--name" not in args else []), *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
    assert leftovers(krun, cid) == []


def test_a_create_error_in_the_runner_leaves_nothing(krun: Krun, cid: str) -> None:
    proc = krun("--kontain", "never", "km", "--name", cid, HELLO, check=False)
    assert proc.returncode == 125 and "--kontain=never" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert leftovers(krun, cid) == []


def test_help_fits_a_screen(krun: Krun) -> None:
    proc = krun("km", "--help")
    assert proc.returncode == 0 and "krun km hello.km" in proc.stdout
    assert len(proc.stdout.splitlines()) <= 50


def test_bundle_removal_refuses_what_is_not_its_own(tmp_path: Path) -> None:
    """The undo removes `<root>/.krun/km/<id>` only when it is krun km's bundle of that
    id: a marker naming another id, a link, or a mount below it are left alone."""
    from krun.errors import KrunError
    from krun.toolkit import kmbundle

    root = tmp_path / "root"
    base = root / ".krun" / "km"
    base.mkdir(parents=True)
    other = base / "a"
    other.mkdir()
    (other / ".krun-km").write_text(json.dumps({"id": "b"}))
    (other / "keep").write_text("x")
    with pytest.raises(KrunError, match="does not name"):
        kmbundle.remove_bundle(str(root), "a")
    assert (other / "keep").exists()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".krun-km").write_text(json.dumps({"id": "l"}))
    (base / "l").symlink_to(target)
    with pytest.raises(KrunError, match="not a directory"):
        kmbundle.remove_bundle(str(root), "l")
    assert (target / ".krun-km").exists()
    mounted = base / "m"
    (mounted / "rootfs").mkdir(parents=True)
    (mounted / ".krun-km").write_text(json.dumps({"id": "m"}))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted / "rootfs")], check=True)
    try:
        with pytest.raises(KrunError, match="still mounted"):
            kmbundle.remove_bundle(str(root), "m")
        assert (mounted / ".krun-km").exists()
    finally:
        subprocess.run(["umount", str(mounted / "rootfs")], check=True)
    kmbundle.remove_bundle(str(root), "m")
    assert not mounted.exists()
    with pytest.raises(KrunError, match="invalid container id"):
        kmbundle.remove_bundle(str(root), "../x")
