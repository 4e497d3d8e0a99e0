"""Tests for krun-km, the Kontain-compatible monitor (native/km), its payloads
(km_payloads) and scripts/build-km.

Self-contained: fixtures live here. The session fixture runs `make` for the
monitor and payloads (incremental, so cheap when they are built). Tests that
start a guest need /dev/kvm and are skipped, with that reason, without it;
argument, ELF and device checks happen before KVM is touched and always run.
"""
import os
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KM = REPO / "native" / "km" / "build" / "km"
PAYLOADS = REPO / "km_payloads"
TIMEOUT = 30

needs_kvm = pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm on this machine")

EXAMPLES = ["hello", "args", "exit", "sleeper", "files", "uname", "sigterm", "execer", "sigill",
            "sigsegv", "dyn"]
TEST_ONLY = ["fault", "efault", "hcalls", "kstart", "syscall", "lowaddr", "pie", "signals"]


def payload(name):
    return PAYLOADS / f"{name}.km" if name in EXAMPLES else PAYLOADS / "tests" / f"{name}.km"


@pytest.fixture(scope="session", autouse=True)
def built():
    for directory in (REPO / "native" / "km", PAYLOADS):
        r = subprocess.run(["make", "-s", "-C", str(directory)], capture_output=True, text=True)
        assert r.returncode == 0, f"make in {directory} failed:\n{r.stdout}{r.stderr}"
    assert KM.exists()


def km(*args, timeout=TIMEOUT, log="stderr", **kwargs):
    """Runs KM on args; its own messages go to stderr unless `log` says otherwise
    (None: KM's default, which off a terminal is /tmp/km_<pid>.log)."""
    options = [] if log is None else [f"--km-log-to={log}"]
    return subprocess.run([str(KM), *options, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def one_error_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {stderr!r}"
    assert lines[0].startswith("km: "), lines[0]
    return lines[0]


def key_values(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def wait_for_line(stream, expected, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = stream.readline()
        if not line:
            return False
        if line.strip() == expected:
            return True
    return False


def no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# ---- command line ----------------------------------------------------------

@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version_identifies_krun_km(flag):
    r = km(flag)
    assert r.returncode == 0
    assert "krun-km" in r.stdout


def test_help_shows_usage():
    r = km("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: km [options] payload")
    assert "--putenv" in r.stdout and "--virt-device" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus", "x.km"], "unknown option '--bogus'"),
    ([], "missing payload file"),
    (["--verbose"], "missing payload file"),
    (["--putenv", "NOEQUALS", "x.km"], "--putenv needs KEY=VALUE"),
    (["-k"], "option '-k' requires a value"),
    (["--verbose=(", "x.km"], "invalid --verbose regular expression"),
])
def test_usage_errors_exit_2(args, message):
    r = km(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("km: ")
    assert message in r.stderr
    assert "Usage:" in r.stderr


# ---- payload files KM must refuse (checked before KVM is touched) -----------

def elf_load_end(data):
    """End of the furthest PT_LOAD's file data."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    end = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                 phoff + i * phentsize)
        if p_type == 1:
            end = max(end, p_offset + p_filesz)
    return end


def patched(data, offset, fmt, value):
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def bad_payload(kind):
    hello = payload("hello").read_bytes()
    return {
        "text": b"echo this is neither an ELF file nor a #! script\n",
        "empty": b"",
        "elf32": b"\x7fELF\x01\x01\x01" + bytes(57),
        "big-endian": b"\x7fELF\x02\x02\x01" + bytes(57),
        "wrong-machine": patched(hello, 18, "<H", 183),     # EM_AARCH64
        "core": patched(hello, 16, "<H", 4),                # ET_CORE (a KM snapshot)
        "truncated-header": hello[:40],
        "truncated-phdrs": hello[:100],
        "truncated-segment": hello[:elf_load_end(hello) - 1],
    }[kind]


@pytest.mark.parametrize("kind, message", [
    ("text", "not an ELF file"),
    ("empty", "not an ELF file"),
    ("elf32", "32-bit ELF"),
    ("big-endian", "not a little-endian ELF"),
    ("wrong-machine", "not an x86-64 ELF"),
    ("truncated-header", "truncated ELF file"),
    ("truncated-phdrs", "truncated ELF file"),
    ("truncated-segment", "truncated ELF file"),
])
def test_bad_elf_is_rejected(tmp_path, kind, message):
    path = tmp_path / f"{kind}.km"
    path.write_bytes(bad_payload(kind))
    r = km(path)
    assert r.returncode == 126
    assert r.stdout == ""
    line = one_error_line(r.stderr)
    assert str(path) in line and message in line


def test_segment_below_2mib_is_rejected():
    r = km(payload("lowaddr"))
    assert r.returncode == 126
    line = one_error_line(r.stderr)
    assert "segment at 0x100000 is below 2 MiB" in line


def test_missing_payload():
    r = km("/nonexistent/x.km")
    assert r.returncode == 127
    assert one_error_line(r.stderr) == "km: /nonexistent/x.km: no such file or directory"


def test_directory_payload_is_rejected(tmp_path):
    r = km(tmp_path)
    assert r.returncode == 126
    assert "not a regular file" in one_error_line(r.stderr)


def test_unreadable_payload_is_permission_denied():
    # Root reads anything, so drop to nobody; the files live in a directory
    # nobody can reach (pytest's tmp_path is private to root).
    workdir = Path(tempfile.mkdtemp(prefix="km-perm-", dir="/tmp"))
    try:
        os.chmod(workdir, 0o755)
        km_copy = workdir / "km"
        shutil.copy(KM, km_copy)
        target = workdir / "hello.km"
        shutil.copy(payload("hello"), target)
        os.chmod(target, 0)

        def drop_privileges():
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)

        r = subprocess.run([str(km_copy), "--km-log-to=stderr", str(target)],
                           capture_output=True, text=True,
                           timeout=TIMEOUT, preexec_fn=drop_privileges)
    finally:
        shutil.rmtree(workdir)
    assert r.returncode == 126
    assert one_error_line(r.stderr) == f"km: {target}: permission denied"


def test_argument_list_too_long():
    chunk = "x" * (120 * 1024)   # under Linux's per-argument limit; 12 of them exceed KM's 1 MiB
    r = km(payload("args"), *[chunk] * 12)
    assert r.returncode == 126
    assert "argument list too long" in one_error_line(r.stderr)


# ---- virtualization device ---------------------------------------------------

def test_missing_device_is_explained():
    r = km("--virt-device=/nonexistent", payload("hello"))
    assert r.returncode == 1
    assert one_error_line(r.stderr) == (
        "km: /nonexistent: no such file or directory "
        "(KVM is required: load kvm_intel/kvm_amd or pass --virt-device)")


def test_non_kvm_device_is_rejected():
    r = km("--virt-device", "/dev/null", payload("hello"))
    assert r.returncode == 1
    assert "/dev/null: not a KVM device" in one_error_line(r.stderr)


# ---- payloads under KM -----------------------------------------------------

@needs_kvm
def test_hello():
    r = km(payload("hello"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello from Kontain!\n", "")


@needs_kvm
def test_position_independent_payload_loads_at_2mib():
    path = payload("pie")
    assert struct.unpack_from("<H", path.read_bytes(), 16)[0] == 3     # ET_DYN
    r = km(path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello from Kontain!\n", "")


@needs_kvm
@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_is_the_payloads(code):
    r = km(payload("exit"), code)
    assert r.returncode == code
    assert r.stderr == ""


@needs_kvm
def test_exit_code_wraps_like_linux():
    assert km(payload("exit"), 256 + 7).returncode == 7


@needs_kvm
def test_args_and_argv0_as_given():
    r = km(payload("args"), "one", "two words", "", "--verbose")
    assert r.returncode == 0
    lines = [line for line in r.stdout.splitlines() if line.startswith("argv[")]
    assert lines == [f"argv[0]={payload('args')}", "argv[1]=one", "argv[2]=two words",
                     "argv[3]=", "argv[4]=--verbose"]
    assert r.stderr == ""     # --verbose after the payload is the payload's


@needs_kvm
def test_relative_payload_path_is_argv0():
    r = km("--", "./args.km", "x", cwd=PAYLOADS)
    assert r.returncode == 0
    assert r.stdout.splitlines()[:2] == ["argv[0]=./args.km", "argv[1]=x"]


def guest_env(stdout):
    return [line[len("env="):] for line in stdout.splitlines() if line.startswith("env=")]


@needs_kvm
def test_host_environment_passes_through_by_default():
    env = {"PATH": "/usr/bin:/bin", "KRUN_TEST": "a b=c"}
    r = km(payload("args"), env=env)
    assert r.returncode == 0
    assert sorted(guest_env(r.stdout)) == ["KRUN_TEST=a b=c", "PATH=/usr/bin:/bin"]


@needs_kvm
def test_putenv_replaces_the_environment():
    r = km("--putenv", "A=1", "--putenv=B=two words", payload("args"),
           env={"PATH": "/bin", "HOSTVAR": "x"})
    assert r.returncode == 0
    assert guest_env(r.stdout) == ["A=1", "B=two words"]


@needs_kvm
def test_copyenv_with_putenv_adds_and_overrides():
    r = km("--copyenv", "--putenv", "HOSTVAR=new", "--putenv", "EXTRA=1", payload("args"),
           env={"PATH": "/bin", "HOSTVAR": "old"})
    assert r.returncode == 0
    assert sorted(guest_env(r.stdout)) == ["EXTRA=1", "HOSTVAR=new", "PATH=/bin"]


@needs_kvm
def test_uname_release_says_kontain():
    r = km(payload("uname"))
    assert r.returncode == 0
    assert r.stdout == os.uname().release + ".kontain.KVM\n"


@needs_kvm
def test_files_round_trip(tmp_path):
    target = tmp_path / "out.txt"
    r = km(payload("files"), target)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "krun km_payloads files test\n"
    assert target.read_text() == r.stdout


@needs_kvm
def test_files_reports_host_errors():
    r = km(payload("files"), "/nonexistent-dir/out.txt")
    assert r.returncode == 1
    assert "files: open for writing: ENOENT" in r.stderr


@needs_kvm
def test_sleeper_sleeps_and_exits_zero():
    start = time.monotonic()
    r = km(payload("sleeper"), 1)
    assert (r.returncode, r.stdout) == (0, "ready\n")
    assert time.monotonic() - start >= 0.9


@needs_kvm
def test_kontain_libc_start_sequence():
    """arch_prctl(SET_FS), set_tid_address, ioctl(TIOCGWINSZ), writev, write."""
    r = km(payload("kstart"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello from writev\nfs ok\n", "")


@needs_kvm
def test_hypercalls_match_the_host(tmp_path):
    p = subprocess.Popen([str(KM), str(payload("hcalls"))], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err
    kv = key_values(out)
    assert kv["getpid"] == str(p.pid) == kv["set_tid_address"]
    assert kv["getppid"] == str(os.getpid())
    assert (kv["uid"], kv["euid"]) == (str(os.getuid()), str(os.geteuid()))
    assert (kv["gid"], kv["egid"]) == (str(os.getgid()), str(os.getegid()))
    assert kv["getcwd"] == os.path.realpath(tmp_path)
    expected = {
        "brk": "ok", "mmap_anon": "ok", "mmap_noreplace": "EEXIST", "munmap": "0",
        "mmap_fixed_rezeroed": "ok", "mmap_huge": "ENOMEM",
        "mmap_big": "ok", "brk_big": "ok",      # growth into chunks not yet backed
        "first_fd": "3", "fstat": "ok", "lseek": "0",
        "visible_fds": "0,1,2,3", "closed_hidden": "0",       # KM's own fds stay hidden
        "ioctl_winsize_pipe": "ENOTTY", "ioctl_other": "ENOTTY",
        "unknown_hypercall": "ENOTSUP", "getrandom": "ok", "nanosleep": "ok",
        "rt_sigaction": "0", "rt_sigaction_old_zeroed": "ok", "rt_sigprocmask": "0",
        "arch_prctl_gs": "ENOTSUP",
    }
    assert {k: kv.get(k) for k in expected} == expected


@needs_kvm
def test_bounds_checked_pointers_get_efault():
    r = km(payload("efault"))
    kv = key_values(r.stdout)
    probes = {k: v for k, v in kv.items() if k != "failures"}
    assert len(probes) >= 15
    assert set(probes.values()) == {"EFAULT"}, probes
    assert kv["failures"] == "0" and r.returncode == 0


@needs_kvm
def test_syscall_instruction_becomes_a_hypercall():
    r = km(payload("syscall"))
    assert r.returncode == 7      # exit_group(7) issued with `syscall`
    assert r.stdout.splitlines() == ["syscall write ok", "registers=ok",
                                     "unimplemented=ENOTSUP", "out_of_range=ENOSYS"]


# ---- logging ---------------------------------------------------------------

@needs_kvm
def test_verbose_logs_hypercalls_to_file(tmp_path):
    log = tmp_path / "km.log"
    r = km("--verbose", "-k", log, payload("hello"), log=None)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello from Kontain!\n", "")
    text = log.read_text()
    assert re.search(r"^km: hc write\(1, 0x[0-9a-f]+, 0x14\) = 20 ", text, re.M), text
    assert re.search(r"^km: hc exit_group\(0x0\)", text, re.M), text


@needs_kvm
def test_verbose_logs_to_stderr_and_filters():
    r = km("--verbose=^exit", payload("hello"))
    assert r.returncode == 0
    assert "hc exit_group(0x0)" in r.stderr
    assert "hc write(" not in r.stderr


@needs_kvm
def test_unknown_hypercall_is_logged(tmp_path):
    log = tmp_path / "km.log"
    r = km(f"--km-log-to={log}", "--verbose", payload("hcalls"), cwd=tmp_path, log=None)
    assert r.returncode == 0
    assert "hc hypercall_500(0x0, 0x0, 0x0, 0x0, 0x0, 0x0) = -95 (EOPNOTSUPP)" in log.read_text()


@needs_kvm
def test_log_file_gets_errors_and_stderr_stays_the_payloads(tmp_path):
    log = tmp_path / "km.log"
    r = km("-k", log, payload("fault"), "ud2", log=None, cwd=tmp_path)
    assert r.returncode == -signal.SIGILL
    assert r.stderr == ""
    assert "guest fault: invalid opcode" in log.read_text()


def default_log(pid):
    return Path(f"/tmp/km_{pid}.log")


def no_new_default_log(pid, since):
    """No /tmp/km_<pid>.log written since `since` (an older one may be another run's)."""
    log = default_log(pid)
    return not log.exists() or log.stat().st_mtime < since


def test_default_log_off_a_terminal_is_tmp_km_pid_log():
    """With stderr on a pipe (as under an engine) KM's messages go to /tmp/km_<pid>.log."""
    p = subprocess.Popen([str(KM), "/nonexistent/x.km"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=TIMEOUT)
    log = default_log(p.pid)
    try:
        assert (p.returncode, out, err) == (127, "", "")
        assert log.read_text() == "km: /nonexistent/x.km: no such file or directory\n"
    finally:
        log.unlink(missing_ok=True)


@needs_kvm
def test_default_log_is_not_created_by_a_quiet_run():
    since = time.time() - 1
    p = subprocess.Popen([str(KM), str(payload("hello"))], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=TIMEOUT)
    assert (p.returncode, out, err) == (0, "Hello from Kontain!\n", "")
    assert no_new_default_log(p.pid, since)


def test_default_log_on_a_terminal_is_stderr():
    import pty
    since = time.time() - 1
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([str(KM), "/nonexistent/x.km"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        slave = -1
        assert p.wait(timeout=TIMEOUT) == 127
        text = b""
        while select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:       # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            text += chunk
        assert text.replace(b"\r", b"") == b"km: /nonexistent/x.km: no such file or directory\n"
        assert no_new_default_log(p.pid, since)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_log_to_none_discards_kms_messages():
    r = km("/nonexistent/x.km", log="none")
    assert (r.returncode, r.stderr) == (127, "")


def test_log_to_stderr_keyword_is_not_a_file(tmp_path):
    r = km("/nonexistent/x.km", log="stderr", cwd=tmp_path)
    assert r.returncode == 127
    assert one_error_line(r.stderr) == "km: /nonexistent/x.km: no such file or directory"
    assert list(tmp_path.iterdir()) == []


def test_unwritable_log_file_is_reported_on_stderr():
    r = km("/nonexistent/x.km", log="/nonexistent-dir/km.log")
    assert r.returncode == 1
    assert one_error_line(r.stderr).startswith("km: /nonexistent-dir/km.log: cannot open log file")


@needs_kvm
def test_payload_stderr_is_not_kms_log(tmp_path):
    log = tmp_path / "km.log"
    r = km(payload("files"), "/nonexistent-dir/out.txt", log=log)
    assert r.returncode == 1
    assert "files: open for writing: ENOENT" in r.stderr
    assert not log.exists() or log.read_text() == ""


# ---- signals ---------------------------------------------------------------

def start_payload(args, ready_line, prefix=()):
    p = subprocess.Popen([*prefix, str(KM), "--km-log-to=stderr", *map(str, args)],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if not wait_for_line(p.stdout, ready_line):
        p.kill()
        p.communicate()
        pytest.fail(f"{args} did not print {ready_line!r}")
    return p


def start_sleeper(*prefix):
    return start_payload([payload("sleeper")], "ready", prefix)


@needs_kvm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                 signal.SIGALRM, signal.SIGPIPE])
def test_signal_without_handler_kills_km_with_it(sig):
    """The payload's default action is to die; KM dies of the same signal."""
    p = start_sleeper()
    try:
        p.send_signal(sig)
        assert p.wait(timeout=10) == -sig
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


@needs_kvm
def test_signal_interrupts_a_busy_guest():
    """The guest is inside KVM_RUN, not in a hypercall, when the signal comes."""
    p = start_payload([payload("fault"), "spin"], "spinning")
    try:
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == -signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


@needs_kvm
def test_sigkill_kills_km():
    p = start_sleeper()
    p.kill()
    assert p.wait(timeout=10) == -signal.SIGKILL
    p.communicate()


# ---- guest faults ------------------------------------------------------------

SEGV, ILL, FPE = -signal.SIGSEGV, -signal.SIGILL, -signal.SIGFPE


@needs_kvm
@pytest.mark.parametrize("mode, code, message", [
    ("ud2", ILL, "invalid opcode (#UD)"),
    ("null", SEGV, "page fault (#PF) reading address 0x8 (not mapped)"),
    ("unmapped", SEGV, "page fault (#PF) reading address 0x50000000 (not mapped)"),
    ("jump", SEGV, "page fault (#PF) executing address 0x50000000"),
    ("gp", SEGV, "general protection fault (#GP)"),
    ("div0", FPE, "divide error (#DE)"),
    ("write-ro", SEGV, "writing address 0x40000000 (protection violation)"),
    ("wild-rsp", SEGV, "writing address 0x8"),
    ("port", SEGV, "I/O to port 0x1234 (not a hypercall)"),
    ("hlt", 134, "hlt instruction"),
    ("badblock", SEGV, "argument block 0x10 outside guest memory"),
    ("unbacked", SEGV, "reading address 0x10000000 (outside allocated guest memory)"),
    ("unbacked-write", SEGV, "writing address 0x10000000 (outside allocated guest memory)"),
    ("unbacked-jump", SEGV, "executing outside guest memory"),
])
def test_guest_fault_is_reported(tmp_path, mode, code, message):
    """KM dies of the signal Linux would send (exit 134 for states no signal describes)."""
    r = km(payload("fault"), mode, timeout=20, cwd=tmp_path)
    assert r.returncode == code
    line = one_error_line(r.stderr)
    assert line.startswith("km: guest fault: ") and message in line, line
    assert re.search(r"at RIP 0x[0-9a-f]+(; core dumped to \./kmcore)?$", line), line
    assert "did not fault" not in r.stdout
    assert (tmp_path / "kmcore").exists() == (code in (SEGV, ILL, FPE))   # "core" signals


@needs_kvm
def test_sse_works_or_is_reported(tmp_path):
    """Nested hosts may not give guests SSE; then KM must say so, not hang."""
    r = km(payload("fault"), "sse", timeout=20, cwd=tmp_path)
    if r.returncode == 0:
        assert r.stdout == "sse ok\n"
    else:
        assert r.returncode == -signal.SIGILL
        assert "cannot be executed" in one_error_line(r.stderr)


# ---- signals delivered to the payload ----------------------------------------

@needs_kvm
def test_sigterm_sent_to_km_runs_the_payloads_handler():
    p = start_payload([payload("sigterm")], "ready")
    try:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert (p.returncode, out, err) == (0, "got SIGTERM\n", "")


@needs_kvm
@pytest.mark.parametrize("name, status", [("sleeper", -signal.SIGTERM), ("sigterm", 0)])
def test_signal_just_before_a_blocking_call_is_not_lost(name, status):
    """SIGTERM sent as soon as the payload says "ready" often lands while KM is between
    the guest's nanosleep hypercall and the host's nanosleep: it must still end it."""
    for _ in range(40):
        p = start_payload([payload(name)], "ready")
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(timeout=5) == status
        finally:
            if p.poll() is None:
                p.kill()
            p.communicate()


@needs_kvm
def test_signal_reaches_a_handler_while_the_guest_spins():
    """No hypercall to return from: KVM_RUN is stopped by immediate_exit."""
    p = start_payload([payload("signals"), "spin"], "spinning")
    try:
        time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert (p.returncode, out, err) == (0, "got SIGTERM while busy\n", "")


@needs_kvm
def test_signal_delivery_follows_linux():
    """Frames, masks, flags, faults with handlers, restarts, sigaltstack (tests/signals.c)."""
    r = km(payload("signals"), timeout=20)
    assert r.returncode == 0, r.stderr
    kv = key_values(r.stdout)
    expected = {k: "ok" for k in [
        "basic", "info", "aligned", "blocked_in_handler", "uc_sigmask", "mask_restored",
        "syscall_restorer", "blocked_stays_pending", "delivered_on_unblock", "sa_mask",
        "nodefer", "resethand", "ignored", "nested", "sigsuspend", "segv_handler",
        "fault_context", "ill_handler", "fpe_handler", "trap_handler", "gs_slot", "nanosleep",
        "altstack", "altstack_after"]}
    expected.update({
        "sigaction_kill": "EINVAL", "sigaction_65": "EINVAL", "altstack_small": "ENOMEM",
        "restart": "1", "restart_syscall": "1",             # SA_RESTART: the read went on
        "no_restart": "EINTR", "no_restart_syscall": "EINTR",
    })
    assert {k: kv.get(k) for k in expected} == expected
    assert r.stderr == ""


@needs_kvm
@pytest.mark.parametrize("sig, core", [
    (signal.SIGTERM, False), (signal.SIGUSR1, False), (signal.SIGALRM, False),
    (signal.SIGQUIT, True), (signal.SIGABRT, True),
])
def test_default_action_kills_km_with_the_signal(tmp_path, sig, core):
    r = km(payload("signals"), "die", int(sig), cwd=tmp_path)
    assert r.returncode == -sig
    assert (tmp_path / "kmcore").exists() == core
    if core:
        assert one_error_line(r.stderr) == (f"km: payload killed by signal {int(sig)} "
                                            f"(SIG{sig.name[3:]}); core dumped to ./kmcore")


@needs_kvm
@pytest.mark.parametrize("sig", [signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG])
def test_default_ignore_signals_are_ignored(sig):
    r = km(payload("signals"), "die", int(sig))
    assert r.returncode == 1
    assert r.stdout == f"signals: still alive after signal {int(sig)}\n"


@needs_kvm
@pytest.mark.parametrize("mode, message", [
    ("blocked-fault", "page fault (#PF) reading address 0x8"),   # a blocked fault signal kills
    ("no-restorer", "cannot deliver signal 10 to the payload"),  # x86-64 needs SA_RESTORER
])
def test_undeliverable_signals_kill_with_sigsegv(tmp_path, mode, message):
    r = km(payload("signals"), mode, cwd=tmp_path)
    assert r.returncode == -signal.SIGSEGV
    assert message in one_error_line(r.stderr)


def preexec(ignore=(), block=()):
    def setup():
        no_core_dumps()
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, block)
    return setup


@needs_kvm
@pytest.mark.parametrize("via_execve", [False, True])
def test_ignored_and_blocked_signals_are_inherited(via_execve):
    """As a process inherits them over exec (and keeps them across execve)."""
    exec_prefix = [payload("execer"), payload("signals")] if via_execve else [payload("signals")]
    for how in ({"ignore": [signal.SIGUSR1]}, {"block": [signal.SIGUSR1]}):
        r = km(*exec_prefix, "die", int(signal.SIGUSR1), preexec_fn=preexec(**how))
        assert (r.returncode, r.stdout) == (1, "signals: still alive after signal 10\n"), how


@needs_kvm
@pytest.mark.parametrize("name, sig", [("sigill", signal.SIGILL), ("sigsegv", signal.SIGSEGV)])
def test_fault_payloads_kill_km_with_their_signal(tmp_path, name, sig):
    r = km(payload(name), cwd=tmp_path)
    assert r.returncode == -sig
    line = one_error_line(r.stderr)
    assert line.startswith("km: guest fault: ") and line.endswith("; core dumped to ./kmcore")
    assert (tmp_path / "kmcore").exists()


@needs_kvm
def test_shell_sees_128_plus_n(tmp_path):
    script = ('"$KM" -k none "$P/sigill.km"; echo "sigill=$?"; '
              '"$KM" -k none "$P/sigsegv.km"; echo "sigsegv=$?"; '
              '"$KM" -k none "$P/sleeper.km" & sleep 0.2; kill -TERM $!; wait $!; '
              'echo "sigterm=$?"')
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT,
                       cwd=tmp_path, env=dict(os.environ, KM=str(KM), P=str(PAYLOADS)))
    assert key_values(r.stdout) == {"sigill": "132", "sigsegv": "139", "sigterm": "143"}


def km_children(pid):
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@needs_kvm
def test_signal_death_as_pid_1_takes_2s_and_ends_in_sigsegv(tmp_path):
    """KM re-raises the payload's signal on itself; as the first process of a pid
    namespace the kernel ignores that, so KM says so, waits 2 s and aborts (139).
    Both cases run at once to keep the suite fast."""
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("cannot create a pid namespace here")
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    start = time.monotonic()
    fault = subprocess.Popen([*prefix, str(KM), "--km-log-to=stderr", str(payload("sigill"))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    term = start_payload([payload("sleeper")], "ready", prefix)
    try:
        term_start = time.monotonic()
        children = km_children(term.pid)
        assert len(children) == 1
        os.kill(children[0], signal.SIGTERM)        # from outside: KM's handler takes it
        _, term_err = term.communicate(timeout=10)
        term_time = time.monotonic() - term_start
        _, fault_err = fault.communicate(timeout=10)
        fault_time = time.monotonic() - start
    finally:
        for p in (fault, term):
            if p.poll() is None:
                p.kill()
                p.communicate()
    # unshare --fork dies of its child's signal: KM's final SIGSEGV.
    assert (fault.returncode, term.returncode) == (-signal.SIGSEGV, -signal.SIGSEGV)
    assert "km: signal 4 didn't terminate this instance of km?" in fault_err.splitlines()
    assert "km: signal 15 didn't terminate this instance of km?" in term_err.splitlines()
    assert 1.9 < fault_time < 5 and 1.9 < term_time < 5


# ---- execve --------------------------------------------------------------------

@needs_kvm
def test_execve_runs_the_new_payload_under_km():
    r = km("--putenv", "A=1", payload("execer"), payload("args"), "x", "two words",
           env={"PATH": "/bin", "HOSTVAR": "h"})
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [f"argv[0]={payload('args')}", "argv[1]=x",
                                     "argv[2]=two words", "env=A=1"]


@needs_kvm
def test_execve_chain_and_default_target():
    r = km(payload("execer"), payload("execer"), payload("execer"), payload("hello"))
    assert (r.returncode, r.stdout) == (0, "Hello from Kontain!\n")


@needs_kvm
def test_execve_keeps_logging_to_the_same_relative_log(tmp_path):
    r = km("-k", "rel.log", "--verbose=^exit", payload("execer"), payload("hello"),
           cwd=tmp_path, log=None)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello from Kontain!\n", "")
    text = (tmp_path / "rel.log").read_text()
    assert f'execve("{payload("hello")}"): re-executing KM' in text
    assert "hc exit_group(0x0)" in text


@needs_kvm
def test_execve_keeps_pid_and_inherited_descriptors(tmp_path):
    keep = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(keep, True)
    try:
        p = subprocess.Popen([str(KM), "--km-log-to=stderr", str(payload("execer")),
                              str(payload("hcalls"))], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path, pass_fds=(keep,))
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        os.close(keep)
    assert p.returncode == 0, err
    kv = key_values(out)
    assert kv["getpid"] == str(p.pid)
    assert str(keep) in kv["visible_fds"].split(",")


@needs_kvm
def test_execve_failures_return_to_the_caller(tmp_path):
    text = tmp_path / "text"
    text.write_text("neither ELF nor script\n")
    text.chmod(0o755)
    noexec = tmp_path / "noexec.km"
    shutil.copy(payload("hello"), noexec)
    noexec.chmod(0o644)
    core = tmp_path / "core"
    core.write_bytes(patched(payload("hello").read_bytes(), 16, "<H", 4))    # ET_CORE
    core.chmod(0o755)
    for target, errno_name in [("/nonexistent", "ENOENT"), (text, "ENOEXEC"),
                               (noexec, "EACCES"), (core, "ENOEXEC"), (tmp_path, "EACCES")]:
        r = km(payload("execer"), target)
        assert (r.returncode, r.stdout) == (1, ""), target
        assert r.stderr == f"execer: execve {target}: {errno_name}\n"


# ---- a root like a container's: /ld-krun.so, /script.sh -------------------------

@pytest.fixture
def kmroot(tmp_path):
    """A directory to chroot KM into: KM, payloads, the loader, /dev/kvm and /proc."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "proc").mkdir()
    shutil.copy(KM, root / "km")
    for name in ("dyn", "args", "execer", "hello", "sigsegv"):
        shutil.copy(payload(name), root / f"{name}.km")
    shutil.copy(PAYLOADS / "ld-krun.so", root / "ld-krun.so")
    shutil.copy(PAYLOADS / "script.sh", root / "script.sh")
    st = os.stat("/dev/kvm")
    os.mknod(root / "dev" / "kvm", st.st_mode, st.st_rdev)
    return root


def km_in(root, *args, with_proc=False):
    """KM run in `root` as its /; with_proc mounts a /proc there (execve needs it)."""
    prefix = ["unshare", "--mount", f"--mount-proc={root}/proc"] if with_proc else []
    return subprocess.run([*prefix, "chroot", str(root), "/km", "--km-log-to=stderr",
                           *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)


@needs_kvm
def test_dynamic_payload_runs_with_its_loader(kmroot):
    r = km_in(kmroot, "/dyn.km")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello from a dynamic payload\n", "")


@needs_kvm
def test_loader_run_alone_sees_no_at_base(kmroot):
    r = km_in(kmroot, "/ld-krun.so")
    assert r.returncode == 127
    assert r.stderr == "ld-krun.so: run directly, not as a PT_INTERP loader\n"


@pytest.mark.parametrize("loader, message, code", [
    (None, "km: /dyn.km: interpreter /ld-krun.so: no such file or directory", 127),
    ("text", "km: /dyn.km: interpreter /ld-krun.so: not an ELF file", 126),
    ("dyn", "km: /dyn.km: interpreter /ld-krun.so: has a PT_INTERP itself (/ld-krun.so); "
            "a loader must be static", 126),
])
def test_bad_loader_is_refused(kmroot, loader, message, code):
    target = kmroot / "ld-krun.so"
    target.unlink()
    if loader == "text":
        target.write_text("not a loader\n")
    elif loader == "dyn":
        shutil.copy(payload("dyn"), target)
    r = km_in(kmroot, "/dyn.km")
    assert r.returncode == code
    assert one_error_line(r.stderr) == message


def test_missing_loader_on_the_host():
    if os.path.exists("/ld-krun.so"):
        pytest.skip("/ld-krun.so exists on this host")
    r = km(payload("dyn"))
    assert r.returncode == 127
    assert one_error_line(r.stderr).endswith("interpreter /ld-krun.so: no such file or directory")


@needs_kvm
def test_script_sh_runs_args_km(kmroot):
    r = km_in(kmroot, "/script.sh", "one", "two words", "")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("argv[")] == [
        "argv[0]=/args.km", "argv[1]=xarg", "argv[2]=/script.sh", "argv[3]=one",
        "argv[4]=two words", "argv[5]="]


def test_script_sh_is_installed_executable():
    script = PAYLOADS / "script.sh"
    assert script.read_text() == "#!/args.km xarg\n"
    assert script.stat().st_mode & 0o777 == 0o755


@needs_kvm
def test_execve_of_dynamic_and_script_payloads(kmroot):
    r = km_in(kmroot, "/execer.km", "/dyn.km", with_proc=True)
    assert (r.returncode, r.stdout) == (0, "hello from a dynamic payload\n"), r.stderr
    r = km_in(kmroot, "/execer.km", "/script.sh", "z", with_proc=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:4] == ["argv[0]=/args.km", "argv[1]=xarg",
                                         "argv[2]=/script.sh", "argv[3]=z"]


# ---- #! scripts --------------------------------------------------------------------

def script_file(tmp_path, first_line, name="s.sh"):
    path = tmp_path / name
    path.write_text(first_line + "\necho the rest is for the interpreter\n")
    path.chmod(0o755)
    return path


def argv_lines(stdout):
    return [line.split("=", 1)[1] for line in stdout.splitlines() if line.startswith("argv[")]


@needs_kvm
@pytest.mark.parametrize("line, args", [
    ("#!{args}", []),
    ("#!{args} opt", ["opt"]),
    ("#! \t{args}   one arg, kept whole  \t", ["one arg, kept whole"]),
])
def test_shebang_runs_the_interpreter(tmp_path, line, args):
    path = script_file(tmp_path, line.format(args=payload("args")))
    r = km(path, "a", "b c")
    assert r.returncode == 0, r.stderr
    assert argv_lines(r.stdout) == [str(payload("args")), *args, str(path), "a", "b c"]


@needs_kvm
def test_shebang_argument_is_cut_at_255_bytes(tmp_path):
    interp = str(payload("args"))
    path = script_file(tmp_path, f"#!{interp} " + "x" * 400)
    r = km(path)
    assert r.returncode == 0, r.stderr
    assert argv_lines(r.stdout)[1] == "x" * (255 - 3 - len(interp))


@pytest.mark.parametrize("line, message, code", [
    ("#!/nonexistent/interp", "s.sh: bad interpreter: /nonexistent/interp: "
                              "no such file or directory", 127),
    ("#!", "s.sh: #! line names no interpreter", 126),
    ("#!   ", "s.sh: #! line names no interpreter", 126),
    ("#!/" + "x" * 300, "s.sh: #! line too long", 126),
    ("#!{other}", "s.sh: interpreter {other} is a script too", 126),
    ("#!{text}", "s.sh: bad interpreter: {text}: not an ELF file", 126),
])
def test_bad_shebang_is_refused(tmp_path, line, message, code):
    other = script_file(tmp_path, f"#!{payload('args')}", "other.sh")
    text = tmp_path / "text"
    text.write_text("plain text\n")
    path = script_file(tmp_path, line.format(other=other, text=text))
    r = km(path)
    assert r.returncode == code
    assert message.format(other=other, text=text) in one_error_line(r.stderr)


# ---- core files and snapshots --------------------------------------------------------

def elf_segments(data):
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]


def elf_notes(data, offset, size):
    notes, end = {}, offset + size
    while offset < end:
        namesz, descsz, ntype = struct.unpack_from("<III", data, offset)
        desc = offset + 12 + (namesz + 3) // 4 * 4
        notes[ntype] = data[desc:desc + descsz]
        offset = desc + (descsz + 3) // 4 * 4
    return notes


NT_PRSTATUS, NT_PRPSINFO = 1, 3
PR_REG = 112            # offset of pr_reg in x86-64 struct elf_prstatus
USER_REGS = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base"]


@needs_kvm
def test_core_file_describes_the_guest(tmp_path):
    p = subprocess.Popen([str(KM), "--km-log-to=stderr", str(payload("sigsegv"))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    p.communicate(timeout=TIMEOUT)
    assert p.returncode == -signal.SIGSEGV
    core = (tmp_path / "kmcore").read_bytes()
    assert core[:4] == b"\x7fELF" and core[4] == 2 and core[5] == 1       # 64-bit LSB
    assert struct.unpack_from("<HH", core, 16) == (4, 62)                 # ET_CORE, EM_X86_64
    segments = elf_segments(core)
    assert segments[0][0] == 4                                             # PT_NOTE first
    notes = elf_notes(core, segments[0][2], segments[0][5])
    prstatus = notes[NT_PRSTATUS]
    assert struct.unpack_from("<h", prstatus, 12)[0] == signal.SIGSEGV    # pr_cursig
    assert struct.unpack_from("<i", prstatus, 32)[0] == p.pid             # pr_pid
    regs = dict(zip(USER_REGS, struct.unpack_from("<22Q", prstatus, PR_REG), strict=True))
    assert b"sigsegv.km" in notes[NT_PRPSINFO]

    exe = payload("sigsegv").read_bytes()
    text = [s for s in elf_segments(exe) if s[0] == 1 and s[1] & 1]      # PT_LOAD, PF_X
    assert any(s[3] <= regs["rip"] < s[3] + s[6] for s in text)           # RIP in its code
    loads = [s for s in segments if s[0] == 1]
    assert any(s[3] <= regs["rsp"] < s[3] + s[6] for s in loads)          # stack is in the core
    image = next(s for s in loads if s[3] == 0x200000)
    first = next(s for s in elf_segments(exe) if s[0] == 1)
    assert core[image[2]:image[2] + first[5]] == exe[first[2]:first[2] + first[5]]


@needs_kvm
def test_core_file_is_readable_by_gdb(tmp_path):
    if not shutil.which("gdb"):
        pytest.skip("no gdb")
    assert km(payload("sigsegv"), cwd=tmp_path).returncode == -signal.SIGSEGV
    r = subprocess.run(["gdb", "-batch", "-ex", "bt", str(payload("sigsegv")),
                        str(tmp_path / "kmcore")], capture_output=True, text=True, timeout=60)
    assert "Program terminated with signal SIGSEGV" in r.stdout
    assert re.search(r"#0 .* in main \(\)", r.stdout), r.stdout


@needs_kvm
def test_coredump_option_and_unwritable_core(tmp_path):
    core = tmp_path / "sub" / "my.core"
    core.parent.mkdir()
    r = km(f"--coredump={core}", payload("sigill"), cwd=tmp_path)
    assert r.returncode == -signal.SIGILL
    assert one_error_line(r.stderr).endswith(f"; core dumped to {core}")
    assert core.read_bytes()[:4] == b"\x7fELF" and not (tmp_path / "kmcore").exists()
    r = km("--coredump=/nonexistent-dir/core", payload("sigill"), cwd=tmp_path)
    assert r.returncode == -signal.SIGILL
    assert one_error_line(r.stderr).endswith(
        "; cannot write the core file /nonexistent-dir/core: no such file or directory")


@needs_kvm
def test_core_file_is_not_a_snapshot(tmp_path):
    """KM's own core file is an ET_CORE, the shape of its snapshots, without their
    notes: refused in one line (tests/test_km_snapshot.py resumes real ones)."""
    assert km(payload("sigsegv"), cwd=tmp_path).returncode == -signal.SIGSEGV
    r = km(tmp_path / "kmcore")
    assert r.returncode == 1
    assert one_error_line(r.stderr) == (
        f"km: SNAP: {tmp_path / 'kmcore'}: not a valid snapshot: it has no krun-km notes "
        "(an ELF core file, not a krun-km snapshot?)")


def test_et_core_header_is_refused_before_kvm(tmp_path):
    path = tmp_path / "snap.km"
    path.write_bytes(patched(payload("hello").read_bytes(), 16, "<H", 4))
    r = km("--virt-device=/nonexistent", path)
    assert r.returncode == 1
    assert one_error_line(r.stderr).startswith(f"km: SNAP: {path}: not a valid snapshot: ")


# ---- options ----------------------------------------------------------------------

@needs_kvm
def test_argv0_option():
    r = km("--argv0=renamed", payload("args"), "x")
    assert argv_lines(r.stdout) == ["renamed", "x"]


@pytest.mark.parametrize("value", ["", "xyz", "12g"])
def test_sigmask_needs_hex(value):
    r = km(f"--sigmask={value}", "x.km")
    assert r.returncode == 2
    assert "--sigmask needs a hexadecimal mask" in r.stderr


# ---- payloads outside KM -----------------------------------------------------

NATIVE_DEATH = {"sigill": -signal.SIGILL}     # its first instruction is ud2, not a hypercall


@pytest.mark.parametrize("name", [n for n in EXAMPLES + TEST_ONLY if n != "dyn"])
def test_payload_crashes_natively(name):
    r = subprocess.run([str(payload(name))], capture_output=True, timeout=TIMEOUT,
                       preexec_fn=no_core_dumps)
    assert r.returncode == NATIVE_DEATH.get(name, -signal.SIGSEGV)


def test_dynamic_payload_needs_its_loader_natively():
    """Linux cannot start dyn.km on the host: /ld-krun.so exists only in a payload's root."""
    if os.path.exists("/ld-krun.so"):
        pytest.skip("/ld-krun.so exists on this host")
    with pytest.raises(FileNotFoundError):
        subprocess.run([str(payload("dyn"))], capture_output=True, timeout=TIMEOUT)


# ---- scripts/build-km --------------------------------------------------------

def build_km(dest):
    env = dict(os.environ, KM_INSTALL_PATH=str(dest))
    return subprocess.run([str(REPO / "scripts" / "build-km")], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.skipif(os.geteuid() != 0, reason="build-km installs as root")
def test_build_km_installs_once(tmp_path):
    dest = tmp_path / "opt" / "km"
    first = build_km(dest)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stdout
    assert dest.read_bytes() == KM.read_bytes()
    st = dest.stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o755, 0)
    second = build_km(dest)
    assert (second.returncode, second.stdout) == (0, "")


@pytest.mark.skipif(os.geteuid() != 0, reason="build-km installs as root")
def test_build_km_replaces_an_older_krun_km(tmp_path):
    dest = tmp_path / "km"
    dest.write_text("#!/bin/sh\necho 'krun-km 0.0.1 (old)'\n")
    dest.chmod(0o755)
    r = build_km(dest)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == KM.read_bytes()


def test_build_km_never_overwrites_a_real_kontain_km(tmp_path):
    dest = tmp_path / "km"
    foreign = "#!/bin/sh\necho 'Kontain Monitor version 0.1-beta'\n"
    dest.write_text(foreign)
    dest.chmod(0o755)
    r = build_km(dest)
    assert r.returncode == 0, r.stderr
    assert "leaving it alone" in r.stderr
    assert dest.read_text() == foreign


# ---- scripts/bench-km --------------------------------------------------------

@needs_kvm
def test_bench_km_prints_a_table():
    r = subprocess.run([str(REPO / "scripts" / "bench-km"), "--runs", "2", "--warmup", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[1].strip(): line for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| command")}
    assert set(rows) == {"km hello.km", "native-hello"}
    rss = int(rows["km hello.km"].split("|")[5])
    assert 0 < rss < 64 * 1024       # KiB: KM itself, not the Python that started it
