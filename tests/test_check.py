"""`krun check` on this host, through the installed krun: the real binding, device, KM
and engines' files. Failures are made for real, never mocked: a private host config
($KRUN_CONFIG), a private mount namespace that hides /dev/kvm or the interpreter's
read-only mount, an unprivileged user, a --root that cannot be one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Krun, krun_binary

OK, FAIL = "\u2714", "\u2718"
KM = "/opt/kontain/bin/km"
VENV_BIN = "/usr/local/lib/krun/venv/bin"
NOBODY = 65534
SUMMARY_OK = "krun can run containers"
NAMES = {"kernel", "cgroups", "interpreter", "libcrun binding", "state root", "host config",
         "user namespaces", "subuid/subgid", "Kontain mode", "KVM device", "KM", "KM pin",
         "krun-init", "docker", "podman", "containerd", "CRI-O"}

needs_kvm = pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs_km = pytest.mark.skipif(not os.path.exists(KM), reason=f"no {KM}")


def parse(text: str) -> tuple[dict[str, tuple[bool, str, str | None]], str]:
    """{name: (ok, detail, fix)} and the summary line, checking the layout on the way:
    one line per check, each ✘ followed by exactly one indented `fix:` line."""
    lines = text.splitlines()
    assert lines, "no output"
    checks: dict[str, tuple[bool, str, str | None]] = {}
    i = 0
    while i < len(lines) - 1:
        line = lines[i]
        mark, _, rest = line.partition(" ")
        assert mark in (OK, FAIL), f"not a check line: {line!r}"
        name, sep, detail = rest.partition(": ")
        assert sep and name and detail, line
        fix = None
        if mark == FAIL:
            i += 1
            assert lines[i].startswith("    fix: "), f"no fix after {line!r}: {lines[i]!r}"
            fix = lines[i].removeprefix("    fix: ")
            assert fix.strip()
        checks[name] = (mark == OK, detail, fix)
        i += 1
    summary = lines[-1]
    assert summary.startswith(("krun can run containers", "krun cannot run containers")), summary
    assert "Kontain containers: " in summary
    return checks, summary


def clean(proc: subprocess.CompletedProcess[str]) -> None:
    """Whatever failed was said in the report: nothing on stderr, no traceback."""
    assert proc.stderr == "", proc.stderr
    assert "Traceback" not in proc.stdout


def run_check(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
              check_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    argv = [*prefix, krun_binary(), *args, "check", *check_args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)
    clean(proc)
    return proc


def private_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "krun.toml"
    path.write_text(text)
    return {**os.environ, "KRUN_CONFIG": str(path)}


def in_private_mounts(script: str) -> tuple[str, ...]:
    """Run krun after `script` in a private mount namespace: the host sees nothing."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-euc",
            f'{script}\nexec "$@"', "sh")


# --- this machine -------------------------------------------------------------------------


@needs_kvm
@needs_km
def test_happy_path_on_this_machine(krun: Krun) -> None:
    proc = run_check("--root", str(krun.root))
    checks, summary = parse(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert set(checks) == NAMES
    for name in ("kernel", "cgroups", "libcrun binding", "state root", "host config",
                 "KVM device", "KM", "krun-init"):
        assert checks[name][0], (name, checks[name])
    assert "krun.runtime._libcrun loads" in checks["libcrun binding"][1]
    assert "/dev/kvm opens read-write" in checks["KVM device"][1]
    assert checks["KM"][1].startswith(KM)
    # Nothing was created by looking: the state root does not exist yet.
    assert "does not exist yet" in checks["state root"][1] and not krun.root.exists()
    assert summary == f"{SUMMARY_OK}; Kontain containers: yes"


def test_cgroups_layout_matches_the_mounts() -> None:
    checks, _ = parse(run_check().stdout)
    ok, detail, _ = checks["cgroups"]
    fstypes: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstypes[pre.split()[4]] = post.split()[0]
    if fstypes.get("/sys/fs/cgroup") == "cgroup2":
        assert detail.startswith("v2")
    elif fstypes.get("/sys/fs/cgroup/unified") == "cgroup2":
        assert detail.startswith("hybrid")
        if fstypes.get("/sys/fs/cgroup/hugetlb") == "cgroup":  # scripts/prepare-cgroups ran
            assert ok and "hugetlb on v1 at /sys/fs/cgroup/hugetlb (prepared)" in detail
        else:
            assert not ok and "hugetlb" in detail


@needs_root
def test_unprepared_hugetlb_stops_every_container(krun: Krun) -> None:
    if subprocess.run(["mountpoint", "-q", "/sys/fs/cgroup/hugetlb"]).returncode != 0:
        pytest.skip("hugetlb is not on its own v1 hierarchy here")
    proc = run_check("--root", str(krun.root),
                     prefix=in_private_mounts("umount /sys/fs/cgroup/hugetlb"))
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["cgroups"]
    assert not ok and "hugetlb is not mounted as cgroup v1" in detail
    assert fix is not None and fix.startswith("scripts/prepare-cgroups")
    assert proc.returncode == 1
    assert summary == f"krun cannot run containers ({FAIL} cgroups); Kontain containers: no"


@needs_kvm
def test_json_shape(krun: Krun) -> None:
    text_proc = run_check("--root", str(krun.root))
    proc = run_check("--root", str(krun.root), check_args=("--format", "json"))
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1  # one line
    doc = json.loads(proc.stdout)
    assert list(doc) == ["ok", "kontain", "checks"]
    assert isinstance(doc["ok"], bool) and isinstance(doc["kontain"], bool)
    assert doc["ok"] is (proc.returncode == 0)
    assert doc["kontain"] <= doc["ok"]
    for c in doc["checks"]:
        assert list(c) == ["name", "ok", "detail", "fix", "scope"]
        assert isinstance(c["name"], str) and isinstance(c["detail"], str)
        assert (c["fix"] is None) is c["ok"]
        assert c["scope"] in ("containers", "kontain", "advisory")
    blocking = [c for c in doc["checks"] if not c["ok"] and c["scope"] == "containers"]
    assert doc["ok"] is not blocking
    # The same checks, in the same order, as the text report.
    checks, _ = parse(text_proc.stdout)
    assert [c["name"] for c in doc["checks"]] == list(checks)
    assert {c["name"]: c["ok"] for c in doc["checks"]} == {n: v[0] for n, v in checks.items()}


# --- Kontain failures: krun still runs containers ------------------------------------------


def test_missing_km_fails_kontain_only(krun: Krun, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "km"
    env = private_config(tmp_path, f'[kontain]\nkm = "{missing}"\n')
    proc = run_check("--root", str(krun.root), env=env)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["KM"]
    assert not ok and str(missing) in detail and "no such file" in detail
    assert fix is not None and str(missing) in fix and env["KRUN_CONFIG"] in fix
    assert "KM pin" not in checks  # nothing to hash
    assert proc.returncode == 0, proc.stdout
    assert summary == f"{SUMMARY_OK}; Kontain containers: no ({FAIL} KM)"
    doc = json.loads(run_check("--root", str(krun.root), env=env,
                               check_args=("-f", "json")).stdout)
    assert doc["ok"] is True and doc["kontain"] is False
    km, = (c for c in doc["checks"] if c["name"] == "KM")
    assert km["ok"] is False and km["scope"] == "kontain" and str(missing) in km["fix"]


@needs_km
def test_km_pin_mismatch_and_match(krun: Krun, tmp_path: Path) -> None:
    digest = hashlib.sha256(Path(KM).read_bytes()).hexdigest()
    env = private_config(tmp_path, f'[kontain]\nkm_sha256 = "{"0" * 64}"\n')
    proc = run_check("--root", str(krun.root), env=env)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["KM pin"]
    assert not ok and digest in detail and "0" * 64 in detail
    assert fix is not None and digest in fix
    assert proc.returncode == 0 and "Kontain containers: no" in summary

    env = private_config(tmp_path, f'[kontain]\nkm_sha256 = "{digest.upper()}"\n')
    checks, _ = parse(run_check("--root", str(krun.root), env=env).stdout)
    assert checks["KM pin"][0] and digest in checks["KM pin"][1]


@needs_km
def test_km_anyone_could_replace(krun: Krun, tmp_path: Path) -> None:
    # A copy under /tmp: /tmp is world-writable, so someone else could swap the file.
    copy = tmp_path / "km"
    shutil.copy(KM, copy)
    env = private_config(tmp_path, f'[kontain]\nkm = "{copy}"\n')
    proc = run_check("--root", str(krun.root), env=env)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["KM"]
    assert not ok and "writable by non-root" in detail
    assert fix is not None and str(copy) in fix and "chmod go-w" in fix
    assert proc.returncode == 0 and summary.endswith(f"Kontain containers: no ({FAIL} KM)")


@needs_km
def test_unpinned_km_is_advisory(krun: Krun, tmp_path: Path) -> None:
    env = private_config(tmp_path, "[kontain]\n")
    proc = run_check("--root", str(krun.root), env=env, check_args=("--format", "json"))
    doc = json.loads(proc.stdout)
    pin, = (c for c in doc["checks"] if c["name"] == "KM pin")
    assert pin["ok"] is False and pin["scope"] == "advisory"
    assert pin["fix"].startswith("add km_sha256 = ") and env["KRUN_CONFIG"] in pin["fix"]


@needs_root
def test_missing_kvm_device(krun: Krun) -> None:
    # A private, empty /dev: neither /dev/kvm nor /dev/kkm exists for this krun.
    prefix = in_private_mounts("mount -t tmpfs tmpfs /dev")
    proc = run_check("--root", str(krun.root), prefix=prefix)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["KVM device"]
    assert not ok and "/dev/kvm absent" in detail and "/dev/kkm absent" in detail
    assert fix is not None and "modprobe" in fix
    assert proc.returncode == 0, proc.stdout
    assert summary.endswith(f"Kontain containers: no ({FAIL} KVM device)")


@needs_root
def test_kvm_path_that_is_not_a_device(krun: Krun, tmp_path: Path) -> None:
    fake = tmp_path / "not-a-device"
    fake.write_text("")
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm to cover")
    proc = run_check("--root", str(krun.root),
                     prefix=in_private_mounts(f"mount --bind {fake} /dev/kvm"))
    checks, _ = parse(proc.stdout)
    ok, detail, fix = checks["KVM device"]
    assert not ok and "/dev/kvm is not a character device" in detail
    assert fix is not None and "/dev/kvm" in fix


@pytest.fixture
def nobody_root() -> Iterator[Path]:
    """A state root the unprivileged user can write (tmp_path's parents are root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="krun-check-"))
    try:
        base.chmod(0o755)
        root = base / "root"
        root.mkdir()
        os.chown(root, NOBODY, NOBODY)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
@needs_kvm
def test_kvm_device_not_openable_by_the_user(nobody_root: Path) -> None:
    st = os.stat("/dev/kvm")
    if st.st_mode & 0o006 == 0o006:
        pytest.skip("/dev/kvm is open to everyone here")
    prefix = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    env = {k: v for k, v in os.environ.items() if k not in ("KRUN_CONFIG", "XDG_RUNTIME_DIR")}
    proc = run_check("--root", str(nobody_root), env=env, prefix=prefix)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["KVM device"]
    import grp

    group = grp.getgrgid(st.st_gid).gr_name
    assert not ok and "/dev/kvm" in detail and f"group {group}" in detail
    assert "permission denied" in detail and "nobody" in detail
    # The fix names the device when it is root-only, the group when there is one.
    assert fix is not None and "nobody" in fix and ("/dev/kvm" in fix or group in fix)
    assert checks["state root"][0], checks["state root"]
    # Not root: user namespaces are needed now, and subuid/subgid are reported for nobody.
    assert "only rootless" not in checks["user namespaces"][1]
    assert "for nobody" in checks["subuid/subgid"][1]
    assert "Kontain containers: no" in summary
    assert (proc.returncode == 0) is summary.startswith(SUMMARY_OK)


@needs_root
def test_interpreter_on_a_writable_mount(krun: Krun) -> None:
    if subprocess.run(["mountpoint", "-q", VENV_BIN]).returncode != 0:
        pytest.skip(f"{VENV_BIN} is not the read-only mount scripts/install-krun makes")
    checks, _ = parse(run_check("--root", str(krun.root)).stdout)
    ok, detail, _ = checks["interpreter"]
    assert ok and "read-only mount" in detail and "no re-exec" in detail
    # Without the read-only mount libcrun's guard re-executes krun: still works, slower.
    proc = run_check("--root", str(krun.root), prefix=in_private_mounts(f"umount {VENV_BIN}"))
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["interpreter"]
    assert not ok and "writable mount" in detail and "re-executed" in detail
    assert fix is not None and "-m krun.installer protect" in fix and str(VENV_BIN) in fix
    assert checks["libcrun binding"][0]
    assert proc.returncode == 0 and summary.startswith(SUMMARY_OK)


# --- failures that stop every container ----------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_state_root_that_cannot_be_a_directory(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    root = blocker if where == "file" else blocker / "state"
    proc = run_check("--root", str(root))
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["state root"]
    assert not ok and str(root) in detail and f"{blocker} is not a directory" in detail
    assert fix is not None and str(blocker) in fix and "--root" in fix
    assert proc.returncode == 1
    assert summary == f"krun cannot run containers ({FAIL} state root); Kontain containers: no"
    doc = json.loads(run_check("--root", str(root), check_args=("--format", "json")).stdout)
    assert doc["ok"] is False and doc["kontain"] is False


@needs_root
def test_state_root_on_a_read_only_file_system(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    prefix = in_private_mounts(f"mount -t tmpfs -o ro tmpfs {ro}")
    for root in (ro, ro / "krun"):
        proc = run_check("--root", str(root), prefix=prefix)
        checks, _ = parse(proc.stdout)
        ok, detail, fix = checks["state root"]
        assert not ok and "read-only file system" in detail and str(root) in detail
        assert fix is not None and str(root) in fix
        assert proc.returncode == 1


@pytest.mark.parametrize("text, says", [
    ("[kontain\n", "krun.toml"),
    ('[kontain]\nmode = "sometimes"\n', "kontain.mode"),
    ('[kontian]\nmode = "always"\n', "unknown table [kontian]"),
])
def test_broken_host_config_stops_every_container(tmp_path: Path, text: str, says: str) -> None:
    env = private_config(tmp_path, text)
    proc = run_check(env=env)
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["host config"]
    assert not ok and says in detail
    assert fix is not None and env["KRUN_CONFIG"] in fix
    assert proc.returncode == 1 and summary.startswith("krun cannot run containers")


def test_kontain_never(krun: Krun) -> None:
    proc = run_check("--root", str(krun.root), "--kontain", "never")
    checks, summary = parse(proc.stdout)
    ok, detail, fix = checks["Kontain mode"]
    assert not ok and detail.startswith("never (from --kontain)")
    assert fix == "drop --kontain=never"
    assert "Kontain containers: no" in summary


# --- engines ------------------------------------------------------------------------------


def test_engine_lines_match_the_engines_present() -> None:
    from krun.engines import installed

    checks, _ = parse(run_check().stdout)
    present = set(installed("/"))
    for engine, label in (("docker", "docker"), ("podman", "podman"),
                          ("containerd", "containerd"), ("crio", "CRI-O")):
        ok, detail, fix = checks[label]
        if engine not in present:
            assert ok and detail == "not installed"
        elif ok:
            assert "is registered" in detail
        else:
            assert fix is not None and f"krun install --engine {engine}" in fix


@pytest.mark.parametrize("engine", ["docker", "podman", "containerd", "crio"])
def test_registration_follows_install_and_uninstall(tmp_path: Path, engine: str) -> None:
    from krun.engines import Context
    from krun.engines.status import ABSENT, DIFFERENT, REGISTERED, registration

    krun = "/usr/local/bin/krun"
    ctx = Context(krun, str(tmp_path), "/run/krun")
    assert registration(engine, ctx).state == ABSENT
    base = [krun_binary(), "install", "--engine", engine, "--config-root", str(tmp_path)]
    subprocess.run([*base, "--path", krun], check=True, capture_output=True)
    r = registration(engine, ctx)
    assert r.state == REGISTERED and r.files
    # Registered for another krun binary: there, but not this krun's entry.
    assert registration(engine, Context("/opt/other/krun", str(tmp_path),
                                        "/run/krun")).state == DIFFERENT
    subprocess.run([krun_binary(), "uninstall", "--engine", engine, "--config-root",
                    str(tmp_path)], check=True, capture_output=True)
    assert registration(engine, ctx).state == ABSENT


def test_registration_of_an_unreadable_config(tmp_path: Path) -> None:
    from krun.engines import Context
    from krun.engines.status import UNREADABLE, registration

    daemon = tmp_path / "etc" / "docker" / "daemon.json"
    daemon.parent.mkdir(parents=True)
    daemon.write_text("{not json")
    r = registration("docker", Context("/usr/local/bin/krun", str(tmp_path), "/run/krun"))
    assert r.state == UNREADABLE and r.error and "not valid JSON" in r.error


# --- the command line ---------------------------------------------------------------------




def test_bad_format_is_a_usage_error() -> None:
    proc = subprocess.run([krun_binary(), "check", "--format", "xml"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "xml" in proc.stderr and "Traceback" not in proc.stderr


def test_check_stays_off_click_and_typing() -> None:
    # The module itself imports neither typing nor click; running the command never
    # needs click (the fast parser takes `check` whole).
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import krun.commands.check; "
            "typed = 'typing' in sys.modules; "
            "from krun import cli; g, cmd, o = cli.parse(['check']); "
            "code = cli.dispatch(g, cmd, o); "
            "print(typed, 'click' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True,
                          text=True, timeout=60)
    assert proc.stderr.split() == ["False", "False"], proc.stderr
