"""Tests for krunc, the payload C library (native/payload-libc).

Each program in native/payload-libc/tests is compiled and linked with exactly the
command lines `krun payload build` uses (COMPILE and LINK below), then run under KM
(/opt/kontain/bin/km, directly, not through krun); the tests check output and exit
status, and where glibc and the C standard agree, compare with the host's glibc
(printf formats through ctypes, strerror texts, errno/signal/open/mmap constants,
strftime). Every program also dies of SIGSEGV when run natively: its first hypercall
faults outside a KM guest.

Guest instructions are slow on krun's nested development hosts (about a microsecond
each), so the programs keep their loops small; the whole file runs in well under 30 s.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pty
import random
import resource
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBC = REPO / "native" / "payload-libc"
BUILD = LIBC / "build"
KM = Path("/opt/kontain/bin/km")
TIMEOUT = 20

pytestmark = pytest.mark.kvm
needs_kvm = pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm on this machine")
needs_km = pytest.mark.skipif(not KM.exists(), reason=f"{KM} is not installed (scripts/setup)")


def gcc_include() -> str:
    return subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                          check=True).stdout.strip()


def compile_argv(src: Path, obj: Path, hosted: bool = False) -> list[str]:
    """The compile line `krun payload build` uses, with an explicit output; `hosted`
    drops -ffreestanding (see test_hosted_mode_gives_main_its_implicit_return_0)."""
    mode = [] if hosted else ["-ffreestanding"]
    return ["gcc", "-c", "-nostdinc", "-isystem", str(BUILD / "include"), "-isystem",
            gcc_include(), *mode, "-fno-stack-protector", "-fno-pie",
            "-mgeneral-regs-only", "-O2", "-o", str(obj), str(src)]


def link_argv(obj: Path, out: Path) -> list[str]:
    """The link line `krun payload build` uses."""
    return ["gcc", "-static", "-no-pie", "-nostdlib", "-Wl,-z,separate-code",
            "-Wl,-z,max-page-size=0x1000", "-Wl,-Ttext-segment=0x200000", "-o", str(out),
            str(BUILD / "lib" / "crt1.o"), str(obj), str(BUILD / "lib" / "libkrunc.a"), "-lgcc"]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One temporary directory for everything this module makes; removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="krunc-tests-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def library() -> Path:
    r = subprocess.run(["make", "-s", "-C", str(LIBC)], capture_output=True, text=True)
    assert r.returncode == 0, f"make failed:\n{r.stdout}{r.stderr}"
    return BUILD


@pytest.fixture(scope="module")
def programs(library: Path, scratch: Path) -> dict[str, Path]:
    """Every tests/*.c as a .km payload, built in parallel; warnings count as failures."""
    out = scratch / "bin"
    out.mkdir()

    def build(src: Path) -> tuple[str, Path]:
        obj, payload = out / f"{src.stem}.o", out / f"{src.stem}.km"
        for argv in (compile_argv(src, obj), link_argv(obj, payload)):
            r = subprocess.run(argv, capture_output=True, text=True)
            assert r.returncode == 0 and not r.stderr, f"{' '.join(argv)}\n{r.stderr}"
        return src.stem, payload

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(build, sorted((LIBC / "tests").glob("*.c"))))


@pytest.fixture
def workdir(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


def km(payload: Path, *args: str, input: str | None = None, cwd: Path | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the payload under KM, KM's own messages on stderr (never in a /tmp log)."""
    return subprocess.run([str(KM), "--km-log-to=stderr", str(payload), *args],
                          capture_output=True, text=True, input=input, cwd=cwd, env=env,
                          timeout=TIMEOUT, stdin=None if input is not None else subprocess.DEVNULL)


def assert_checks_pass(r: subprocess.CompletedProcess[str]) -> None:
    """The programs' CHECK lines: no FAIL, a tally at the end, exit 0."""
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert not fails, "\n".join(fails)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert " 0 failed" in r.stdout.splitlines()[-1]


def key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# ---- build ---------------------------------------------------------------------

def test_make_builds_the_install_tree(library: Path) -> None:
    for path in ("lib/libkrunc.a", "lib/crt1.o", "include/stdio.h", "include/kontain.h",
                 "include/sys/stat.h", "include/bits/krunc.h"):
        assert (library / path).is_file(), path


def test_make_again_is_quiet_and_changes_nothing(library: Path) -> None:
    outputs = [library / "lib" / "libkrunc.a", library / "lib" / "crt1.o"]
    before = [p.stat().st_mtime_ns for p in outputs]
    r = subprocess.run(["make", "-C", str(LIBC), "--no-print-directory"], capture_output=True,
                       text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert [p.stat().st_mtime_ns for p in outputs] == before


HEADERS = ["alloca.h", "assert.h", "ctype.h", "dirent.h", "err.h", "errno.h", "fcntl.h",
           "inttypes.h", "kontain.h", "libgen.h", "limits.h", "locale.h", "malloc.h", "sched.h",
           "setjmp.h", "signal.h", "stdint.h", "stdio.h", "stdlib.h", "string.h", "strings.h",
           "time.h", "unistd.h", "sys/ioctl.h", "sys/mman.h", "sys/random.h", "sys/stat.h",
           "sys/time.h", "sys/types.h", "sys/uio.h", "sys/utsname.h",
           "stdarg.h", "stddef.h", "stdbool.h", "stdalign.h", "stdnoreturn.h"]


@pytest.mark.parametrize("std", ["c99", "c11", "gnu17"])
def test_each_header_compiles_alone_without_warnings(library: Path, scratch: Path,
                                                     std: str) -> None:
    """Self-contained headers, clean under -Wall -Wextra -pedantic in each C dialect,
    freestanding (the krun line) and hosted."""
    def check(job: tuple[str, bool]) -> str:
        header, hosted = job
        src = scratch / f"hdr-{std}-{hosted}-{header.replace('/', '_')}.c"
        src.write_text(f"#include <{header}>\nint krunc_header_probe;\n")
        argv = compile_argv(src, src.with_suffix(".o"), hosted)
        argv[1:1] = [f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic"]
        r = subprocess.run(argv, capture_output=True, text=True)
        return "" if r.returncode == 0 and not r.stderr else f"{header}: {r.stderr}"

    jobs = [(h, hosted) for h in HEADERS for hosted in (False, True)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        problems = [p for p in pool.map(check, jobs) if p]
    assert not problems, "\n".join(problems)


def test_limits_come_from_gcc_plus_posix(library: Path, scratch: Path) -> None:
    src = scratch / "limits.c"
    src.write_text("#include <limits.h>\n#include <stdint.h>\n"
                   "_Static_assert(INT_MAX == 2147483647, \"gcc\");\n"
                   "_Static_assert(LONG_MAX == INT64_MAX, \"LP64\");\n"
                   "_Static_assert(PATH_MAX == 4096 && SSIZE_MAX == LONG_MAX, \"posix\");\n")
    r = subprocess.run(compile_argv(src, src.with_suffix(".o")), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_payloads_hold_no_sse_or_x87(programs: dict[str, Path]) -> None:
    """The guest CPU cannot run SSE arithmetic, x87 or rdtscp: none is linked in, neither
    from the library nor from libgcc."""
    for name, payload in programs.items():
        r = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(payload)],
                           capture_output=True, text=True, check=True)
        bad = []
        for line in r.stdout.splitlines():
            address, tab, insn = line.partition(":\t")
            if not tab or not address.strip():
                continue
            mnemonic = insn.split(" ", 1)[0]
            # x87 mnemonics all start with f; SSE/AVX show in their registers.
            if mnemonic.startswith("f") or mnemonic == "rdtscp" or \
                    any(reg in insn for reg in ("%xmm", "%ymm", "%zmm", "%st")):
                bad.append(line)
        assert not bad, f"{name}: {bad[:5]}"


def no_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def test_payloads_do_not_run_natively(programs: dict[str, Path]) -> None:
    """Run on the host, each program dies of SIGSEGV at its first hypercall (%gs:0 is
    nothing there), before printing a byte."""
    for name, payload in programs.items():
        r = subprocess.run([str(payload)], capture_output=True, timeout=TIMEOUT,
                           preexec_fn=no_core)
        assert (r.returncode, r.stdout) == (-signal.SIGSEGV, b""), name


# ---- printf ------------------------------------------------------------------------

INT_MIN, INT_MAX, UINT_MAX = -(2**31), 2**31 - 1, 2**32 - 1
LONG_MIN, LONG_MAX, ULONG_MAX = -(2**63), 2**63 - 1, 2**64 - 1

# (format, argument types, arguments, expected, glibc agrees). Types: i int, l long,
# s string, n NULL, p pointer. The last column is False where krunc has no floating
# point, or where the output is krunc's own choice.
FORMAT_TABLE: list[tuple[str, str, list[int | str], str, bool]] = [
    ("%d", "i", [42], "42", True),
    ("%i", "i", [-42], "-42", True),
    ("%d", "i", [INT_MIN], "-2147483648", True),
    ("%5d|", "i", [42], "   42|", True),
    ("%-5d|", "i", [42], "42   |", True),
    ("%05d", "i", [-42], "-0042", True),
    ("%+d %+d", "ii", [42, -42], "+42 -42", True),
    ("% d|% d", "ii", [42, -42], " 42|-42", True),
    ("%+ d", "i", [7], "+7", True),
    ("%.3d", "i", [7], "007", True),
    ("%.0d|", "i", [0], "|", True),
    ("%5.0d|", "i", [0], "     |", True),
    ("%08.3d|", "i", [5], "     005|", True),
    ("%-08d|", "i", [5], "5       |", True),
    ("%u", "i", [-1], "4294967295", True),
    ("%lu", "l", [-1], "18446744073709551615", True),
    ("%ld", "l", [LONG_MIN], "-9223372036854775808", True),
    ("%lld", "l", [LONG_MAX], "9223372036854775807", True),
    ("%hd", "i", [70000], "4464", True),
    ("%hhd", "i", [300], "44", True),
    ("%hhu", "i", [-1], "255", True),
    ("%hu", "i", [-1], "65535", True),
    ("%x %X", "ii", [255, 255], "ff FF", True),
    ("%#x %#X", "ii", [255, 255], "0xff 0XFF", True),
    ("%#x", "i", [0], "0", True),
    ("%#o %#o", "ii", [8, 0], "010 0", True),
    ("%#.0o", "i", [0], "0", True),
    ("%#.5o", "i", [8], "00010", True),
    ("%o", "i", [8], "10", True),
    ("%08.3x|", "i", [255], "     0ff|", True),
    ("%-#8x|", "i", [255], "0xff    |", True),
    ("%#08x", "i", [255], "0x0000ff", True),
    ("%lx", "l", [-1], "ffffffffffffffff", True),
    ("%llo", "l", [-1], "1777777777777777777777", True),
    ("%zu %zd %jd %td", "llll", [123, -5, -6, 7], "123 -5 -6 7", True),
    ("%c|%3c|%-3c|", "iii", [65, 66, 67], "A|  B|C  |", True),
    ("%s", "s", ["hello"], "hello", True),
    ("%.2s", "s", ["hello"], "he", True),
    ("%7.3s|", "s", ["hello"], "    hel|", True),
    ("%-7s|", "s", ["hello"], "hello  |", True),
    ("%s", "n", [], "(null)", True),
    ("%.3s|", "n", [], "|", True),
    ("%p", "n", [], "(nil)", True),
    ("%10p|", "n", [], "     (nil)|", True),
    ("%p", "p", [0x1234], "0x1234", True),
    ("%-10p|", "p", [0x1234], "0x1234    |", True),
    ("%%|%5%|", "", [], "%|%|", True),
    ("%*d|", "ii", [5, 42], "   42|", True),
    ("%-*d|", "ii", [5, 42], "42   |", True),
    ("%*d|", "ii", [-5, 42], "42   |", True),
    ("%.*d", "ii", [3, 7], "007", True),
    ("%.*d", "ii", [-1, 7], "7", True),
    ("%*.*d|", "iii", [6, 3, 7], "   007|", True),
    ("%'d", "i", [1234567], "1234567", True),
    ("%d%%%s", "is", [5, "x"], "5%x", True),
    ("%lc", "i", [65], "A", True),
    ("%f", "", [], "?", False),
    ("%8.3f|%-4e|%G", "", [], "       ?|?   |?", False),
    ("%y|", "", [], "%y|", False),
    ("%2$d|", "i", [1], "%2$d|", False),
]

# Truncation: (size, format, types, arguments, expected buffer); the return value is
# always the untruncated length.
TRUNCATION_TABLE: list[tuple[int, str, str, list[int | str]]] = [
    (5, "%s", "s", ["hello world"]),
    (1, "%d", "i", [12345]),
    (0, "%d", "i", [12345]),
    (8, "%-10d|", "i", [3]),
    (3, "%c%c%c%c", "iiii", [65, 66, 67, 68]),
]


def c_args(types: str, args: Sequence[int | str | None]) -> list[object]:
    """The ctypes arguments glibc's snprintf gets for a line of the driver."""
    out: list[object] = []
    values = iter(args)
    for t in types:
        if t == "n":
            out.append(ctypes.c_void_p(None))
            continue
        v = next(values)
        if t == "s":
            assert isinstance(v, str)
            out.append(ctypes.c_char_p(v.encode()))
        elif t == "i":
            out.append(ctypes.c_int(int(v or 0)))
        elif t == "l":
            out.append(ctypes.c_long(int(v or 0)))
        else:
            out.append(ctypes.c_void_p(int(v or 0)))
    return out


_libc = ctypes.CDLL(None)
_libc.snprintf.restype = ctypes.c_int


def glibc_snprintf(size: int, fmt: str, types: str, args: Sequence[int | str | None]) \
        -> tuple[int, str]:
    buf = ctypes.create_string_buffer(max(size, 1))
    r = _libc.snprintf(buf if size else None, ctypes.c_size_t(size), fmt.encode(),
                       *c_args(types, args))
    return r, buf.value.decode() if size else ""


def driver_line(size: int, fmt: str, types: str, args: Sequence[int | str | None]) -> str:
    return "\t".join([str(size), fmt, types, *(str(a) for a in args)])


def run_printf(programs: dict[str, Path], cases: list[tuple[int, str, str, list]]) \
        -> list[tuple[int, str]]:
    r = km(programs["printf_fmt"], input="".join(driver_line(*c) + "\n" for c in cases))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == len(cases), r.stdout
    results = []
    for line in lines:
        ret, _, text = line.partition("\t")
        results.append((int(ret), text))
    return results


@needs_kvm
@needs_km
def test_printf_format_table(programs: dict[str, Path]) -> None:
    cases = [(200, fmt, types, args) for fmt, types, args, _, _ in FORMAT_TABLE]
    cases += [(size, fmt, types, args) for size, fmt, types, args in TRUNCATION_TABLE]
    got = run_printf(programs, cases)
    wrong = []
    for (fmt, types, args, want, glibc_agrees), (ret, text) in zip(FORMAT_TABLE, got,
                                                                   strict=False):
        if (ret, text) != (len(want), want):
            wrong.append(f"{fmt!r} {args}: got {text!r} ({ret}), want {want!r}")
        if glibc_agrees and glibc_snprintf(200, fmt, types, args) != (len(want), want):
            wrong.append(f"{fmt!r}: the table disagrees with glibc "
                         f"{glibc_snprintf(200, fmt, types, args)}")
    for case, result in zip(cases[len(FORMAT_TABLE):], got[len(FORMAT_TABLE):], strict=True):
        if result != glibc_snprintf(*case):
            wrong.append(f"truncated {case}: got {result}, glibc {glibc_snprintf(*case)}")
    assert not wrong, "\n".join(wrong)


INT_EDGES = [0, 1, -1, 7, -7, 9, 10, 99, 100, 255, 256, 32767, -32768, 65535, INT_MAX, INT_MIN,
             UINT_MAX, LONG_MAX, LONG_MIN, ULONG_MAX, 0x8000, 0xDEADBEEF]


def random_spec(rng: random.Random) -> tuple[str, str, list[int | str | None]]:
    """One conversion with random flags, width, precision and length, within what C
    defines (no '#' on decimal, no '0' or precision on %c/%s/%p...)."""
    conv = rng.choice("diuoxXdiuxcsp")
    allowed = {"d": "-+ 0", "i": "-+ 0", "u": "-+ 0", "o": "-+ 0#", "x": "-+ 0#", "X": "-+ 0#",
               "c": "-", "s": "-", "p": "-"}[conv]
    flags = "".join(rng.choice(allowed) for _ in range(rng.randint(0, 3)))
    types, args = "", []
    width = rng.choice(["", "", str(rng.randint(0, 24)), "*"])
    if width == "*":
        types += "i"
        args.append(rng.randint(-24, 24))
    prec = ""
    if conv in "diuoxXs":
        prec = rng.choice(["", "", ".", f".{rng.randint(0, 24)}", ".*"])
        if prec == ".*":
            types += "i"
            args.append(rng.randint(-3, 24))
    length = ""
    if conv in "diuoxX":
        length = rng.choice(["", "", "hh", "h", "l", "ll", "z", "j", "t"])
    value: int | str
    if conv == "c":
        types += "i"
        value = rng.randint(32, 126)
    elif conv == "s":
        if rng.random() < 0.1:
            return f"%{flags}{width}{prec}s", types + "n", args
        types += "s"
        value = "".join(rng.choice("abcxyz XYZ0129.-_") for _ in range(rng.randint(0, 30)))
    elif conv == "p":
        types += "p"
        value = rng.choice([0x1000, 0x200000, 0xDEADBEEF, 1, 2**47 - 1])
    else:
        types += "l" if length in ("l", "ll", "z", "j", "t") else "i"
        value = rng.choice(INT_EDGES) if rng.random() < 0.4 else rng.getrandbits(64) - 2**63
    args.append(value)
    return f"%{flags}{width}{prec}{length}{conv}", types, args


@needs_kvm
@needs_km
def test_printf_matches_glibc_on_random_formats(programs: dict[str, Path]) -> None:
    """A property test: 300 random formats (1-2 conversions with literal text, some
    truncated) give exactly what the host's glibc gives, return values included."""
    rng = random.Random(20240515)
    cases = []
    for _ in range(300):
        fmt, types, args = "", "", []
        for _ in range(rng.randint(1, 2)):
            f, t, a = random_spec(rng)
            if len(types) + len(t) > 3:
                break
            fmt += rng.choice(["", "[", "x=", " "]) + f
            types += t
            args += a
        size = rng.randint(0, 24) if rng.random() < 0.15 else 200
        cases.append((size, fmt + rng.choice(["", "]", "."]), types, args))
    got = run_printf(programs, cases)
    wrong = [f"{c}: krunc {g}, glibc {glibc_snprintf(*c)}"
             for c, g in zip(cases, got, strict=True) if g != glibc_snprintf(*c)]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ:\n" + "\n".join(wrong[:20])


@needs_kvm
@needs_km
def test_printf_misc_and_scanf(programs: dict[str, Path]) -> None:
    r = km(programs["printf_misc"])
    assert_checks_pass(r)
    out = r.stdout.splitlines()
    # No floating point: each conversion prints "?" and steps over its double.
    assert "float: [?|7|    ?|s|?  |?|9]" in out
    assert "unknown: %y|%1$d|%" in out
    assert out[-4:-1] == ["fputs line", "puts line", "!"]
    assert r.stderr == "to stderr 1\ndprintf two\n"


# ---- memory ------------------------------------------------------------------------

@needs_kvm
@needs_km
def test_malloc_realloc_free_stress(programs: dict[str, Path]) -> None:
    r = km(programs["malloc_stress"], "600")
    assert_checks_pass(r)
    assert "ops=600" in r.stdout.splitlines()
    assert int(key_values(r.stdout)["max_live"]) > 100_000     # the workload was real


# ---- files and directories ------------------------------------------------------------

@needs_kvm
@needs_km
def test_files_write_seek_read_stat_unlink(programs: dict[str, Path], workdir: Path) -> None:
    r = km(programs["files"], str(workdir))
    assert_checks_pass(r)
    # What the payload wrote is on the host's disk, and nothing else is left.
    assert (workdir / "kept.txt").read_text() == "kept by 42\n"
    assert sorted(p.name for p in workdir.iterdir()) == ["kept.txt"]


@needs_kvm
@needs_km
def test_directories_mkdir_readdir_rmdir(programs: dict[str, Path], workdir: Path) -> None:
    r = km(programs["dirs"], str(workdir))
    assert_checks_pass(r)
    lines = r.stdout.splitlines()
    assert "listing: alpha beta.txt gamma.c sub" in lines
    assert f"cwd: {os.path.realpath(workdir / 'tree')}" in lines
    assert not (workdir / "tree").exists()


# ---- process: arguments, environment, exit ----------------------------------------

@needs_kvm
@needs_km
def test_arguments_and_environment(programs: dict[str, Path]) -> None:
    args = ["one", "two words", "", "ünïcode", "--flag=x"]
    env = {"PATH": "/usr/bin:/bin", "KRUNC_SHOW": "KRUNC_A,KRUNC_B,KRUNC_MISSING",
           "KRUNC_A": "alpha", "KRUNC_B": "b e t a = 2"}
    r = km(programs["args_env"], *args, env=env)
    assert_checks_pass(r)
    payload = str(programs["args_env"])
    want = [f"argc={len(args) + 1}", f"argv[0]={payload}",
            *(f"argv[{i}]={a}" for i, a in enumerate(args, 1)),
            "env KRUNC_A=alpha", "env KRUNC_B=b e t a = 2", "env KRUNC_MISSING=(unset)"]
    assert r.stdout.splitlines()[:len(want)] == want


@needs_kvm
@needs_km
def test_execv_and_execvp_replace_the_payload(programs: dict[str, Path]) -> None:
    """execv of another payload stays under KM, with the argv and environment given;
    execvp searches PATH itself (KM does not)."""
    payload = programs["args_env"]
    r = km(payload, "exec", str(payload), "one", "two")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:5] == ["argc=3", f"argv[0]={payload}", "argv[1]=one",
                                         "argv[2]=two", "env KRUNC_EXEC=passed"]
    env = {"PATH": f"/nonexistent:{payload.parent}"}
    r = km(payload, "execvp", payload.name, "x", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["argc=2", f"argv[0]={payload.name}", "argv[1]=x"]
    r = km(payload, "execvp", "no-such-payload", env=env)
    assert (r.returncode, r.stderr) == (127, "exec: No such file or directory\n")


EXIT_ORDER = "atexit 3\nregistered during exit\natexit 2\natexit 1\ndestructor\n"


@needs_kvm
@needs_km
@pytest.mark.parametrize("args, status, stdout", [
    (["return", "7"], 7, "constructor\nmain return\n" + EXIT_ORDER),
    (["return", "0"], 0, "constructor\nmain return\n" + EXIT_ORDER),
    (["return", "300"], 300 & 0xFF, "constructor\nmain return\n" + EXIT_ORDER),
    (["exit", "3"], 3, "constructor\nmain exit" + EXIT_ORDER),
    (["_exit", "5"], 5, ""),        # buffered output dies with the process
], ids=["return-7", "return-0", "return-300", "exit-3", "_exit-5"])
def test_exit_status_atexit_order_and_flush(programs: dict[str, Path], args: list[str],
                                            status: int, stdout: str) -> None:
    """stdout is a pipe (fully buffered): everything printed arrives only because exit
    flushed it, after the atexit handlers (last first) and before nothing else."""
    r = km(programs["exit_atexit"], *args)
    assert (r.returncode, r.stdout, r.stderr) == (status, stdout, "")


@needs_kvm
@needs_km
def test_abort_and_failed_assert_die_of_sigabrt(programs: dict[str, Path],
                                                workdir: Path) -> None:
    r = km(programs["exit_atexit"], "abort", cwd=workdir)
    assert (r.returncode, r.stdout) == (-signal.SIGABRT, "")
    r = km(programs["exit_atexit"], "assert", cwd=workdir)
    assert r.returncode == -signal.SIGABRT
    assert r.stdout == "constructor\nmain assert"      # flushed before the message
    src = LIBC / "tests" / "exit_atexit.c"
    line = next(i for i, text in enumerate(src.read_text().splitlines(), 1)
                if "assert(argc == 42)" in text)
    assert (f"{programs['exit_atexit']}: {src}:{line}: main: Assertion `argc == 42' failed.\n"
            in r.stderr)


# ---- errno and the ABI constants ------------------------------------------------------

def host_constants() -> dict[str, int]:
    """The same names from Python's modules (the host's glibc and kernel headers)."""
    import fcntl

    found: dict[str, int] = {}
    for module in (errno, signal, os, stat, mmap, time, fcntl):
        for name in dir(module):
            value = getattr(module, name)
            if name.isupper() and isinstance(value, int) and not isinstance(value, bool):
                found.setdefault(name, int(value))
    # Linux's values for what Python's modules lack (stat.S_IFMT is a function there).
    linux = {"SA_SIGINFO": 4, "SA_RESTART": 0x10000000, "SA_NODEFER": 0x40000000,
             "SA_RESETHAND": 0x80000000, "SA_ONSTACK": 0x08000000, "ERFKILL": 132,
             "EHWPOISON": 133, "O_TMPFILE": 0o20200000, "F_DUPFD_CLOEXEC": 1030,
             "S_IFMT": 0o170000, "MAP_FIXED": 0x10, "MAP_NORESERVE": 0x4000}
    for name, value in linux.items():
        found.setdefault(name, value)
    return found


@needs_kvm
@needs_km
def test_errno_strerror_and_constants_match_linux(programs: dict[str, Path]) -> None:
    r = km(programs["constants"])
    assert_checks_pass(r)
    values = key_values(r.stdout)
    host = host_constants()
    constants = {k: int(v) for k, v in values.items() if not k.startswith("strerror")}
    assert len(constants) > 140
    missing = sorted(set(constants) - set(host))
    assert not missing, f"no host value to compare: {missing}"
    wrong = {k: (v, host[k]) for k, v in constants.items() if host[k] != v}
    assert not wrong, f"krunc value vs host value: {wrong}"
    for n in range(-1, 135):
        assert values[f"strerror {n}"] == os.strerror(n), n
    assert "open missing: No such file or directory" in r.stdout.splitlines()
    assert r.stderr == "perror says: Permission denied\n"


# ---- time ----------------------------------------------------------------------------

CALENDAR = [0, 951782400, 2147483647, 1709251199, 1735689599, 1262304000, 1104537600,
            -1, -86400 * 365, 4102444800, 1230768000]
STRFTIME = ("%Y-%m-%d %H:%M:%S %a %A %b %B %j %w %u %U %W %V %G %y %C %e %I %p %D %F %T %R "
            "%%")


@needs_kvm
@needs_km
def test_clocks_sleep_and_calendar(programs: dict[str, Path]) -> None:
    started = time.time()
    r = km(programs["time_test"], *map(str, CALENDAR))
    assert_checks_pass(r)
    values = key_values(r.stdout)
    assert int(values["nanosleep_ms"]) >= 50
    assert started - 2 <= int(values["time"]) <= time.time() + 2
    for t in CALENDAR:
        want = time.strftime(STRFTIME, time.gmtime(t))
        assert f"{t}: {want}" in r.stdout.splitlines(), t
    assert "asctime: Thu Jan  1 00:00:00 1970" in r.stdout


# ---- signals -------------------------------------------------------------------------

@needs_kvm
@needs_km
def test_signal_handlers_run_in_the_guest(programs: dict[str, Path]) -> None:
    r = km(programs["signals"])
    assert_checks_pass(r)
    assert "SIGUSR1 handler ran 1 time(s)" in r.stdout.splitlines()


def wait_for_line(stream: object, want: str, timeout: float) -> bool:
    fd = stream.fileno()    # type: ignore[attr-defined]
    deadline, seen = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
        if want.encode() + b"\n" in seen:
            return True
    return False


@needs_kvm
@needs_km
def test_kill_term_from_outside_runs_the_payloads_handler(programs: dict[str, Path]) -> None:
    """SIGTERM sent to KM reaches the payload's sigaction handler, which ends its wait."""
    p = subprocess.Popen([str(KM), "--km-log-to=stderr", str(programs["signals"]), "wait-term"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        assert wait_for_line(p.stdout, "ready", TIMEOUT), "the payload never said ready"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert (p.returncode, out, err) == (0, b"got SIGTERM\n", b"")


# ---- stdio buffering -----------------------------------------------------------------

@needs_kvm
@needs_km
def test_stdout_fully_buffered_on_a_pipe(programs: dict[str, Path]) -> None:
    r = subprocess.run([str(KM), "--km-log-to=stderr", str(programs["buffering"])],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, b"MARK\nfirst\nsecond\n")


def run_on_a_terminal(argv: list[str], prompt: bytes = b"", answer: bytes = b"") \
        -> tuple[int, bytes]:
    """Runs argv with a pseudo-terminal as stdin, stdout and stderr; returns its status
    and everything it wrote. `answer` is typed once the output ends with `prompt` (or
    after 3 s without output, so that a prompt that never comes fails quickly)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if answer and prompt and seen.endswith(prompt):
                os.write(master, answer)
                answer = b""
            ready, _, _ = select.select([master], [], [], 3)
            if not ready:
                if answer:
                    os.write(master, answer)
                    answer = b""
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:     # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        return p.wait(timeout=TIMEOUT), seen
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


@needs_kvm
@needs_km
def test_stdout_line_buffered_on_a_terminal(programs: dict[str, Path]) -> None:
    status, out = run_on_a_terminal([str(KM), str(programs["buffering"])])
    assert (status, out) == (0, b"first\r\nMARK\r\nsecond\r\n")


@needs_kvm
@needs_km
def test_prompt_is_flushed_before_reading_a_terminal(programs: dict[str, Path]) -> None:
    status, out = run_on_a_terminal([str(KM), str(programs["buffering"]), "read"], b"name? ",
                                    b"krun\n")
    # The prompt came out before the answer was typed (the echo follows it).
    assert (status, out) == (0, b"name? krun\r\nhello krun\r\n")


# ---- strings, ctype and the rest --------------------------------------------------------

def c_locale_classes(c: int) -> tuple[int, int, int]:
    """isalnum..isxdigit as bits, tolower, toupper: the C standard's "C" locale."""
    ch = chr(c) if 0 <= c < 128 else ""
    tests = [ch.isalnum(), ch.isalpha(), ch in (" ", "\t"), 0 <= c < 32 or c == 127,
             ch.isdigit(), 33 <= c <= 126, ch.islower(), 32 <= c <= 126,
             33 <= c <= 126 and not ch.isalnum(), ch in " \t\n\v\f\r", ch.isupper(),
             ch != "" and ch in "0123456789abcdefABCDEF"]
    bits = sum(1 << i for i, t in enumerate(tests) if t and ch)
    lower = ord(ch.lower()) if ch and ch.isupper() else c
    upper = ord(ch.upper()) if ch and ch.islower() else c
    return bits, lower, upper


@needs_kvm
@needs_km
def test_strings_numbers_sorting_ctype(programs: dict[str, Path]) -> None:
    r = km(programs["strings"])
    assert_checks_pass(r)
    ctype = next(line for line in r.stdout.splitlines() if line.startswith("ctype "))
    got = {int(c): tuple(map(int, rest)) for c, *rest in
           (item.split(":") for item in ctype.split()[1:])}
    assert set(got) == set(range(-1, 256))
    wrong = {c: (v, c_locale_classes(c)) for c, v in got.items() if v != c_locale_classes(c)}
    assert not wrong


@needs_kvm
@needs_km
def test_kontain_specifics(programs: dict[str, Path], workdir: Path) -> None:
    r = km(programs["kontain"], cwd=workdir)
    assert_checks_pass(r)
    values = key_values(r.stdout)
    assert values["release"].endswith((".kontain.KVM", ".kontain.KKM"))
    assert values["kontain"] == "1"
    assert values["snapshot"] == "0"                    # a live snapshot, in ./kmsnap
    assert "raw write" in r.stdout.splitlines()
    # The snapshot resumes after the call (which returns 0 there too) and finishes.
    resumed = km(workdir / "kmsnap", cwd=workdir)
    assert_checks_pass(resumed)
    assert resumed.stdout.splitlines()[0] == "snapshot=0", resumed.stdout


@needs_kvm
@needs_km
def test_locale_err_realpath_and_tls(programs: dict[str, Path], workdir: Path) -> None:
    (workdir / "real" / "sub").mkdir(parents=True)
    (workdir / "real" / "sub" / "file").touch()
    (workdir / "ln").symlink_to("real/sub")
    (workdir / "abs").symlink_to(workdir / "real")
    paths = ["ln/file", "abs/sub/../sub/./file", "ln/../sub/file", "/", "..", "abs",
             "ln/nope", "ln/file/x"]
    r = km(programs["misc"], "run", str(workdir), *paths)
    assert_checks_pass(r)
    name = programs["misc"].name
    assert r.stderr == (f"{name}: warn 1: No such file or directory\n"
                        f"{name}: warnx two\n")
    got = {line.split("=", 1)[0][len("realpath "):]: line.split("=", 1)[1]
           for line in r.stdout.splitlines() if line.startswith("realpath ")}
    for path in paths[:6]:
        assert got[path] == os.path.realpath(workdir / path), path
    assert got["ln/nope"] == os.strerror(errno.ENOENT)
    assert got["ln/file/x"] == os.strerror(errno.ENOTDIR)


@needs_kvm
@needs_km
def test_stack_protector_works_through_the_thread_pointer(programs: dict[str, Path],
                                                          scratch: Path, workdir: Path) -> None:
    """-fstack-protector reads its canary at %fs:0x28, which __libc_start sets up."""
    obj, payload = scratch / "ssp.o", scratch / "ssp.km"
    argv = compile_argv(LIBC / "tests" / "misc.c", obj)
    argv[argv.index("-fno-stack-protector")] = "-fstack-protector-all"
    for cmd in (argv, link_argv(obj, payload)):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert_checks_pass(km(payload, "run", str(workdir)))
    r = km(payload, "smash", "x" * 40, cwd=workdir)
    assert r.returncode == -signal.SIGABRT
    assert r.stderr.startswith("*** stack smashing detected ***: terminated\n")


def test_libgcc_provides_the_compilers_helpers(library: Path, scratch: Path) -> None:
    """Why the link line ends in -lgcc: popcount without POPCNT and 128-bit division
    are libgcc calls, and a payload may use them."""
    src = scratch / "helpers.c"
    src.write_text("int f(unsigned long x, unsigned __int128 y)\n"
                   "{ return __builtin_popcountl(x) + (int)(y / (x + 3)); }\n"
                   "int main(int argc, char **argv) { (void)argv; return f(argc, argc); }\n")
    obj, payload = scratch / "helpers.o", scratch / "helpers.km"
    subprocess.run(compile_argv(src, obj), check=True)
    without = link_argv(obj, payload)[:-1]
    r = subprocess.run(without, capture_output=True, text=True)
    assert r.returncode != 0 and "__popcountdi2" in r.stderr
    r = subprocess.run(link_argv(obj, payload), capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")


def build_payload(src: Path, out: Path, hosted: bool = False) -> Path:
    obj = out.with_suffix(".o")
    for argv in (compile_argv(src, obj, hosted), link_argv(obj, out)):
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, f"{' '.join(argv)}\n{r.stderr}"
    return out


@needs_kvm
@needs_km
def test_hosted_mode_gives_main_its_implicit_return_0(library: Path, scratch: Path) -> None:
    """C99 makes falling off the end of main return 0, but only in a hosted compile:
    with -ffreestanding gcc treats main as any function, and here its status is
    printf's return value. krunc's headers work both ways (its <stdint.h> is gcc's
    stdint-gcc.h in either mode), so `krun payload build` can leave -ffreestanding
    out."""
    src = scratch / "fall_off.c"
    src.write_text("#include <stdio.h>\nint main(void) { printf(\"hello\\n\"); }\n")
    free = km(build_payload(src, scratch / "fall_off_free.km"))
    hosted = km(build_payload(src, scratch / "fall_off_hosted.km", hosted=True))
    assert (free.returncode, free.stdout) == (6, "hello\n")
    assert (hosted.returncode, hosted.stdout) == (0, "hello\n")


@needs_kvm
@needs_km
def test_test_programs_also_pass_built_hosted(library: Path, scratch: Path) -> None:
    """Hosted, gcc may turn printf into puts, loops into memset... all provided."""
    out = scratch / "hosted"
    out.mkdir()
    sources = sorted((LIBC / "tests").glob("*.c"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        built = dict(pool.map(lambda src: (src.stem, build_payload(
            src, out / f"{src.stem}.km", hosted=True)), sources))
    assert_checks_pass(km(built["printf_misc"]))
    assert_checks_pass(km(built["constants"]))
    r = km(built["exit_atexit"], "return", "9")
    assert (r.returncode, r.stdout) == (9, "constructor\nmain return\n" + EXIT_ORDER)
