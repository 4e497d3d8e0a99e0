"""Snapshots in krun-km (native/km): hypercall 505, the management socket
(--mgtpipe / --mgt-fd), resume (`km SNAPSHOT`), and hostile snapshot files.

Self-contained like tests/test_km.py: the session fixture builds the monitor
and the payloads; tests that run a guest need /dev/kvm.
"""
import array
import os
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KM = REPO / "native" / "km" / "build" / "km"
PAYLOADS = REPO / "km_payloads"
TIMEOUT = 30
VERSION = "krun-km 0.2.0"

needs_kvm = pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm")

PT_LOAD, PT_NOTE = 1, 4
NT_KM_IDENT, NT_KM_CHECK = 0x4B520001, 0x4B520007


def payload(name):
    p = PAYLOADS / f"{name}.km"
    return p if p.exists() else PAYLOADS / "tests" / f"{name}.km"


@pytest.fixture(scope="session", autouse=True)
def built():
    for directory in (REPO / "native" / "km", PAYLOADS):
        r = subprocess.run(["make", "-s", "-C", str(directory)], capture_output=True, text=True)
        assert r.returncode == 0, f"make in {directory} failed:\n{r.stdout}{r.stderr}"
    assert KM.exists()


def km(*args, timeout=TIMEOUT, **kwargs):
    return subprocess.run([str(KM), "--km-log-to=stderr", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


class Guest:
    """A KM process whose stdout is read line by line with timeouts."""

    def __init__(self, args, cwd=None, pass_fds=()):
        self.p = subprocess.Popen([str(KM), "--km-log-to=stderr", *map(str, args)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, cwd=cwd, pass_fds=pass_fds)
        self.buf = b""
        self.started = time.monotonic()

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.line(deadline - time.monotonic())
            if line is None:
                break
            seen.append(line)
            if pred(line):
                return seen
        self.kill()
        pytest.fail(f"no expected line; saw {seen!r}; stderr {self.p.stderr.read()!r}")

    def wait(self, timeout=TIMEOUT):
        rc = self.p.wait(timeout)
        rest = self.buf + self.p.stdout.read()
        self.buf = b""
        return rc, rest.decode(), self.p.stderr.read().decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


@pytest.fixture
def guests():
    started = []

    def start(*args, **kwargs):
        g = Guest(*args, **kwargs)
        started.append(g)
        return g
    yield start
    for g in started:
        if g.p.poll() is None:
            g.p.kill()
        g.p.wait()


def tick(line):
    assert line.startswith("tick "), line
    return int(line.split()[1])


def request(sock_path, text, fds=(), timeout=10):
    """One management request; returns (reply, seconds from sendmsg to the reply)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock_path))
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    t0 = time.monotonic()
    s.sendmsg([text.encode()], anc)
    elapsed = None
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
        if data.endswith(b"\n") and elapsed is None:
            elapsed = time.monotonic() - t0
    s.close()
    return data.decode(), elapsed if elapsed is not None else time.monotonic() - t0


def snapshot_into(sock_path, out, live, label=None):
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        text = f"snapshot live={live}" + (f" label={label}" if label else "") + "\n"
        return request(sock_path, text, [fd])
    finally:
        os.close(fd)


class MgtSocket:
    """--mgtpipe=PATH (KM binds it) or --mgt-fd=N (the test binds and passes it)."""

    def __init__(self, kind, tmp_path):
        self.path = tmp_path / "mgt.sock"
        self.kind = kind
        self.sock = None
        if kind == "fd":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(str(self.path))
            self.sock.listen(4)
            self.sock.set_inheritable(True)

    def options(self):
        if self.kind == "fd":
            return [f"--mgt-fd={self.sock.fileno()}"]
        return [f"--mgtpipe={self.path}"]

    def pass_fds(self):
        return (self.sock.fileno(),) if self.sock else ()

    def wait_ready(self):
        deadline = time.monotonic() + 10
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self):
        if self.sock:
            self.sock.close()


@pytest.fixture(params=["pipe", "fd"])
def mgt(request, tmp_path):
    m = MgtSocket(request.param, tmp_path)
    yield m
    m.close()


def start_with_mgt(guests, mgt, args, cwd=None):
    g = guests([*mgt.options(), *args], cwd=cwd, pass_fds=mgt.pass_fds())
    mgt.wait_ready()
    return g


# ---- ELF helpers for hostile files -----------------------------------------

def fnv(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def phdrs(data):
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    return [(phoff + 56 * i, struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i))
            for i in range(phnum)]


def notes(data):
    """[(type, name, desc_offset, desc_size)] of the PT_NOTE segment."""
    note = next(p for _, p in phdrs(data) if p[0] == PT_NOTE)
    off, end, out = note[2], note[2] + note[5], []
    while off < end:
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        name = data[off + 12:off + 12 + namesz].rstrip(b"\0").decode()
        desc = off + 12 + ((namesz + 3) & ~3)
        out.append((ntype, name, desc, descsz))
        off = desc + ((descsz + 3) & ~3)
    return out


def fix_checksum(data):
    data = bytearray(data)
    _, _, desc, _ = next(n for n in notes(data) if n[0] == NT_KM_CHECK)
    struct.pack_into("<Q", data, desc, fnv(data[:desc]))
    return bytes(data)


def ident_offset(data):
    return next(n[2] for n in notes(data) if n[0] == NT_KM_IDENT and n[1] == "KRUN")


@pytest.fixture(scope="module")
def counter_snapshot(tmp_path_factory):
    """A non-live snapshot of counter.km taken by the management socket."""
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm")
    d = tmp_path_factory.mktemp("counter")
    m = MgtSocket("pipe", d)
    g = Guest([*m.options(), payload("counter")])
    m.wait_ready()
    try:
        g.until(lambda line: line == "tick 3")
        reply, _ = snapshot_into(m.path, d / "snap", 0)
        assert reply.startswith("ok "), reply
        assert g.wait()[0] == 0
    finally:
        g.kill()
    return (d / "snap").read_bytes()


def refused(tmp_path, data, name="bad"):
    f = tmp_path / name
    f.write_bytes(data)
    r = km(f, timeout=10)
    lines = r.stderr.splitlines()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("km: SNAP: "), r.stderr
    assert r.stdout == ""
    return lines[0]


# ---- hypercall 505 ---------------------------------------------------------

@needs_kvm
def test_hypercall_snapshot_not_live_exits_0_and_resumes(tmp_path):
    snap = tmp_path / "snap"
    r = km(f"--snapshot={snap}", payload("snapself"), "", tmp_path / "data", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "snapshotting\n", "")
    assert (tmp_path / "data").read_text() == "before\n"
    assert not list(tmp_path.glob("snap.tmp*")), "the temporary file is renamed"
    r = km(snap, cwd="/")
    assert (r.returncode, r.stdout, r.stderr) == (0, "after snapshot rc=0\nbye\n", "")
    assert (tmp_path / "data").read_text() == "before\nafter\n"


@needs_kvm
def test_hypercall_snapshot_live_goes_on_and_resumes(tmp_path):
    r = km(payload("snapself"), "live", tmp_path / "data", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "snapshotting\nafter snapshot rc=0\nbye\n", "")
    assert (tmp_path / "kmsnap").exists(), "the default is ./kmsnap"
    r = km(tmp_path / "kmsnap")
    assert (r.returncode, r.stdout) == (0, "after snapshot rc=0\nbye\n")


@needs_kvm
def test_hypercall_snapshot_refuses_a_pipe_and_the_payload_goes_on(tmp_path):
    r = km(payload("snapself"), "pipe", tmp_path / "data", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout == "snapshotting\nafter snapshot rc=-95 (ENOTSUP)\nbye\n"
    assert r.stderr.startswith("km: SNAP: cannot snapshot: guest fd 4 is a pipe"), r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "kmsnap").exists()


@needs_kvm
def test_hypercall_snapshot_bad_label_pointer_is_efault(tmp_path):
    r = km(payload("snapself"), "bad", tmp_path / "data", cwd=tmp_path)
    assert r.stdout == "snapshotting\nafter snapshot rc=-14 (EFAULT)\nbye\n"


@needs_kvm
def test_payload_arguments_after_a_snapshot_are_a_usage_error(counter_snapshot, tmp_path):
    f = tmp_path / "snap"
    f.write_bytes(counter_snapshot)
    r = km(f, "extra")
    assert r.returncode == 2
    assert "a snapshot takes no payload arguments" in r.stderr


# ---- the management socket -------------------------------------------------

@needs_kvm
@pytest.mark.parametrize("live", [0, 1])
def test_mgt_snapshot_of_a_sleeping_counter_then_resume(guests, mgt, tmp_path, live):
    g = start_with_mgt(guests, mgt, [payload("counter")])
    last = tick(g.until(lambda line: line == "tick 3")[-1])
    snap = tmp_path / "snap"
    reply, elapsed = snapshot_into(mgt.path, snap, live, label="t1")
    print(f"\nmgt {mgt.kind} live={live}: reply {reply.strip()!r} in {elapsed * 1000:.1f} ms")
    assert reply == f"ok {snap.stat().st_size}\n"
    assert elapsed < 0.5
    if live:
        after = [tick(g.line()) for _ in range(3)]
        assert after == list(range(after[0], after[0] + 3)) and after[0] > last
        last = after[0] - 1
        g.kill()
    else:
        rc, rest, err = g.wait(10)
        assert (rc, err) == (0, "")
        ticks = [tick(line) for line in rest.splitlines()]
        last = ticks[-1] if ticks else last
        assert not mgt.path.exists() or mgt.kind == "fd", "--mgtpipe unlinks at exit"
    r = guests([snap])
    first = [tick(r.line()) for _ in range(3)]
    assert first[0] > last if live else first[0] == last + 1
    assert first == list(range(first[0], first[0] + 3))


@needs_kvm
@pytest.mark.parametrize("live", [0, 1])
def test_mgt_snapshot_of_a_busy_guest_keeps_its_signal_handlers(guests, tmp_path, live):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("signals"), "spin"])
    g.until(lambda line: line == "spinning")
    time.sleep(0.1)
    snap = tmp_path / "snap"
    reply, elapsed = snapshot_into(mgt.path, snap, live)
    assert reply.startswith("ok ") and elapsed < 0.5, (reply, elapsed)
    if not live:
        assert g.wait(10)[0] == 0
        g = guests([snap])
        time.sleep(0.3)
    g.p.send_signal(signal.SIGTERM)
    g.until(lambda line: line == "got SIGTERM while busy")
    assert g.wait(10)[0] == 0


@needs_kvm
def test_mgt_snapshot_does_not_shorten_or_interrupt_a_sleep(guests, tmp_path):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("sleeper"), "2"])
    g.until(lambda line: line == "ready")
    t0 = time.monotonic()
    time.sleep(0.5)
    for i in range(3):
        reply, _ = snapshot_into(mgt.path, tmp_path / f"snap{i}", 1)
        assert reply.startswith("ok "), reply
    rc, out, err = g.wait(10)
    took = time.monotonic() - t0
    assert (rc, out, err) == (0, "", "")
    assert 1.3 < took < 2.5, took


@needs_kvm
def test_snapfile_offset_survives_external_snapshot_and_resume(guests, tmp_path):
    mgt = MgtSocket("pipe", tmp_path)
    data = tmp_path / "out.txt"
    g = start_with_mgt(guests, mgt, [payload("snapfile"), data])
    g.until(lambda line: line == "wrote first half")
    reply, _ = snapshot_into(mgt.path, tmp_path / "snap", 0)
    assert reply.startswith("ok "), reply
    assert g.wait(10)[:2] == (0, "")
    assert data.read_text() == "first half\n"
    r = km(tmp_path / "snap", cwd="/")
    assert (r.returncode, r.stdout, r.stderr) == (0, "done\n", "")
    assert data.read_text() == "first half\nsecond half\n"


@needs_kvm
def test_mgt_snapshot_refuses_a_guest_pipe(guests, mgt, tmp_path):
    """Also: the management socket takes no guest fd number (the pipe gets 3 and 4)."""
    g = start_with_mgt(guests, mgt, [payload("counter"), "0", "pipe"])
    g.until(lambda line: line == "tick 2")
    reply, _ = snapshot_into(mgt.path, tmp_path / "snap", 0)
    assert reply.startswith("error cannot snapshot: guest fd 3 is a pipe"), reply
    ticks = [tick(g.line()) for _ in range(3)]
    assert ticks == [3, 4, 5], "the payload goes on"


@needs_kvm
def test_malformed_requests_get_an_error_and_change_nothing(guests, tmp_path):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("counter")])
    g.until(lambda line: line == "tick 1")
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    ro = os.open(out, os.O_RDONLY)
    app = os.open(out, os.O_WRONLY | os.O_APPEND)
    rd, wr = os.pipe()
    cases = [
        ("snapshot live=0\n", []),
        ("snapshot live=0\n", [fd, fd]),
        ("restore live=0\n", [fd]),
        ("snapshot\n", [fd]),
        ("snapshot live=2\n", [fd]),
        ("snapshot live=0", [fd]),
        ("snapshot live=0 label=a/b\n", [fd]),
        ("snapshot live=0\n", [ro]),
        ("snapshot live=0\n", [app]),
        ("snapshot live=0\n", [wr]),
    ]
    try:
        for text, fds in cases:
            reply, _ = request(mgt.path, text, fds)
            assert reply.startswith("error ") and reply.endswith("\n"), (text, reply)
            assert reply.count("\n") == 1
    finally:
        for f in (fd, ro, app, rd, wr):
            os.close(f)
    assert out.stat().st_size == 0
    assert g.p.poll() is None
    ticks = [tick(line) for line in g.until(lambda line: tick(line) >= 8)]
    assert ticks == list(range(2, 9)), "no tick lost or repeated"


@needs_kvm
def test_mgt_fd_is_not_visible_to_the_guest(guests, tmp_path):
    """The inherited socket moves to KM's private range: the guest's first open is fd 3."""
    mgt = MgtSocket("fd", tmp_path)
    data = tmp_path / "data"
    g = guests([*mgt.options(), payload("snapself"), "live", data], cwd=tmp_path,
               pass_fds=mgt.pass_fds())
    rc, out, err = g.wait(10)
    mgt.close()
    assert (rc, err) == (0, ""), err
    assert "after snapshot rc=0" in out


# ---- the snapshot file -----------------------------------------------------

@needs_kvm
def test_snapshot_is_sparse_and_page_aligned(counter_snapshot):
    data = counter_snapshot
    assert data[:4] == b"\x7fELF" and struct.unpack_from("<H", data, 16)[0] == 4   # ET_CORE
    loads = [p for _, p in phdrs(data) if p[0] == PT_LOAD]
    assert loads and all(p[2] % 4096 == 0 and p[3] % 4096 == 0 for p in loads)
    in_file = sum(p[5] for p in loads)
    print(f"\ncounter snapshot: {len(data)} bytes, {len(loads)} PT_LOADs, "
          f"{in_file} bytes of memory")
    assert len(data) < 1 << 20
    assert in_file < (1 << 30) // 100
    kinds = {(n[1], n[0]) for n in notes(data)}
    assert ("CORE", 1) in kinds                         # NT_PRSTATUS, for gdb
    assert {t for name, t in kinds if name == "KRUN"} == \
        set(range(0x4B520001, 0x4B520006)) | {NT_KM_CHECK}


@needs_kvm
@pytest.mark.parametrize("cut", ["header", "phdrs", "notes", "segment"])
def test_truncated_snapshot_is_refused(counter_snapshot, tmp_path, cut):
    data = counter_snapshot
    note = next(p for _, p in phdrs(data) if p[0] == PT_NOTE)
    at = {"header": 40, "phdrs": 64 + 20, "notes": note[2] + note[5] // 2,
          "segment": len(data) - 100}[cut]
    line = refused(tmp_path, data[:at])
    assert "not a valid snapshot" in line


@needs_kvm
def test_flipped_byte_in_a_note_is_caught(counter_snapshot, tmp_path):
    data = bytearray(counter_snapshot)
    data[ident_offset(data) + 40] ^= 0x01           # in the CPU digest
    assert "checksum mismatch" in refused(tmp_path, bytes(data))
    data = bytearray(counter_snapshot)
    sig = next(n for n in notes(data) if n[0] == 0x4B520004)
    data[sig[2] + 100] ^= 0x80
    assert "checksum mismatch" in refused(tmp_path, bytes(data))


@needs_kvm
def test_snapshot_from_another_km_version_is_refused(counter_snapshot, tmp_path):
    data = bytearray(counter_snapshot)
    off = ident_offset(data)
    data[off:off + 32] = b"krun-km 9.9.9".ljust(32, b"\0")
    line = refused(tmp_path, fix_checksum(data))
    assert line == f"km: SNAP: snapshot from krun-km 9.9.9, this is {VERSION}"


@needs_kvm
def test_snapshot_from_other_cpu_features_is_refused(counter_snapshot, tmp_path):
    data = bytearray(counter_snapshot)
    off = ident_offset(data) + 32
    struct.pack_into("<Q", data, off, struct.unpack_from("<Q", data, off)[0] ^ 0xFF)
    line = refused(tmp_path, fix_checksum(data))
    assert line == "km: SNAP: snapshot made on a host with other CPU features"


@needs_kvm
@pytest.mark.parametrize("vaddr", [0x1000, 0x40000000, 0xFFFFFFFFFFFFF000])
def test_segment_outside_guest_memory_is_refused(counter_snapshot, tmp_path, vaddr):
    data = bytearray(counter_snapshot)
    off, _ = next((o, p) for o, p in phdrs(data) if p[0] == PT_LOAD)
    struct.pack_into("<QQ", data, off + 16, vaddr, vaddr)
    assert "outside guest memory" in refused(tmp_path, fix_checksum(data))


@needs_kvm
def test_segment_beyond_the_file_is_refused(counter_snapshot, tmp_path):
    data = bytearray(counter_snapshot)
    off, _ = [(o, p) for o, p in phdrs(data) if p[0] == PT_LOAD][-1]
    struct.pack_into("<Q", data, off + 8, len(data) + 4096)
    assert "beyond the end of the file" in refused(tmp_path, fix_checksum(data))


@needs_kvm
def test_missing_notes_and_bad_header_are_refused(counter_snapshot, tmp_path):
    data = bytearray(counter_snapshot)
    vcpu = next(n for n in notes(data) if n[0] == 0x4B520002)
    struct.pack_into("<I", data, vcpu[2] - 12 - 8 + 8, 0x4B5200FF)    # retype: VCPU gone
    assert "the VCPU note is missing" in refused(tmp_path, fix_checksum(data))
    data = bytearray(counter_snapshot)
    data[18] = 3                                        # e_machine
    assert "bad ELF header" in refused(tmp_path, bytes(data))


@needs_kvm
def test_kmcore_files_are_refused_clearly(tmp_path):
    r = subprocess.run([str(KM), "--km-log-to=stderr", f"--coredump={tmp_path}/core",
                        payload("sigsegv")], capture_output=True, cwd=tmp_path)
    assert (tmp_path / "core").exists(), r.stderr
    line = refused(tmp_path, (tmp_path / "core").read_bytes())
    assert "no krun-km notes" in line


# ---- numbers ---------------------------------------------------------------

@needs_kvm
def test_measure_snapshot_and_resume(guests, tmp_path):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("counter")])
    g.until(lambda line: line == "tick 2")
    times = []
    for i in range(5):
        reply, elapsed = snapshot_into(mgt.path, tmp_path / f"live{i}", 1)
        assert reply.startswith("ok ")
        times.append(elapsed)
    reply, elapsed = snapshot_into(mgt.path, tmp_path / "snap", 0)
    times.append(elapsed)
    g.wait(10)
    size = (tmp_path / "snap").stat().st_size
    t0 = time.monotonic()
    r = guests([tmp_path / "snap"])
    first = r.line()
    resume = time.monotonic() - t0
    assert first and first.startswith("tick ")
    # snapself prints right after the call it was snapshotted in: resume latency proper.
    assert km(payload("snapself"), "", tmp_path / "data", cwd=tmp_path).returncode == 0
    t0 = time.monotonic()
    r = guests([tmp_path / "kmsnap"])
    assert r.line() == "after snapshot rc=0"
    direct = time.monotonic() - t0
    print(f"\ncounter.km: snapshot (request to reply) min {min(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms; size {size} bytes; "
          f"resume to first output {resume * 1000:.1f} ms (includes the 100 ms sleep it "
          "re-issues); "
          f"snapself.km resume to first output {direct * 1000:.1f} ms")


@needs_kvm
def test_guest_memory_survives_snapshot_and_resume(guests, tmp_path):
    """bigmem checks every word it wrote before the snapshot, and that memory it
    unmaps after the resume reads as zero again."""
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("bigmem"), "2"])
    g.until(lambda line: line == "filled", timeout=20)
    reply, _ = snapshot_into(mgt.path, tmp_path / "snap", 0)
    assert reply.startswith("ok "), reply
    assert g.wait(10)[0] == 0
    r = km(tmp_path / "snap", timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


@needs_kvm
def test_management_socket_survives_execve(guests, mgt, tmp_path):
    g = start_with_mgt(guests, mgt, [payload("execer"), payload("counter")])
    last = tick(g.until(lambda line: line == "tick 2")[-1])
    reply, _ = snapshot_into(mgt.path, tmp_path / "snap", 0)
    assert reply.startswith("ok "), reply
    rc, rest, err = g.wait(10)
    assert (rc, err) == (0, "")
    last = ([last] + [tick(line) for line in rest.splitlines()])[-1]
    r = guests([tmp_path / "snap"])
    assert tick(r.line()) == last + 1


@needs_kvm
def test_hypercall_snapshot_through_the_syscall_instruction(tmp_path):
    r = km(payload("snapself"), "sys", tmp_path / "data", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "snapshotting\n", "")
    r = km(tmp_path / "kmsnap")
    assert (r.returncode, r.stdout, r.stderr) == (0, "after snapshot rc=0\nbye\n", "")


@needs_kvm
@pytest.mark.parametrize("live", [0, 1])
def test_mgt_snapshot_in_a_syscall_instruction_sleep(guests, tmp_path, live):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("counter"), "0", "sys"])
    last = tick(g.until(lambda line: line == "tick 3")[-1])
    reply, _ = snapshot_into(mgt.path, tmp_path / "snap", live)
    assert reply.startswith("ok "), reply
    if live:
        ticks = [tick(g.line()) for _ in range(3)]
        assert ticks == list(range(ticks[0], ticks[0] + 3))
        g.kill()
    else:
        rc, rest, _ = g.wait(10)
        assert rc == 0
        last = ([last] + [tick(line) for line in rest.splitlines()])[-1]
    r = guests([tmp_path / "snap"])
    first = tick(r.line())
    assert first > last if live else first == last + 1
    assert tick(r.line()) == first + 1


@needs_kvm
@pytest.mark.parametrize("live", [0, 1])
def test_sigterm_handler_runs_after_a_snapshot(guests, tmp_path, live):
    mgt = MgtSocket("pipe", tmp_path)
    g = start_with_mgt(guests, mgt, [payload("sigterm")])
    g.until(lambda line: line == "ready")
    for _ in range(3):
        reply, _ = snapshot_into(mgt.path, tmp_path / "snap", live)
        assert reply.startswith("ok "), reply
        if not live:
            break
    if not live:
        assert g.wait(10)[0] == 0
        g = guests([tmp_path / "snap"])
        time.sleep(0.3)
    g.p.send_signal(signal.SIGTERM)
    g.until(lambda line: line == "got SIGTERM")
    rc, _, err = g.wait(10)
    assert (rc, err) == (0, "")


def test_mgt_option_errors(tmp_path):
    r = km("--mgtpipe=/x", "--mgt-fd=3", payload("hello"))
    assert r.returncode == 2 and "exclude each other" in r.stderr
    r = km("--mgt-fd=abc", payload("hello"))
    assert r.returncode == 2 and "--mgt-fd needs a descriptor number" in r.stderr
    with open(tmp_path / "f", "w") as f:
        fd = f.fileno()
        r = km(f"--mgt-fd={fd}", payload("hello"), pass_fds=(fd,))
    assert r.returncode == 1
    assert r.stderr == f"km: --mgt-fd={fd}: not a listening socket\n"
