"""Run the OCI runtime-tools validation suite against krun and an anchor runtime.

The suite is built by ./build-suite (pinned version, Go module proxy). Every
test program runs once per runtime, in its own session, under a timeout, with
a private --root for the runtime; after each program the harness kills the
session, deletes leftover containers, unmounts leftover mounts and removes
leftover test cgroups. The TAP output is parsed here (not with prove), files
are compared side by side, and krun is judged against expectations.toml.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harnesslib as hl

try:
    import tomllib
except ImportError:  # pragma: no cover - Debian 12 has Python 3.11
    tomllib = None

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KRUN_CACHE = hl.KRUN_CACHE
DEFAULT_TIMEOUT = 120.0
WORK_PREFIX = "krun-conformance."

# --------------------------------------------------------------------------
# TAP parsing
# --------------------------------------------------------------------------

_RE_VERSION = re.compile(r"^TAP version \d+\s*$", re.I)
_RE_PLAN = re.compile(r"^(\d+)\.\.(\d+)\s*(?:#\s*(.*))?$")
_RE_TEST = re.compile(r"^(not\s+)?ok\b\s*(\d+)?\s*(.*)$", re.I)
_RE_DIRECTIVE = re.compile(r"(?:^|\s)#\s*(SKIP|TODO)\S*(?:\s+(.*))?$", re.I)
_RE_BAIL = re.compile(r"^Bail out!\s*(.*)$", re.I)


@dataclasses.dataclass
class Assertion:
    stream: int          # 1-based index of the TAP stream in the output
    number: int          # number as printed (or the running count if absent)
    ok: bool
    directive: str       # "", "skip" or "todo"
    description: str

    @property
    def passed(self) -> bool:
        return self.ok and not self.directive

    @property
    def skipped(self) -> bool:
        return bool(self.directive)

    @property
    def failed(self) -> bool:
        return not self.ok and not self.directive

    def key(self) -> str:
        return str(self.number) if self.stream == 1 else f"{self.stream}:{self.number}"


@dataclasses.dataclass
class Stream:
    index: int
    plan: int | None = None       # N of "1..N"
    plan_skip: str | None = None  # "1..0 # SKIP reason"
    count: int = 0                # assertions seen in this stream

    def plan_ok(self) -> bool:
        return self.plan is None or self.plan == self.count


@dataclasses.dataclass
class TapResult:
    assertions: list[Assertion]
    streams: list[Stream]
    bailed_out: str | None = None
    error_diagnostics: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(a.passed for a in self.assertions)

    @property
    def failed(self) -> int:
        return sum(a.failed for a in self.assertions)

    @property
    def skipped(self) -> int:
        return sum(a.skipped for a in self.assertions)

    def failures(self) -> list[Assertion]:
        return [a for a in self.assertions if a.failed]

    def plan_problems(self) -> list[str]:
        out = []
        for s in self.streams:
            if not s.plan_ok():
                out.append(f"stream {s.index}: planned {s.plan}, ran {s.count}")
        return out


def parse_tap(text: str) -> TapResult:
    """Parse TAP output that may hold several streams.

    Only unindented lines count: YAML blocks ("  ---" ... "  ...") and the
    suite's indented `{...}` diagnostics are skipped, and so is any other
    text. A new stream starts at a "TAP version" line, at a second plan
    line, or when numbering restarts at 1, once the current stream has
    content.
    """
    assertions: list[Assertion] = []
    streams: list[Stream] = []
    cur: Stream | None = None
    last_num = 0
    in_yaml = False
    yaml_lines: list[str] = []
    errors: list[str] = []
    bailed = None

    def new_stream() -> Stream:
        nonlocal last_num
        s = Stream(index=len(streams) + 1)
        streams.append(s)
        last_num = 0
        return s

    def has_content(s: Stream | None) -> bool:
        return s is not None and (s.count > 0 or s.plan is not None)

    for raw in text.splitlines():
        line = raw.rstrip("\r\n")
        if in_yaml:
            if line.strip() == "...":
                in_yaml = False
                err = _diagnostic_error(yaml_lines)
                if err:
                    errors.append(err)
            else:
                yaml_lines.append(line)
            continue
        if line[:1] in (" ", "\t"):
            if line.strip() == "---":
                in_yaml = True
                yaml_lines = []
            continue
        line = line.rstrip()
        if not line:
            continue
        if _RE_VERSION.match(line):
            if cur is None or has_content(cur):
                cur = new_stream()
            continue
        m = _RE_PLAN.match(line)
        if m:
            if cur is None or cur.plan is not None:
                cur = new_stream()
            lo, hi = int(m.group(1)), int(m.group(2))
            cur.plan = max(0, hi - lo + 1) if hi >= lo else 0
            comment = m.group(3) or ""
            if cur.plan == 0 and comment.lower().startswith("skip"):
                cur.plan_skip = comment[4:].strip() or "skip"
            continue
        m = _RE_TEST.match(line)
        if m:
            not_ok, num, rest = m.group(1), m.group(2), m.group(3)
            number = int(num) if num else last_num + 1
            if cur is None:
                cur = new_stream()
            elif number == 1 and cur.count > 0:
                cur = new_stream()
            directive = ""
            d = _RE_DIRECTIVE.search(rest)
            if d:
                directive = d.group(1).lower()
                rest = rest[:d.start()]
            desc = rest.strip()
            if desc.startswith("-"):
                desc = desc[1:].strip()
            assertions.append(Assertion(cur.index, number, not_ok is None, directive, desc))
            cur.count += 1
            last_num = number
            continue
        m = _RE_BAIL.match(line)
        if m:
            bailed = m.group(1) or "bail out"
            continue
        # anything else (comments, stray program output) is ignored
    return TapResult(assertions, streams, bailed, errors)


def _diagnostic_error(lines: list[str]) -> str | None:
    """The "error" field of a YAML/JSON diagnostic block, if it has one."""
    body = "\n".join(lines).strip()
    try:
        doc = json.loads(body)
    except ValueError:
        m = re.search(r"^\s*error:\s*(.+)$", body, re.M)
        return m.group(1).strip().strip("'\"") if m else None
    if isinstance(doc, dict) and doc.get("error"):
        return str(doc["error"])
    return None


# --------------------------------------------------------------------------
# Results of one test program under one runtime
# --------------------------------------------------------------------------

@dataclasses.dataclass
class FileResult:
    name: str
    runtime: str
    exit: int | None                 # None when killed by the timeout
    timed_out: bool
    duration: float
    tap: TapResult
    stderr_tail: str = ""
    log: str = ""

    @property
    def passed(self) -> int:
        return self.tap.passed

    @property
    def failed(self) -> int:
        return self.tap.failed

    @property
    def skipped(self) -> int:
        return self.tap.skipped

    @property
    def no_assertions(self) -> bool:
        return not self.tap.assertions

    def file_problems(self, accepted_diagnostics: tuple[str, ...] = ()) -> list[str]:
        """Reasons this file failed as a whole, beyond failed assertions.

        A file without assertions that exits 0 fails when it printed an error
        diagnostic, unless each such error contains one of `accepted_diagnostics`.
        """
        out = []
        if self.timed_out:
            out.append("timeout")
        elif self.exit != 0:
            out.append(f"exit {self.exit}")
        if self.tap.bailed_out:
            out.append(f"bail out: {self.tap.bailed_out}")
        out.extend(self.tap.plan_problems())
        if not self.tap.assertions and not out:
            errs = [e for e in self.tap.error_diagnostics
                    if not any(d in e for d in accepted_diagnostics)]
            if errs:
                first = errs[0].strip().splitlines()[0][:80] if errs[0].strip() else "?"
                out.append(f"error: {first}")
        return out

    def clean(self) -> bool:
        return self.failed == 0 and not self.file_problems()

    def cell(self) -> str:
        ex = "T/O" if self.timed_out else str(self.exit)
        return f"{self.passed}/{self.failed}/{self.skipped}/{ex}"

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "exit": self.exit,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration, 3),
            "streams": [dataclasses.asdict(s) for s in self.tap.streams],
            "failed_assertions": [
                {"stream": a.stream, "number": a.number, "description": a.description}
                for a in self.tap.failures()
            ],
            "file_problems": self.file_problems(),
            "clean": self.clean(),
            "stderr_tail": self.stderr_tail,
            "log": self.log,
        }


# --------------------------------------------------------------------------
# Expectations and verdicts
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Expectation:
    name: str
    reason: str
    any: bool = False
    assertions: frozenset[str] = frozenset()   # keys as Assertion.key()
    diagnostics: tuple[str, ...] = ()          # accepted error diagnostics (substrings)

    def accepts(self, a: Assertion) -> bool:
        return self.any or a.key() in self.assertions


class ExpectationError(ValueError):
    pass


def parse_expectations(data: dict) -> dict[str, Expectation]:
    """[accept.NAME] tables: reason (required) and assertions and/or diagnostics.

    assertions = "any"        every failure of the file is accepted (exit status,
                              timeouts when the anchor times out too, fewer passes)
    assertions = [6, "2:1"]   these failing assertions (number, or "stream:number")
    diagnostics = ["text"]    a file without assertions may print error
                              diagnostics containing one of these texts
    """
    out: dict[str, Expectation] = {}
    unknown_top = set(data) - {"accept"}
    if unknown_top:
        raise ExpectationError(f"unknown top-level keys {sorted(unknown_top)}")
    table = data.get("accept", {})
    if not isinstance(table, dict):
        raise ExpectationError("[accept] must be a table")
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ExpectationError(f"accept.{name}: must be a table")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ExpectationError(f"accept.{name}: a reason is required")
        unknown = set(entry) - {"reason", "assertions", "diagnostics"}
        if unknown:
            raise ExpectationError(f"accept.{name}: unknown keys {sorted(unknown)}")
        spec = entry.get("assertions")
        diags = entry.get("diagnostics", [])
        if not isinstance(diags, list) or not all(isinstance(d, str) and d.strip() for d in diags):
            raise ExpectationError(f"accept.{name}: diagnostics must be a list of texts")
        if spec is None and not diags:
            raise ExpectationError(f"accept.{name}: give assertions and/or diagnostics")
        if spec == "any":
            out[name] = Expectation(name, reason, any=True, diagnostics=tuple(diags))
        elif spec is None or (isinstance(spec, list) and spec):
            keys = set()
            for item in spec or []:
                if isinstance(item, bool):
                    raise ExpectationError(f"accept.{name}: bad assertion {item!r}")
                if isinstance(item, int) and item > 0:
                    keys.add(str(item))
                elif isinstance(item, str) and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", item):
                    keys.add(item[2:] if item.startswith("1:") else item)
                else:
                    raise ExpectationError(f"accept.{name}: bad assertion {item!r}")
            out[name] = Expectation(name, reason, assertions=frozenset(keys),
                                    diagnostics=tuple(diags))
        else:
            raise ExpectationError(
                f'accept.{name}: assertions must be "any" or a non-empty list of numbers')
    return out


def load_expectations(path: Path) -> dict[str, Expectation]:
    if tomllib is None:
        raise ExpectationError("tomllib is missing: use Python >= 3.11")
    with open(path, "rb") as f:
        return parse_expectations(tomllib.load(f))


@dataclasses.dataclass
class Verdict:
    ok: bool
    label: str
    problems: list[str]


def judge(a: FileResult, anchor: FileResult | None, exp: Expectation | None) -> Verdict:
    """Judge runtime A's result for one file against the anchor and expectations.

    Not ok when A: fails an assertion not accepted; fails the file as a whole
    (exit status, plan, bail out) unless the file is accepted as "any"; times
    out (unless accepted as "any") - and always when the anchor did not time
    out; passes fewer assertions than the anchor (unless accepted as "any", or
    the anchor's own run of the program failed as a whole: then its count is
    no reference).
    """
    problems: list[str] = []
    any_ok = exp is not None and exp.any
    if a.timed_out and anchor is not None and not anchor.timed_out:
        problems.append("timed out (anchor did not)")
    elif a.timed_out and not any_ok:
        problems.append("timed out")
    unaccepted = [f for f in a.tap.failures() if exp is None or not exp.accepts(f)]
    if unaccepted:
        keys = ",".join(f.key() for f in unaccepted[:8])
        more = "..." if len(unaccepted) > 8 else ""
        problems.append(f"unaccepted failure #{keys}{more}")
    if not any_ok:
        for p in a.file_problems(exp.diagnostics if exp else ()):
            if p == "timeout":
                continue
            problems.append(p)
    # The anchor's count is a reference only when its program ran through: when
    # the anchor failed the file as a whole (e.g. process_capabilities_fail,
    # where crun wrongly creates the container and the program then exits 1),
    # its passes say nothing.
    if (anchor is not None and not any_ok and not anchor.file_problems()
            and a.passed < anchor.passed):
        problems.append(f"passes {a.passed} < anchor {anchor.passed}")

    if problems:
        return Verdict(False, "FAIL: " + "; ".join(problems), problems)
    if not a.clean():
        return Verdict(True, "accepted", [])
    if exp is not None:
        label = "ok (expectation unused)"
    elif anchor is not None and (not anchor.clean() or a.passed > anchor.passed):
        label = "better"
    else:
        label = "ok"
    return Verdict(True, label, [])


# --------------------------------------------------------------------------
# Mount and cgroup hygiene: which of them are the suite's (the rest is harnesslib)
# --------------------------------------------------------------------------

def cleanup_mounts(under: str, before: set[str]) -> list[str]:
    """Unmount every mount at or below `under`, and every mount of a suite bundle
    (a path holding "/ocitest") that is not in `before`: linux_ns_itype runs its
    container without a mount namespace, so the container's mounts land in ours."""
    return hl.cleanup_mounts(under, also=lambda m: m not in before and "/ocitest" in m)


def _is_test_cgroup(name: str) -> bool:
    return name.startswith("cgrouptest")


def suite_cgroups(max_depth: int = 6) -> list[str]:
    """The suite's cgroups in every hierarchy: directories named cgrouptest* (the
    suite's `/cgrouptest`, `<own>/testdir/cgrouptest/...`) down to `max_depth`."""
    found = []
    for root in hl.cgroup_roots():
        for dirpath, dirnames, _ in os.walk(root):
            depth = dirpath[len(root):].count("/")
            for d in list(dirnames):
                if _is_test_cgroup(d):
                    found.append(os.path.join(dirpath, d))
                    dirnames.remove(d)
            if depth >= max_depth:
                dirnames[:] = []
    return found


def cleanup_cgroups() -> list[str]:
    """Remove the suite's cgroups (suite_cgroups) and their subtrees, killing what is
    still inside, then each emptied parent named `testdir`. Returns what went."""
    found = suite_cgroups()
    removed = hl.remove_cgroup_trees(found)
    for parent in sorted({os.path.dirname(top) for top in found}):
        if os.path.basename(parent) == "testdir":
            try:
                os.rmdir(parent)
                removed.append(parent)
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Runtime:
    label: str       # "krun", "crun", ...
    binary: str      # absolute path
    wrapper: str = ""
    root: str = ""
    version: str = ""

    def setup(self, workdir: Path) -> None:
        self.root = str(workdir / f"root-{self.label}")
        self.wrapper = str(workdir / f"{self.label}.sh")
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\n")
            f.write(f"exec {hl.sh_quote(self.binary)} --root {hl.sh_quote(self.root)} \"$@\"\n")
        os.chmod(self.wrapper, 0o755)
        self.version = hl.runtime_version(self.binary)

    def cleanup_containers(self) -> list[str]:
        """`delete --force` each container left in the private root, then rm the root
        (unmounting what is left below it first, if anything)."""
        left = hl.delete_containers([self.wrapper], self.root)
        root = Path(self.root)
        if not hl.checked_rmtree(root, root.parent):
            hl.cleanup_mounts(self.root)
            hl.checked_rmtree(root, root.parent)
        return left


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

def run_one(name: str, bindir: Path, rt: Runtime, workdir: Path, timeout: float,
            logdir: Path, attempt: int = 1) -> FileResult:
    tmpdir = workdir / f"tmp-{rt.label}" / name
    tmpdir.mkdir(parents=True, exist_ok=True)
    for d in (tmpdir, tmpdir.parent):
        os.chmod(d, 0o755)
    env = dict(os.environ)
    env.update({"RUNTIME": rt.wrapper, "TMPDIR": str(tmpdir)})
    suffix = f".try{attempt}" if attempt > 1 else ""
    out_path = logdir / f"{name}.{rt.label}{suffix}.out"
    err_path = logdir / f"{name}.{rt.label}{suffix}.err"
    before = set(hl.mountpoints())
    start = time.monotonic()
    rc, timed_out, sid = hl.run_in_session([str(bindir / name)], workdir, env, out_path,
                                           err_path, timeout)
    duration = time.monotonic() - start
    hl.kill_session(sid)
    rt.cleanup_containers()
    hl.kill_session(sid)
    cleanup_mounts(str(workdir), before)
    cleanup_cgroups()
    if not hl.checked_rmtree(tmpdir, workdir):
        print(f"warning: mounts still under {tmpdir}: left in place", file=sys.stderr)

    text = out_path.read_text(errors="replace")
    err_text = err_path.read_text(errors="replace")
    tail = "\n".join(err_text.strip().splitlines()[-5:])
    return FileResult(name, rt.label, rc, timed_out, duration,
                      parse_tap(text), tail, str(out_path))


def preflight(rt: Runtime, workdir: Path, rootfs_tar: Path, spec_from: Runtime) -> str | None:
    """Run `true` in a busybox container; return an error text or None."""
    b = workdir / f"preflight-{rt.label}"
    (b / "rootfs").mkdir(parents=True, exist_ok=True)
    os.chmod(b, 0o755)
    try:
        subprocess.run(["tar", "-xzf", str(rootfs_tar), "-C", str(b / "rootfs")], check=True)
        if not (b / "config.json").exists():
            subprocess.run([spec_from.binary, "spec"], cwd=str(b), check=True,
                           capture_output=True, timeout=20)
            cfg = json.loads((b / "config.json").read_text())
            cfg["process"]["terminal"] = False
            cfg["process"]["args"] = ["/bin/true"]
            (b / "config.json").write_text(json.dumps(cfg))
        r = subprocess.run([rt.wrapper, "run", "--bundle", str(b), f"preflight-{os.getpid()}"],
                           capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, start_new_session=True)
        if r.returncode != 0:
            return (r.stderr or r.stdout).strip() or f"exit {r.returncode}"
        return None
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        return str(e)
    finally:
        rt.cleanup_containers()
        hl.cleanup_mounts(str(b))      # no suite program ran: nothing of an /ocitest bundle
        hl.checked_rmtree(b, workdir)


def hugetlb_hint(mountinfo: str | None = None) -> str | None:
    """crun 1.8.1 refuses to run on hybrid cgroups while hugetlb is not on v1."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo") as f:
                mountinfo = f.read()
        except OSError:
            return None
    fstypes = dict(hl.parse_mountinfo(mountinfo))
    if fstypes.get("/sys/fs/cgroup") != "tmpfs":
        return None           # pure cgroup v2 (or no cgroups): nothing to say
    if fstypes.get("/sys/fs/cgroup/hugetlb") == "cgroup":
        return None
    return ("the hugetlb controller is not mounted as cgroup v1, and crun refuses to run "
            "until it is; the project's scripts/setup does it, by hand: "
            "mkdir -p /sys/fs/cgroup/hugetlb && "
            "mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb")


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def render_table(rows: list[dict], a_label: str, b_label: str) -> str:
    head = ["file", f"{a_label} p/f/s/exit", f"{b_label} p/f/s/exit", "verdict"]
    body = [[r["name"], r["a_cell"], r["b_cell"], r["verdict"]] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(3)]

    def fmt(cols: list[str]) -> str:
        cells = [c.ljust(w) for c, w in zip(cols[:3], widths, strict=True)]
        return " | ".join([*cells, cols[3]])

    lines = [fmt(head), "-+-".join("-" * w for w in widths) + "-+-" + "-" * 20]
    lines.extend(fmt(b) for b in body)
    return "\n".join(lines)


def totals(results: list[FileResult]) -> dict:
    return {
        "passed": sum(r.passed for r in results),
        "failed": sum(r.failed for r in results),
        "skipped": sum(r.skipped for r in results),
        "files": len(results),
        "files_clean": sum(r.clean() for r in results),
        "timeouts": sum(r.timed_out for r in results),
        "duration_s": round(sum(r.duration for r in results), 1),
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build_suite() -> tuple[Path, list[str], str]:
    r = subprocess.run([str(HERE / "build-suite")], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit("conformance: build-suite failed")
    bindir = Path(r.stdout.strip().splitlines()[-1])
    names = (bindir.parent / "names").read_text().split()
    return bindir, names, bindir.parent.name


def ensure_rootfs() -> Path:
    r = subprocess.run([str(REPO / "scripts" / "build-rootfs")], stdout=sys.stderr)
    if r.returncode != 0:
        raise SystemExit("conformance: scripts/build-rootfs failed")
    tar = KRUN_CACHE / "rootfs" / "busybox.tar.gz"
    if not tar.is_file():
        raise SystemExit(f"conformance: {tar} missing after build-rootfs")
    return tar


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="runtime-tools-conformance/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--krun", metavar="PATH",
                   help="krun binary (default: krun on PATH, then /usr/local/bin/krun)")
    p.add_argument("--anchor", "--runtime-a", dest="anchor", default="crun", metavar="RUNTIME",
                   help="anchor runtime compared against, name or path (default: crun)")
    p.add_argument("--only", metavar="NAME[,NAME]", action="append", default=[],
                   help="run only these test programs")
    p.add_argument("--jobs", type=int, default=1, help="parallel jobs: only 1 is supported")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="rerun a program krun fails up to N more times; a later pass "
                        "is reported as flaky and accepted (default 0)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"per-program timeout in seconds (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--expectations", metavar="FILE", default=str(HERE / "expectations.toml"))
    p.add_argument("--no-preflight", action="store_true",
                   help="skip the one-container smoke test of each runtime")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("conformance: must run as root", file=sys.stderr)
        return 2
    if args.jobs != 1:
        print("conformance: only --jobs 1 is supported (the suite shares /cgrouptest); "
              "running serially", file=sys.stderr)
    krun_bin = hl.find_krun(args.krun)
    if not krun_bin:
        print("conformance: krun not found (give --krun PATH)", file=sys.stderr)
        return 2
    anchor_bin = hl.resolve_binary(args.anchor) or hl.resolve_binary(f"/usr/bin/{args.anchor}")
    if not anchor_bin:
        print(f"conformance: anchor runtime {args.anchor!r} not found", file=sys.stderr)
        return 2
    try:
        expectations = load_expectations(Path(args.expectations))
    except (OSError, ExpectationError, ValueError) as e:
        print(f"conformance: bad expectations file: {e}", file=sys.stderr)
        return 2

    _lock = hl.take_suite_lock("conformance")  # held while main runs

    t0 = time.monotonic()
    bindir, names, version = build_suite()
    t_build = time.monotonic() - t0
    rootfs_tar = ensure_rootfs()

    only = [n for o in args.only for n in o.split(",") if n]
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            print(f"conformance: unknown test programs: {', '.join(unknown)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in only]
    for n in expectations:
        if n not in (bindir.parent / "names").read_text().split():
            print(f"conformance: warning: expectation for unknown program {n}", file=sys.stderr)

    a_label = "krun"
    b_label = os.path.basename(anchor_bin)
    if b_label == a_label:
        b_label = "anchor"
    mounts_at_start = set(hl.mountpoints())
    workdir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    os.chmod(workdir, 0o755)
    logdir = workdir / "logs"
    logdir.mkdir()
    shutil.copyfile(bindir / "runtimetest", workdir / "runtimetest")
    os.chmod(workdir / "runtimetest", 0o755)
    shutil.copyfile(rootfs_tar, workdir / "rootfs-amd64.tar.gz")

    rt_a = Runtime(a_label, krun_bin)
    rt_b = Runtime(b_label, anchor_bin)
    for rt in (rt_a, rt_b):
        rt.setup(workdir)
    print(f"conformance: suite runtime-tools {version}, {len(names)} programs; "
          f"{a_label}={krun_bin} ({rt_a.version}); {b_label}={anchor_bin} ({rt_b.version}); "
          f"workdir {workdir}", file=sys.stderr)

    hint = hugetlb_hint()
    if not args.no_preflight:
        for rt in (rt_b, rt_a):
            err = preflight(rt, workdir, rootfs_tar, rt_b)
            if err:
                print(f"conformance: preflight: {rt.label} cannot run a container: {err}",
                      file=sys.stderr)
                if hint:
                    print(f"conformance: {hint}", file=sys.stderr)
                if rt is rt_b:
                    print("conformance: the anchor must work; giving up", file=sys.stderr)
                    if not args.keep:
                        hl.remove_work_dir(workdir, WORK_PREFIX)
                    return 2
    elif hint:
        print(f"conformance: warning: {hint}", file=sys.stderr)

    rows = []
    res_a: list[FileResult] = []
    res_b: list[FileResult] = []
    all_ok = True
    t_run0 = time.monotonic()
    try:
        for i, name in enumerate(names, 1):
            ra = run_one(name, bindir, rt_a, workdir, args.timeout, logdir)
            rb = run_one(name, bindir, rt_b, workdir, args.timeout, logdir)
            v = judge(ra, rb, expectations.get(name))
            failed_tries = []
            for attempt in range(2, args.retries + 2):
                if v.ok:
                    break
                failed_tries.append({"result": ra.to_json(), "problems": v.problems})
                print(f"[{i}/{len(names)}] {name}: {a_label} failed ({'; '.join(v.problems)}), "
                      f"try {attempt}", file=sys.stderr, flush=True)
                ra = run_one(name, bindir, rt_a, workdir, args.timeout, logdir, attempt)
                v = judge(ra, rb, expectations.get(name))
                if v.ok:
                    v = Verdict(True, f"flaky ({len(failed_tries)} failed "
                                      f"{'try' if len(failed_tries) == 1 else 'tries'}: "
                                      f"{'; '.join(failed_tries[0]['problems'])}), then {v.label}",
                                [])
            res_a.append(ra)
            res_b.append(rb)
            all_ok &= v.ok
            rows.append({"name": name, "a_cell": ra.cell(), "b_cell": rb.cell(),
                         "verdict": v.label, "ok": v.ok, "problems": v.problems,
                         "failed_tries": failed_tries, "a": ra, "b": rb})
            print(f"[{i}/{len(names)}] {name}: {a_label} {ra.cell()} ({ra.duration:.1f}s), "
                  f"{b_label} {rb.cell()} ({rb.duration:.1f}s): {v.label}",
                  file=sys.stderr, flush=True)
    finally:
        for rt in (rt_a, rt_b):
            rt.cleanup_containers()
        cleanup_mounts(str(workdir), mounts_at_start)
        cleanup_cgroups()
        if not args.keep:
            if not hl.remove_work_dir(workdir, WORK_PREFIX):
                print(f"conformance: mounts left under {workdir}; not removed", file=sys.stderr)
    t_run = time.monotonic() - t_run0

    ta, tb = totals(res_a), totals(res_b)
    print(render_table(rows, a_label, b_label))
    print()
    for label, t in ((a_label, ta), (b_label, tb)):
        print(f"{label}: assertions {t['passed']} passed / {t['failed']} failed / "
              f"{t['skipped']} skipped; files clean {t['files_clean']}/{t['files']}; "
              f"timeouts {t['timeouts']}; {t['duration_s']}s")
    bad = [r["name"] for r in rows if not r["ok"]]
    flaky = [r["name"] for r in rows if r["ok"] and r["failed_tries"]]
    print(f"verdict: {'OK' if all_ok else 'FAILED'}"
          + (f" ({len(bad)} files: {', '.join(bad)})" if bad else "")
          + (f"; flaky: {', '.join(flaky)}" if flaky else "")
          + f"; build {t_build:.1f}s, run {t_run:.1f}s"
          + (f"; kept {workdir}" if args.keep else ""))

    if args.json:
        doc = {
            "suite": {"module": "github.com/opencontainers/runtime-tools", "version": version},
            "runtimes": {
                a_label: {"path": krun_bin, "version": rt_a.version, "role": "tested"},
                b_label: {"path": anchor_bin, "version": rt_b.version, "role": "anchor"},
            },
            "files": [{
                "name": r["name"],
                "verdict": r["verdict"],
                "ok": r["ok"],
                "problems": r["problems"],
                "failed_tries": r["failed_tries"],
                "expectation": (dataclasses.asdict(expectations[r["name"]]) | {
                    "assertions": sorted(expectations[r["name"]].assertions)})
                if r["name"] in expectations else None,
                a_label: r["a"].to_json(),
                b_label: r["b"].to_json(),
            } for r in rows],
            "totals": {a_label: ta, b_label: tb},
            "ok": all_ok,
            "build_s": round(t_build, 1),
            "run_s": round(t_run, 1),
            "workdir": str(workdir) if args.keep else None,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")

    print(f"{ta['passed']} passed, {ta['failed']} failed")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
