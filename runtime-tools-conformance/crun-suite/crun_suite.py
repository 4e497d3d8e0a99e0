"""Run crun's own test suite (tests/test_*.py of crun 1.8.1) against crun and krun.

./build provides the tests, the static `init` helper and Python's `libmount`
module (cached). Each test file runs once per runtime (crun, then krun) in its
own session, under a timeout, with OCI_RUNTIME pointing at a logging wrapper of
that runtime and its own working directory (tests_utils keeps its state root,
`--root <cwd>/.testsuite-run-<pid>/root`, and the bundles there). Afterwards the
harness kills the session, deletes leftover containers, kills and removes the
suite's leftover cgroups, unmounts anything left below the working directory
and removes it. The TAP lines are parsed per test, crun and krun are compared
test by test, and krun is judged against expectations.toml.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import harnesslib as hl

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KRUN_CACHE = hl.KRUN_CACHE
KRUN_VENV = Path(os.environ.get("KRUN_VENV", "/usr/local/lib/krun/venv"))
PYTHON = str(KRUN_VENV / "bin" / "python3")
DEFAULT_TIMEOUT = 60.0
WORK_PREFIX = "krun-crun-suite."
MARKER = "## crun-suite: test "
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASS, FAIL, SKIP, TIMEOUT, MISSING = "pass", "FAIL", "skip", "T/O", "ERR"
KINDS = ("deliberate", "environment", "suite-bug")

# --------------------------------------------------------------------------
# TAP (tests_utils.run_all_tests: "1..N", "ok N - name", "ok N - name #SKIP",
# "not ok N - name"; anything else on stdout is a test's own print)
# --------------------------------------------------------------------------

_RE_PLAN = re.compile(r"^1\.\.(\d+)\s*$")
_RE_RESULT = re.compile(r"^(not )?ok (\d+) - (.*?)(\s*#\s*SKIP\b.*)?\s*$", re.I)


@dataclasses.dataclass
class Tap:
    plan: int | None
    results: dict[str, str]   # test name -> PASS | FAIL | SKIP, in output order


def parse_tap(text: str) -> Tap:
    plan: int | None = None
    results: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = _RE_PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = _RE_RESULT.match(line)
        if m:
            name = m.group(3).strip()
            if m.group(1):
                results[name] = FAIL
            else:
                results[name] = SKIP if m.group(4) else PASS
    return Tap(plan, results)


def test_names(source: str) -> list[str]:
    """The keys of the file's `all_tests = {...}` dict, in order (empty if none)."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "all_tests" for t in node.targets)):
            return [k.value for k in node.value.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def split_stderr(text: str) -> dict[str, list[str]]:
    """The test file's stderr split at the runner's markers: test name -> lines
    ("" for what came before the first test)."""
    out: dict[str, list[str]] = {"": []}
    cur = ""
    for line in text.splitlines():
        if line.startswith(MARKER):
            cur = line[len(MARKER):].strip()
            out.setdefault(cur, [])
        else:
            out[cur].append(line)
    return out


# --------------------------------------------------------------------------
# Expectations
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Expectation:
    file: str      # test file stem, e.g. "test_exec"
    test: str      # test name as printed, e.g. "exec_add_no_new_privileges"
    kind: str      # one of KINDS
    reason: str


class ExpectationError(ValueError):
    pass


def parse_expectations(data: dict) -> dict[tuple[str, str], Expectation]:
    """`[<file stem>.<test name>]` tables with `kind` and `reason`."""
    out: dict[tuple[str, str], Expectation] = {}
    for stem, tests in data.items():
        if not isinstance(tests, dict) or not re.fullmatch(r"test_\w+", stem):
            raise ExpectationError(f"[{stem}]: expected a table named after a test file "
                                   "(test_NAME), holding one table per test")
        for test, entry in tests.items():
            where = f"[{stem}.{test}]"
            if not isinstance(entry, dict):
                raise ExpectationError(f"{where}: expected a table with kind and reason")
            unknown = set(entry) - {"kind", "reason"}
            if unknown:
                raise ExpectationError(f"{where}: unknown keys {sorted(unknown)}")
            reason = entry.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise ExpectationError(f"{where}: a non-empty `reason` is required")
            kind = entry.get("kind")
            if kind not in KINDS:
                raise ExpectationError(f"{where}: `kind` must be one of {', '.join(KINDS)}")
            out[(stem, test)] = Expectation(stem, test, kind, reason.strip())
    return out


def load_expectations(path: Path) -> dict[tuple[str, str], Expectation]:
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ExpectationError(f"{path}: {e}") from e
    return parse_expectations(data)


# --------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Verdict:
    text: str
    regression: bool = False      # crun passes, krun does not, not accepted
    unused: bool = False          # accepted failure that krun now passes
    accepted: bool = False


def judge(crun: str, krun: str, exp: Expectation | None) -> Verdict:
    if krun == PASS:
        if exp:
            return Verdict("ok (expectation unused)", unused=True)
        return Verdict("better" if crun in (FAIL, TIMEOUT, MISSING) else "ok")
    if crun == PASS:
        if exp:
            return Verdict(f"accepted ({exp.kind})", accepted=True)
        return Verdict("FAIL: crun passes" if krun != SKIP else "FAIL: krun skips, crun passes",
                       regression=True)
    if exp:
        return Verdict(f"accepted ({exp.kind})", accepted=True)
    if krun == SKIP and crun == SKIP:
        return Verdict("skip")
    return Verdict("not judged (crun does not pass)")


# --------------------------------------------------------------------------
# Hygiene: which cgroups are the suite's (sessions, containers, mounts and
# directories: harnesslib, shared with ../conformance.py)
# --------------------------------------------------------------------------

# Ids tests_utils makes ('test-' + a mkdtemp name, 'container-<pid>') and the
# freezer cgroup test_delete.py makes: the only cgroups the sweep touches, and
# only if they did not exist before the run.
_RE_SUITE_CGROUP = re.compile(r"^(test-tmp[a-z0-9_]{8}|container-\d+|frozen)$")


def top_cgroups() -> set[str]:
    """Every first-level cgroup directory of every hierarchy."""
    out = set()
    for root in hl.cgroup_roots():
        try:
            for d in os.scandir(root):
                if d.is_dir(follow_symlinks=False):
                    out.add(d.path)
        except OSError:
            pass
    return out


def suite_cgroups(before: set[str]) -> list[str]:
    """The suite's cgroups: first-level ones named like _RE_SUITE_CGROUP that were
    not there before the run (`before`: top_cgroups() then)."""
    return sorted(p for p in top_cgroups() - before
                  if _RE_SUITE_CGROUP.match(os.path.basename(p)))


def cleanup_cgroups(before: set[str]) -> list[str]:
    """Remove the suite's new cgroups in every hierarchy (thawed first: test_delete.py
    leaves its `frozen` one frozen), killing what is still inside."""
    return hl.remove_cgroup_trees(suite_cgroups(before))


def pid_counter_to_five_digits(low: int = 10000, headroom: int = 4000) -> None:
    """test_exec.py's exec_write_pid_file wants a 5-digit pid (`\\d{5}`). With this
    VM's pid_max of 32768 the counter wraps to 300 often, so before each test
    process the counter (ns_last_pid) is set back to `low` when it is below it or
    within `headroom` of the wrap. The kernel hands out the next free pid above
    it, as after any wrap; nothing else changes."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        with open("/proc/sys/kernel/ns_last_pid") as f:
            cur = int(f.read())
        if pid_max > low + headroom and (cur < low or cur > pid_max - headroom):
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(low))
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------
# Runtimes and their logging wrappers
# --------------------------------------------------------------------------

WRAPPER = """#!/bin/bash
# OCI_RUNTIME for crun's tests: runs {binary} with the test's arguments unchanged
# and logs them, the exit status, the test's name and a copy of stderr.
r={logdir}/$(date +%s%N).$$
printf '%s' "${{CRUN_SUITE_TEST-}}" > "$r.test"
printf '%s\\0' "$@" > "$r.argv"
# A fifo rather than a process substitution: that would leak a pipe fd into the
# runtime (and through --preserve-fds into the container). tee is not waited for.
mkfifo -m 600 "$r.fifo"
tee -a "$r.err" < "$r.fifo" >&2 &
{binary} "$@" 2> "$r.fifo"
rc=$?
rm -f "$r.fifo"
echo "$rc" > "$r.rc"
exit "$rc"
"""


@dataclasses.dataclass
class Invocation:
    test: str
    argv: list[str]
    rc: int | None
    stderr: str

    def first_error(self) -> str:
        for line in self.stderr.splitlines():
            if line.strip():
                return line.strip()
        return ""


@dataclasses.dataclass
class Runtime:
    label: str
    binary: str
    version: str = ""
    wrapper: str = ""
    logdir: Path = Path()

    def setup(self, workdir: Path) -> None:
        self.logdir = workdir / f"log-{self.label}"
        self.logdir.mkdir(mode=0o755)
        self.wrapper = str(workdir / f"{self.label}.sh")
        with open(self.wrapper, "w") as f:
            f.write(WRAPPER.format(binary=hl.sh_quote(self.binary),
                                   logdir=hl.sh_quote(str(self.logdir))))
        os.chmod(self.wrapper, 0o755)
        self.version = hl.runtime_version(self.binary)

    def take_invocations(self) -> list[Invocation]:
        """The wrapper's records since the last call (removed as they are read)."""
        out = []
        for argv_file in sorted(self.logdir.glob("*.argv"), key=_record_order):
            stem = str(argv_file)[: -len(".argv")]
            rc_text = _read_text(stem + ".rc").strip()
            out.append(Invocation(
                test=_read_text(stem + ".test").strip(),
                argv=[a for a in _read_text(argv_file).split("\0") if a != ""],
                rc=int(rc_text) if rc_text.isdigit() else None,
                stderr=_read_text(stem + ".err"),
            ))
            for suffix in (".argv", ".rc", ".test", ".err", ".fifo"):
                try:
                    os.unlink(stem + suffix)
                except OSError:
                    pass
        return out

    def delete_containers(self, root: Path) -> list[str]:
        """`delete --force` every container in a state root tests_utils left behind."""
        return hl.delete_containers([self.binary, "--root", str(root)], root)


def _record_order(p: Path) -> tuple[int, str]:
    head = p.name.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, p.name)


def _read_text(path: str | Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def retry_krun_failures(crun_run: FileRun, krun_run: FileRun, test_file: Path, rt: Runtime,
                        suite: Suite, workdir: Path, timeout: float, cgroups_before: set[str],
                        expectations: dict[tuple[str, str], Expectation]) -> list[str]:
    """Run once more each test crun passed and krun failed (not an accepted difference):
    some of crun's tests allow only seconds (sd-notify-proxy: a 2 s socket timeout
    around a whole `run` with a user namespace), which a runtime starting an interpreter
    can miss on a loaded machine. The result of the retry stands, and the report names
    every test that needed one, so a real regression still fails twice and shows."""
    stem = test_file.stem
    retried = []
    for test in krun_run.names:
        if (crun_run.status(test), krun_run.status(test)) != (PASS, FAIL) \
                or (stem, test) in expectations:
            continue
        tap, rc, timed_out, seconds, stderr, notes = run_process(
            test_file, [test], f"{stem}.retry-{len(retried)}", rt, suite, workdir, timeout,
            cgroups_before, use_pty="isatty(" in test_file.read_text())
        krun_run.add([test], tap, rc, timed_out)
        krun_run.seconds += seconds
        for name, lines in stderr.items():  # the retry's words are the ones that count
            krun_run.stderr[name] = lines
        krun_run.cleanup.extend(f"{test} (retry): {n}" for n in notes)
        retried.append(f"{test}: {krun_run.status(test)} on retry")
    return retried


# --------------------------------------------------------------------------
# Running one file
# --------------------------------------------------------------------------

@dataclasses.dataclass
class FileRun:
    """One test file for one runtime: the results of all its tests."""
    file: str                       # "test_exec.py"
    runtime: str
    names: list[str]                # all_tests' keys, in order
    results: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    exits: list[str] = dataclasses.field(default_factory=list)     # per process
    stderr: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    invocations: list[Invocation] = dataclasses.field(default_factory=list)
    cleanup: list[str] = dataclasses.field(default_factory=list)

    def status(self, test: str) -> str:
        return self.results.get(test, MISSING)

    def add(self, wanted: list[str], tap: Tap, rc: int | None, timed_out: bool) -> None:
        """Fold in one process's TAP output; `wanted` are the tests it was to run."""
        for name in wanted:
            if name in tap.results:
                self.results[name] = tap.results[name]
            elif tap.plan == 0:
                self.results[name] = SKIP   # the file skipped itself as a whole ("1..0")
            else:
                self.results[name] = TIMEOUT if timed_out else MISSING
        for name, st in tap.results.items():
            if name not in self.results:
                self.results[name] = st
                self.names.append(name)
        self.exits.append("T/O" if timed_out else str(rc))


@dataclasses.dataclass
class Suite:
    tests_dir: Path
    init: Path
    pythonpath: str


def _run_on_pty(argv: list[str], cwd: Path, env: dict[str, str], out_path: Path,
                err_path: Path, timeout: float) -> tuple[int | None, bool, int]:
    """stdin and stdout on a pseudo-terminal: test_tty.py skips unless stdout is a
    tty, and a runtime sets its stdin up for a `terminal: true` container."""
    master, slave = pty.openpty()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=err,
                                 start_new_session=True)
        finally:
            os.close(slave)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done = p.poll() is not None
                wait = 0.05 if done else min(0.2, max(0.0, deadline - time.monotonic()))
                ready, _, _ = select.select([master], [], [], wait)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:     # EIO: every slave fd is closed
                        data = b""
                    if data:
                        out.write(data)
                        continue
                    break
                if done:
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    hl.kill_session(p.pid)
                    break
        except BaseException:   # interrupted: leave no session behind
            hl.kill_session(p.pid)
            raise
        finally:
            os.close(master)
        rc = p.wait()
    return (None if timed_out else rc), timed_out, p.pid


def run_file(test_file: Path, rt: Runtime, suite: Suite, workdir: Path, timeout: float,
             cgroups_before: set[str], per_test: bool) -> FileRun:
    """Run a test file for one runtime: each test in its own process and session
    (RUN_TESTS=<name>, which tests_utils honours), or the whole file in one."""
    source = test_file.read_text()
    names = test_names(source)
    run = FileRun(file=test_file.name, runtime=rt.label, names=list(names))
    units: list[list[str] | None] = [[n] for n in names] if per_test and names else [None]
    for i, unit in enumerate(units):
        tag = f"{test_file.stem}.{i}" if unit else test_file.stem
        tap, rc, timed_out, seconds, stderr, notes = run_process(
            test_file, unit, tag, rt, suite, workdir, timeout, cgroups_before,
            use_pty="isatty(" in source)
        run.add(unit or names, tap, rc, timed_out)
        run.seconds += seconds
        for test, lines in stderr.items():
            run.stderr.setdefault(test, []).extend(lines)
        run.invocations.extend(rt.take_invocations())
        run.cleanup.extend(f"{unit[0]}: {n}" if unit else n for n in notes)
    return run


def run_process(test_file: Path, tests: list[str] | None, tag: str, rt: Runtime, suite: Suite,
                workdir: Path, timeout: float, cgroups_before: set[str], use_pty: bool,
                ) -> tuple[Tap, int | None, bool, float, dict[str, list[str]], list[str]]:
    """One process of crun's tests (a whole file, or the tests named), then hygiene."""
    cwd = workdir / rt.label / tag
    (cwd / "tests").mkdir(parents=True)
    (cwd / "tmp").mkdir()
    for d in (cwd.parent, cwd, cwd / "tmp"):
        os.chmod(d, 0o755)   # tests chown a rootfs to uid 8000, who must reach it
    # Some tests call ./tests/init relative to the working directory.
    os.symlink(suite.init, cwd / "tests" / "init")
    env = {
        "PATH": CLEAN_PATH,
        "LANG": "C",
        "HOME": "/root",
        "OCI_RUNTIME": rt.wrapper,
        "INIT": str(suite.init),
        "TMPDIR": str(cwd / "tmp"),
        "PYTHONPATH": suite.pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if tests is not None:
        env["RUN_TESTS"] = " ".join(tests)
    out_path = workdir / "logs" / f"{tag}.{rt.label}.out"
    err_path = workdir / "logs" / f"{tag}.{rt.label}.err"
    argv = [PYTHON, str(HERE / "runner.py"), str(test_file)]
    pid_counter_to_five_digits()
    start = time.monotonic()
    runner = _run_on_pty if use_pty else hl.run_in_session
    rc, timed_out, sid = runner(argv, cwd, env, out_path, err_path, timeout)
    seconds = time.monotonic() - start

    notes = []
    if timed_out:
        notes.append(f"timed out after {timeout:.0f}s")
    killed = hl.kill_session(sid)
    if killed:
        notes.append(f"killed {killed} leftover process(es) of the session")
    for root in sorted(cwd.glob(".testsuite-run-*/root")):
        left = rt.delete_containers(root)
        if left:
            notes.append(f"deleted leftover container(s) {', '.join(left)}")
    removed = cleanup_cgroups(cgroups_before)
    if removed:
        names = sorted({os.path.basename(p) for p in removed})
        notes.append(f"removed leftover cgroup(s) {', '.join(names)}")
    unmounted = hl.cleanup_mounts(str(cwd))
    if unmounted:
        notes.append(f"unmounted {len(unmounted)} leftover mount(s)")
    if not hl.checked_rmtree(cwd, workdir):
        notes.append(f"could not remove {cwd}")
    return (parse_tap(_read_text(out_path)), rc, timed_out, seconds,
            split_stderr(_read_text(err_path)), notes)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    file: str
    test: str
    crun: str
    krun: str
    verdict: Verdict


def compare(crun_runs: list[FileRun], krun_runs: list[FileRun],
            expectations: dict[tuple[str, str], Expectation]) -> list[Row]:
    rows = []
    for c, k in zip(crun_runs, krun_runs, strict=True):
        names = list(c.names)
        names += [n for n in k.names if n not in names]
        stem = c.file.removesuffix(".py")
        for t in names:
            cs, ks = c.status(t), k.status(t)
            rows.append(Row(c.file, t, cs, ks, judge(cs, ks, expectations.get((stem, t)))))
    return rows


def render_table(rows: list[Row]) -> str:
    head = ["test", "crun", "krun", "verdict"]
    body = [[f"{r.file.removesuffix('.py')}:{r.test}", r.crun, r.krun, r.verdict.text]
            for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(3)]

    def fmt(cols: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cols[:3], widths, strict=True)) + "  " + cols[3]

    lines = [fmt(head), fmt(["-" * w for w in widths] + ["-------"])]
    lines += [fmt(b) for b in body]
    return "\n".join(lines)


def counts(statuses: list[str]) -> str:
    passed, failed, skipped = statuses.count(PASS), statuses.count(FAIL), statuses.count(SKIP)
    other = len(statuses) - passed - failed - skipped
    text = f"{passed} passed, {failed} failed, {skipped} skipped"
    if other:
        text += f", {other} not reported (timeout/crash)"
    return text


def totals(rows: list[Row], which: str) -> str:
    vals = [getattr(r, which) for r in rows]
    return f"{which}: {counts(vals)} of {len(vals)}"


def describe_failure(run: FileRun, test: str, limit: int = 3) -> list[str]:
    """The krun commands of one test that failed, each with its first stderr line;
    else the test's own complaint."""
    mine = [i for i in run.invocations if i.test == test]
    failed = [i for i in mine if i.rc != 0]
    lines = []
    for inv in failed[:limit]:
        cmd = " ".join(hl.sh_quote(a) if re.search(r"[^\w@%+=:,./-]", a) else a
                       for a in ["krun", *inv.argv])
        lines.append(f"    $ {cmd}")
        lines.append(f"      exit {inv.rc if inv.rc is not None else '?'}: "
                     f"{inv.first_error() or '(nothing on stderr)'}")
    if len(failed) > limit:
        lines.append(f"    ... and {len(failed) - limit} more failed krun command(s)")
    if not failed:
        own = [x.strip() for x in run.stderr.get(test, []) if x.strip()]
        last = mine[-1] if mine else None
        lines.append("    no krun command failed; the test's own check did"
                     + (f" (last command: krun {' '.join(last.argv)})" if last else ""))
        if own:
            lines.append(f"    test stderr: {own[0]}")
    return lines


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build() -> Suite:
    p = subprocess.run([str(HERE / "build")], stdout=subprocess.PIPE, text=True, check=True)
    vals = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    suite_dir = Path(vals["SUITE"])
    return Suite(suite_dir / "tests", suite_dir / "init", vals["PYLIBMOUNT"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--krun", default=None, help="krun binary (default: krun on PATH, "
                    "then /usr/local/bin/krun)")
    ap.add_argument("--crun", default="/usr/bin/crun", help="the anchor (default /usr/bin/crun)")
    ap.add_argument("--only", default="", help="test files to run: NAME[,NAME] "
                    "(test_exec or exec or test_exec.py)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds per test process (default {DEFAULT_TIMEOUT:.0f})")
    ap.add_argument("--per-file", action="store_true",
                    help="run each file's tests in one process, as `make check` does "
                    "(default: each test in its own process and session)")
    ap.add_argument("--expectations", type=Path, default=HERE / "expectations.toml")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return ap.parse_args(argv)


def select_files(tests_dir: Path, only: str) -> list[Path]:
    files = sorted(tests_dir.glob("test_*.py"))
    if not only:
        return files
    want = set()
    for item in only.split(","):
        w = item.strip().removesuffix(".py")
        if w:
            want.add(w if w.startswith("test_") else f"test_{w}")
    return [f for f in files if f.stem in want]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("crun-suite: must run as root")
        return 2
    try:
        expectations = load_expectations(args.expectations)
    except ExpectationError as e:
        log(f"crun-suite: bad expectations file: {e}")
        return 2
    crun = hl.resolve_binary(args.crun)
    krun = hl.find_krun(args.krun)
    if not crun or not krun:
        log(f"crun-suite: runtime not found: {'crun' if not crun else 'krun'}")
        return 2
    try:
        suite = build()
    except (subprocess.CalledProcessError, KeyError, OSError) as e:
        log(f"crun-suite: build failed: {e}")
        return 2
    check = subprocess.run([PYTHON, "-c", "import libmount"], env={"PYTHONPATH": suite.pythonpath},
                           capture_output=True, text=True)
    if check.returncode != 0:
        log(f"crun-suite: the libmount module does not import: {check.stderr.strip()}")
        return 2
    files = select_files(suite.tests_dir, args.only)
    if not files:
        log(f"crun-suite: no test file matches --only {args.only!r}")
        return 2

    # SIGTERM (a CI timeout) unwinds like ^C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lockf = hl.take_suite_lock("crun-suite")  # held for the whole run

    workdir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir="/tmp"))
    os.chmod(workdir, 0o755)
    (workdir / "logs").mkdir()
    runtimes = [Runtime("crun", crun), Runtime("krun", krun)]
    for rt in runtimes:
        rt.setup(workdir)
    cgroups_before = top_cgroups()
    mounts_before = set(hl.mountpoints())
    start = time.monotonic()
    runs: dict[str, list[FileRun]] = {rt.label: [] for rt in runtimes}
    retries: list[str] = []
    try:
        for f in files:
            for rt in runtimes:
                r = run_file(f, rt, suite, workdir, args.timeout, cgroups_before,
                             per_test=not args.per_file)
                runs[rt.label].append(r)
                bad = sorted({e for e in r.exits if e != "0"})
                log(f"  {f.stem:<24} {rt.label}: {counts([r.status(t) for t in r.names])}, "
                    f"{r.seconds:.1f}s" + (f", exit {','.join(bad)}" if bad else "")
                    + (f"  [{'; '.join(r.cleanup)}]" if r.cleanup else ""))
            if not args.per_file:
                again = retry_krun_failures(runs["crun"][-1], runs["krun"][-1], f,
                                            runtimes[1], suite, workdir, args.timeout,
                                            cgroups_before, expectations)
                retries.extend(f"{f.stem}:{t}" for t in again)
                for line in again:
                    log(f"  {f.stem:<24} krun: retried {line}")
    finally:
        # After an interruption the last test's hygiene did not run: sweep again.
        for rt in runtimes:
            for root in workdir.glob(f"{rt.label}/*/.testsuite-run-*/root"):
                rt.delete_containers(root)
        cleanup_cgroups(cgroups_before)
        hl.cleanup_mounts(str(workdir))
        leftovers = suite_cgroups(cgroups_before)
        new_mounts = sorted(set(hl.mountpoints()) - mounts_before)
        if not args.keep and not hl.remove_work_dir(workdir, WORK_PREFIX):
            log(f"crun-suite: could not remove {workdir}")
        lockf.close()  # releases the lock
    wall = time.monotonic() - start

    rows = compare(runs["crun"], runs["krun"], expectations)
    krun_by_file = {r.file: r for r in runs["krun"]}
    seen = {(r.file.removesuffix(".py"), r.test) for r in rows}
    ran = {f.stem for f in files}
    stale = sorted(f"{s}.{t}" for (s, t) in expectations if s in ran and (s, t) not in seen)

    print(f"crun's test suite: {runtimes[0].version} ({crun}) vs {runtimes[1].version} ({krun})")
    print(render_table(rows))
    print()
    print(totals(rows, "crun"))
    print(totals(rows, "krun"))
    regressions = [r for r in rows if r.verdict.regression]
    unused = [r for r in rows if r.verdict.unused]
    accepted = [r for r in rows if r.verdict.accepted]
    better = [r for r in rows if r.verdict.text == "better"]
    if regressions:
        print(f"\nkrun fails {len(regressions)} test(s) crun passes:")
        for r in regressions:
            print(f"  {r.file.removesuffix('.py')}:{r.test}  (krun {r.krun})")
            print("\n".join(describe_failure(krun_by_file[r.file], r.test)))
    if retries:
        print("\nretried once (crun passed, krun failed the first time): " + ", ".join(retries))
    if unused:
        print("\nlisted in expectations.toml but krun passes now (the entry can go): "
              + ", ".join(f"{r.file.removesuffix('.py')}.{r.test}" for r in unused))
    if stale:
        print("\nexpectations naming tests that do not exist: " + ", ".join(stale))
    if leftovers or new_mounts:
        print(f"\nleft behind: cgroups {leftovers or '-'}; new mounts {new_mounts or '-'}")
    crun_passed = sum(r.crun == PASS for r in rows)
    if crun_passed == 0:
        print("\nverdict: ERROR: crun passes no test, so nothing is compared "
              "(can crun start a container here? see scripts/prepare-cgroups)")
    else:
        verdict = "FAIL" if regressions else "OK"
        print(f"\nverdict: {verdict}: {len(regressions)} regression(s), {len(accepted)} accepted, "
              f"{len(better)} better, {len(unused)} expectation(s) unused; "
              f"{len(files)} files x 2 runtimes in {wall:.0f}s")

    if args.json:
        args.json.write_text(json.dumps({
            "crun": runtimes[0].version, "krun": runtimes[1].version, "seconds": round(wall, 1),
            "tests": [{"file": r.file, "test": r.test, "crun": r.crun, "krun": r.krun,
                       "verdict": r.verdict.text} for r in rows],
            "krun_failures": {f"{r.file}:{r.test}": describe_failure(krun_by_file[r.file], r.test)
                              for r in rows if r.krun not in (PASS, SKIP)},
            "files": [{"file": fr.file, "runtime": fr.runtime, "exits": fr.exits,
                       "seconds": round(fr.seconds, 2), "cleanup": fr.cleanup}
                      for fr in runs["crun"] + runs["krun"]],
        }, indent=2) + "\n")
    if args.keep:
        log(f"crun-suite: work directory kept: {workdir}")
    if crun_passed == 0:
        return 2
    return 1 if regressions else 0
