"""What Kontain's real KM does, through krun (issue 12): signal deaths report the
payload's status at once, SIGTERM handlers run on `kill`, execve, dynamic and shebang
payloads, snapshots accepted by the checks, KM's messages reaching stderr, debug on
failure. The project's KM models the real one (native/km), so these run in CI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PAYLOADS, KontainBundle, Krun

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                                reason="no /dev/kvm on this machine: Kontain needs KVM")

V1 = {"version": 1}
NEEDED = ("sigill.km", "sigsegv.km", "sigterm.km", "execer.km", "dyn.km", "ld-krun.so",
          "script.sh", "sleeper.km", "args.km")


@pytest.fixture(scope="module", autouse=True)
def payloads() -> None:
    missing = [n for n in NEEDED if not (PAYLOADS / n).exists()]
    if missing:
        pytest.fail(f"payloads missing: {missing}: run scripts/setup (scripts/build-km)")


def _timed_run(krun: Krun, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = krun(*args, check=False)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("payload,status", [("/sigill.km", 132), ("/sigsegv.km", 139)])
def test_signal_death_is_the_containers_status_at_once(krun: Krun, kbundle: KontainBundle,
                                                       cid: str, payload: str,
                                                       status: int) -> None:
    """As pid 1, KM's re-raise of the signal would be ignored: 139 after 2 s. krun-init
    is pid 1, so KM dies of the payload's signal and the status is the payload's."""
    proc, took = _timed_run(krun, "run", "--bundle", str(kbundle([payload], V1)), cid)
    assert proc.returncode == status, proc.stderr
    assert took < 1.5, f"{took:.2f}s: KM waited as pid 1"
    # And through exec into a running container.
    krun("run", "-d", "--bundle", str(kbundle(["/sleeper.km", "100"], V1)), cid)
    proc, took = _timed_run(krun, "exec", cid, payload)
    assert (proc.returncode, took < 1.5) == (status, True), (proc.stderr, took)
    krun("delete", "--force", cid)


def _run_until_ready(krun: Krun, b: Path, cid: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(krun.argv("run", "--bundle", str(b), cid), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("payload,status,said", [("/sigterm.km", 0, "got SIGTERM"),
                                                  ("/sleeper.km", 143, "")])
def test_kill_term_runs_the_payloads_handler(krun: Krun, kbundle: KontainBundle, cid: str,
                                             payload: str, status: int, said: str) -> None:
    """`krun kill ID TERM` (docker stop) reaches the payload: its handler runs, or it
    dies of SIGTERM (143) without one, at once either way."""
    proc = _run_until_ready(krun, kbundle([payload, "100"], V1), cid)
    t0 = time.monotonic()
    krun("kill", cid, "TERM")
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, time.monotonic() - t0 < 1.5) == (status, True), err
    assert said in out


def test_execve_of_another_payload(krun: Krun, kbundle: KontainBundle, cid: str) -> None:
    proc = krun("run", "--bundle", str(kbundle(["/execer.km", "/args.km", "x"], V1)), cid)
    assert proc.stdout.splitlines()[:2] == ["argv[0]=/args.km", "argv[1]=x"]


def test_dynamic_payload_and_its_interpreter(krun: Krun, kbundle: KontainBundle,
                                             cid: str) -> None:
    proc = krun("run", "--bundle", str(kbundle(["/dyn.km"], V1)), cid)
    assert proc.stdout == "hello from a dynamic payload\n"
    b = kbundle(["/dyn.km"], V1)
    (b / "rootfs" / "ld-krun.so").unlink()
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1
    assert "payload /dyn.km: its interpreter /ld-krun.so: no such file or directory" in \
        proc.stderr
    (b / "rootfs" / "ld-krun.so").write_text("#!/args.km\n")
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert "a script, which cannot be an interpreter" in proc.stderr


def test_shebang_script_runs_its_payload_interpreter(krun: Krun, kbundle: KontainBundle,
                                                     cid: str) -> None:
    proc = krun("run", "--bundle", str(kbundle(["/script.sh", "arg"], V1)), cid)
    assert proc.stdout.splitlines()[:4] == ["argv[0]=/args.km", "argv[1]=xarg",
                                            "argv[2]=/script.sh", "argv[3]=arg"]
    b = kbundle(["/bad.sh"], V1)
    (b / "rootfs" / "bad.sh").write_text("#!/nowhere.km\n")
    (b / "rootfs" / "bad.sh").chmod(0o755)
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "its interpreter /nowhere.km: no such file" in proc.stderr


def _core(notes: bool) -> bytes:
    """A minimal ELF core: the shape of a KM snapshot (PT_NOTE + PT_LOAD at >= 2 MiB)."""
    phdrs = [(4, 0, 0, 0, 0, 0, 0, 4)] if notes else []
    phdrs.append((1, 6, 0x1000, 0x200000, 0x200000, 0x1000, 0x1000, 0x1000))
    header = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 4, 62, 1, 0,
                         64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    table = b"".join(struct.pack("<IIQQQQQQ", *p) for p in phdrs)
    return (header + table).ljust(0x2000, b"\0")


def test_snapshots_pass_the_payload_check(krun: Krun, kbundle: KontainBundle,
                                          cid: str) -> None:
    """KM resumes an ET_CORE snapshot; krun's check must not refuse one (this hand-made
    core is no real snapshot, so only create is tried: tests/test_checkpoint.py resumes
    real ones). A core without notes is no snapshot."""
    b = kbundle(["/snap.core"], V1)
    (b / "rootfs" / "snap.core").write_bytes(_core(notes=True))
    krun("create", "--bundle", str(b), cid)
    krun("delete", "--force", cid)
    (b / "rootfs" / "snap.core").write_bytes(_core(notes=False))
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "not a KM snapshot" in proc.stderr


def test_kms_own_messages_reach_stderr(krun: Krun, kbundle: KontainBundle, cid: str) -> None:
    """Off a terminal KM logs to /tmp/km_<pid>.log in the container, lost with it (and
    a read-only rootfs has no /tmp): krun sends KM's messages to stderr."""
    def read_only(c: dict[str, Any]) -> None:
        c["root"]["readonly"] = True

    b = kbundle(["/sigsegv.km"], V1, mutate=read_only)
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 139
    assert "km" in proc.stderr.lower() and proc.stderr.strip(), "KM said nothing"


def test_debug_on_failure_keeps_kms_log_core_and_a_report(krun: Krun, kbundle: KontainBundle,
                                                          cid: str, tmp_path: Path) -> None:
    from conftest import ROOTS_BASE

    debug = ROOTS_BASE / f"debug-{os.getpid()}"
    conf = tmp_path / "krun.toml"
    conf.write_text(f'[kontain]\ndebug_dir = "{debug}"\n')
    env = {**os.environ, "KRUN_CONFIG": str(conf)}
    try:
        b = kbundle(["/sigsegv.km", "arg1"], {"version": 1, "debug": True},
                    mutate=lambda c: c["process"]["env"].append("MARK=42"))
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        assert proc.returncode == 139
        dirs = list(debug.iterdir())
        assert len(dirs) == 1 and dirs[0].name.startswith(cid)
        assert str(dirs[0]) in proc.stderr
        report = (dirs[0] / "report.txt").read_text()
        assert "/sigsegv.km arg1" in report and "MARK=42" in report and "signal 11" in report
        assert (dirs[0] / "km-init.log").stat().st_size > 0, "KM's verbose log is empty"
        assert (dirs[0] / "kmcore-init").exists(), "no core file"
        # The artefacts outlive the container.
        assert not (krun.root / cid).exists() and dirs[0].exists()
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(debug)], check=False)


def test_payload_paths_are_clean_and_the_annotation_is_json(krun: Krun, kbundle: KontainBundle,
                                                            cid: str) -> None:
    b = kbundle(["./args.km", "a b"], V1, mutate=lambda c: c["process"].update(cwd="/tmp"))
    (b / "rootfs" / "tmp" / "args.km").write_bytes((PAYLOADS / "args.km").read_bytes())
    (b / "rootfs" / "tmp" / "args.km").chmod(0o755)
    krun("create", "--bundle", str(b), cid)
    state = krun.state(cid)
    assert json.loads(state["annotations"]["app.kontain.payload"]) == ["/tmp/args.km", "a b"]
    krun("delete", "--force", cid)
