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

EXAMPLES = ["hello", "args", "exit", "sleeper", "files", "uname"]
TEST_ONLY = ["fault", "efault", "hcalls", "kstart", "syscall", "lowaddr", "pie"]


def payload(name):
    return PAYLOADS / f"{name}.km" if name in EXAMPLES else PAYLOADS / "tests" / f"{name}.km"


@pytest.fixture(scope="session", autouse=True)
def built():
    for directory in (REPO / "native" / "km", PAYLOADS):
        r = subprocess.run(["make", "-s", "-C", str(directory)], capture_output=True, text=True)
        assert r.returncode == 0, f"make in {directory} failed:\n{r.stdout}{r.stderr}"
    assert KM.exists()


def km(*args, timeout=TIMEOUT, **kwargs):
    return subprocess.run([str(KM), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


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
        "text": b"#!/bin/sh\necho this is not an ELF file\n",
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
    ("core", "snapshots (ET_CORE) are not supported"),
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


def test_dynamic_elf_is_rejected():
    true = Path("/bin/true")
    if not true.exists() or b"ld-linux" not in true.read_bytes()[:4096]:
        pytest.skip("/bin/true is not a dynamically linked ELF here")
    r = km(true)
    assert r.returncode == 126
    assert "dynamically linked" in one_error_line(r.stderr)


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

        r = subprocess.run([str(km_copy), str(target)], capture_output=True, text=True,
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
    r = km("--verbose", "-k", log, payload("hello"))
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
    r = km(f"--km-log-to={log}", "--verbose", payload("hcalls"), cwd=tmp_path)
    assert r.returncode == 0
    assert "hc hypercall_500(0x0, 0x0, 0x0, 0x0, 0x0, 0x0) = -95 (EOPNOTSUPP)" in log.read_text()


@needs_kvm
def test_log_file_gets_errors_too(tmp_path):
    log = tmp_path / "km.log"
    r = km("-k", log, payload("fault"), "ud2")
    assert r.returncode == 132
    assert "guest fault: invalid opcode" in r.stderr
    assert "guest fault: invalid opcode" in log.read_text()


# ---- signals ---------------------------------------------------------------

def start_payload(args, ready_line, prefix=()):
    p = subprocess.Popen([*prefix, str(KM), *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if not wait_for_line(p.stdout, ready_line):
        p.kill()
        p.communicate()
        pytest.fail(f"{args} did not print {ready_line!r}")
    return p


def start_sleeper(*prefix):
    return start_payload([payload("sleeper")], "ready", prefix)


@needs_kvm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_ends_km_with_128_plus_signo(sig):
    p = start_sleeper()
    try:
        p.send_signal(sig)
        assert p.wait(timeout=10) == 128 + sig
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
        assert p.wait(timeout=10) == 128 + signal.SIGTERM
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


@needs_kvm
def test_sigterm_ends_km_running_as_pid_1():
    """As a container's pid 1, only handled signals arrive: KM must handle them."""
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a pid namespace here")
    p = start_sleeper("unshare", "--pid", "--fork", "--kill-child")
    try:
        children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGTERM)
        assert p.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


# ---- guest faults ------------------------------------------------------------

@needs_kvm
@pytest.mark.parametrize("mode, code, message", [
    ("ud2", 132, "invalid opcode (#UD)"),
    ("null", 139, "page fault (#PF) reading address 0x8 (not mapped)"),
    ("unmapped", 139, "page fault (#PF) reading address 0x50000000 (not mapped)"),
    ("jump", 139, "page fault (#PF) executing address 0x50000000"),
    ("gp", 139, "general protection fault (#GP)"),
    ("div0", 136, "divide error (#DE)"),
    ("write-ro", 139, "writing address 0x40000000 (protection violation)"),
    ("wild-rsp", 139, "writing address 0x8"),
    ("port", 139, "I/O to port 0x1234 (not a hypercall)"),
    ("hlt", 134, "hlt instruction"),
    ("badblock", 139, "argument block 0x10 outside guest memory"),
    ("unbacked", 139, "reading address 0x10000000 (outside allocated guest memory)"),
    ("unbacked-write", 139, "writing address 0x10000000 (outside allocated guest memory)"),
    ("unbacked-jump", 139, "executing outside guest memory"),
])
def test_guest_fault_is_reported(mode, code, message):
    r = km(payload("fault"), mode, timeout=20)
    assert r.returncode == code
    line = one_error_line(r.stderr)
    assert line.startswith("km: guest fault: ") and message in line, line
    assert re.search(r"at RIP 0x[0-9a-f]+$", line), line
    assert "did not fault" not in r.stdout


@needs_kvm
def test_sse_works_or_is_reported():
    """Nested hosts may not give guests SSE; then KM must say so, not hang."""
    r = km(payload("fault"), "sse", timeout=20)
    if r.returncode == 0:
        assert r.stdout == "sse ok\n"
    else:
        assert r.returncode == 132
        assert "cannot be executed" in one_error_line(r.stderr)


# ---- payloads outside KM -----------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES + TEST_ONLY)
def test_payload_crashes_natively(name):
    r = subprocess.run([str(payload(name))], capture_output=True, timeout=TIMEOUT,
                       preexec_fn=no_core_dumps)
    assert r.returncode == -signal.SIGSEGV


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
