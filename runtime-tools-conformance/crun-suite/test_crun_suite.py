"""Unit tests of the crun-suite harness: TAP parsing, test discovery, expectations,
verdicts, the runner's tagging, the logging wrapper and the path checks (no
container runtime needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

# As ./run does: the directory above for harnesslib, this one (first) for crun_suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import crun_suite as cs
import harnesslib as hl

HERE = cs.HERE


def tap(s: str) -> cs.Tap:
    return cs.parse_tap(textwrap.dedent(s).lstrip("\n"))


# --- TAP ------------------------------------------------------------------------

def test_tap_pass_fail_skip_and_noise():
    t = tap("""
        1..4
        {'prestart': [{'path': '/bin/false'}]}
        ok 1 - start
        not ok 2 - run-twice
        ok 3 - sd-notify #SKIP
        Status : FAIL 1 b'oops'
        ok 4 - cwd-relative
        """)
    assert t.plan == 4
    assert t.results == {"start": cs.PASS, "run-twice": cs.FAIL, "sd-notify": cs.SKIP,
                         "cwd-relative": cs.PASS}


def test_tap_over_a_pty_has_carriage_returns():
    t = cs.parse_tap("1..2\r\nok 1 - test-stdin-tty\r\nnot ok 2 - test-detach-tty\r\n")
    assert t.results == {"test-stdin-tty": cs.PASS, "test-detach-tty": cs.FAIL}


def test_tap_file_skipped_as_a_whole():
    t = cs.parse_tap("1..0\n")
    assert t.plan == 0 and t.results == {}


def test_tap_names_with_underscores_and_spaces():
    t = cs.parse_tap("ok 10 - exec_write_pid_file\nok 11 - a b  #SKIP\n")
    assert t.results == {"exec_write_pid_file": cs.PASS, "a b": cs.SKIP}


# --- discovery and stderr ---------------------------------------------------------

def test_test_names_reads_all_tests_keys_in_order():
    src = textwrap.dedent("""
        from tests_utils import *
        def test_a(): return 0
        all_tests = {
            "b-second" : test_a,
            "a_first": test_a,
        }
        if __name__ == "__main__":
            tests_main(all_tests)
        """)
    assert cs.test_names(src) == ["b-second", "a_first"]
    assert cs.test_names("x = 1\n") == []


def test_split_stderr_at_markers():
    text = f"early\n{cs.MARKER}one\nboom\n{cs.MARKER}two\n"
    assert cs.split_stderr(text) == {"": ["early"], "one": ["boom"], "two": []}


# --- expectations -----------------------------------------------------------------

def test_expectations_parse():
    exp = cs.parse_expectations({"test_exec": {"exec-add-capability": {
        "kind": "deliberate", "reason": "why"}}})
    e = exp[("test_exec", "exec-add-capability")]
    assert (e.kind, e.reason) == ("deliberate", "why")


@pytest.mark.parametrize("data", [
    {"test_exec": {"x": {"kind": "deliberate"}}},                      # no reason
    {"test_exec": {"x": {"kind": "deliberate", "reason": " "}}},       # empty reason
    {"test_exec": {"x": {"kind": "cli-gap", "reason": "r"}}},          # unknown kind
    {"test_exec": {"x": {"kind": "deliberate", "reason": "r", "y": 1}}},  # unknown key
    {"exec": {"x": {"kind": "deliberate", "reason": "r"}}},            # not a test file
    {"test_exec": {"x": "just a string"}},
])
def test_expectations_rejects(data: dict):
    with pytest.raises(cs.ExpectationError):
        cs.parse_expectations(data)


def test_shipped_expectations_file_is_valid():
    with open(HERE / "expectations.toml", "rb") as f:
        exp = cs.parse_expectations(tomllib.load(f))
    assert exp, "expected at least the deliberate differences"
    assert ("test_start", "delete-in-created-state") in exp


# --- verdicts ---------------------------------------------------------------------

E = cs.Expectation("test_x", "t", "deliberate", "because")


@pytest.mark.parametrize(("crun", "krun", "exp", "text", "regression", "unused"), [
    (cs.PASS, cs.PASS, None, "ok", False, False),
    (cs.PASS, cs.FAIL, None, "FAIL: crun passes", True, False),
    (cs.PASS, cs.TIMEOUT, None, "FAIL: crun passes", True, False),
    (cs.PASS, cs.MISSING, None, "FAIL: crun passes", True, False),
    (cs.PASS, cs.SKIP, None, "FAIL: krun skips, crun passes", True, False),
    (cs.PASS, cs.FAIL, E, "accepted (deliberate)", False, False),
    (cs.PASS, cs.PASS, E, "ok (expectation unused)", False, True),
    (cs.FAIL, cs.PASS, None, "better", False, False),
    (cs.SKIP, cs.PASS, None, "ok", False, False),
    (cs.FAIL, cs.FAIL, None, "not judged (crun does not pass)", False, False),
    (cs.SKIP, cs.FAIL, None, "not judged (crun does not pass)", False, False),
    (cs.SKIP, cs.SKIP, None, "skip", False, False),
])
def test_judge(crun: str, krun: str, exp: cs.Expectation | None, text: str,
               regression: bool, unused: bool):
    v = cs.judge(crun, krun, exp)
    assert (v.text, v.regression, v.unused) == (text, regression, unused)


def test_filerun_add_marks_unreported_tests():
    r = cs.FileRun("test_x.py", "krun", ["a", "b", "c"])
    r.add(["a"], cs.parse_tap("1..1\nok 1 - a\n"), 0, False)
    r.add(["b"], cs.parse_tap("1..1\n"), None, True)
    r.add(["c"], cs.parse_tap(""), 1, False)
    assert [r.status(t) for t in r.names] == [cs.PASS, cs.TIMEOUT, cs.MISSING]
    assert r.exits == ["0", "T/O", "1"]


def test_filerun_add_whole_file_skip_and_extra_names():
    r = cs.FileRun("test_mounts.py", "crun", ["m1", "m2"])
    r.add(["m1", "m2"], cs.parse_tap("1..0\n"), 0, False)
    assert [r.status(t) for t in r.names] == [cs.SKIP, cs.SKIP]
    r2 = cs.FileRun("test_y.py", "crun", ["a"])
    r2.add(["a"], cs.parse_tap("1..2\nok 1 - a\nok 2 - new\n"), 0, False)
    assert r2.names == ["a", "new"] and r2.status("new") == cs.PASS


def test_compare_rows_and_expectations():
    c = cs.FileRun("test_x.py", "crun", ["t", "u"])
    c.add(["t", "u"], cs.parse_tap("ok 1 - t\nok 2 - u\n"), 0, False)
    k = cs.FileRun("test_x.py", "krun", ["t", "u"])
    k.add(["t", "u"], cs.parse_tap("not ok 1 - t\nnot ok 2 - u\n"), 0, False)
    rows = cs.compare([c], [k], {("test_x", "t"): E})
    assert [(r.test, r.verdict.text) for r in rows] == [
        ("t", "accepted (deliberate)"), ("u", "FAIL: crun passes")]
    table = cs.render_table(rows)
    assert "test_x:u" in table and "FAIL: crun passes" in table
    assert cs.totals(rows, "krun") == "krun: 0 passed, 2 failed, 0 skipped of 2"


def test_describe_failure_names_the_failed_command():
    r = cs.FileRun("test_x.py", "krun", ["t"])
    r.invocations = [
        cs.Invocation("t", ["--root", "/r", "state", "c1"], 0, ""),
        cs.Invocation("t", ["--root", "/r", "delete", "c1"], 1, "\nkrun: cannot delete\nmore\n"),
        cs.Invocation("other", ["kill", "c2"], 1, "not this one"),
    ]
    lines = cs.describe_failure(r, "t")
    assert lines == ["    $ krun --root /r delete c1", "      exit 1: krun: cannot delete"]


def test_describe_failure_when_only_the_check_failed():
    r = cs.FileRun("test_x.py", "krun", ["t"])
    r.invocations = [cs.Invocation("t", ["exec", "c1", "/init", "cat"], 0, "")]
    r.stderr = {"t": ["", "NoNewPrivs is 1"]}
    lines = cs.describe_failure(r, "t")
    assert "no krun command failed" in lines[0] and "exec c1 /init cat" in lines[0]
    assert lines[1] == "    test stderr: NoNewPrivs is 1"


# --- the runner and the wrapper ---------------------------------------------------

def test_runner_tags_each_test(tmp_path: Path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "tests_utils.py").write_text(textwrap.dedent("""
        import os
        def tests_main(all_tests):
            for i, (k, v) in enumerate(all_tests.items(), 1):
                print("ok %d - %s" % (i, k) if v() == 0 else "not ok %d - %s" % (i, k))
        """))
    (tests / "test_fake.py").write_text(textwrap.dedent("""
        import os, sys
        from tests_utils import *
        def a():
            print("env", os.environ.get("CRUN_SUITE_TEST"))
            return 0
        def b():
            sys.stderr.write("b says no\\n")
            return 1
        all_tests = {"a-test": a, "b_test": b}
        if __name__ == "__main__":
            tests_main(all_tests)
        """))
    p = subprocess.run([sys.executable, str(HERE / "runner.py"), str(tests / "test_fake.py")],
                       capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": os.environ.get("PATH", "/usr/bin"),
                            "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["env a-test", "ok 1 - a-test", "not ok 2 - b_test"]
    assert cs.split_stderr(p.stderr) == {"": [], "a-test": [], "b_test": ["b says no"]}


def test_wrapper_logs_argv_status_stderr_and_test(tmp_path: Path):
    fake = tmp_path / "fake-runtime"
    fake.write_text("#!/bin/sh\necho out\necho \"err: $2\" >&2\nls /proc/self/fd >&2\nexit 3\n")
    fake.chmod(0o755)
    rt = cs.Runtime("fake", str(fake))
    rt.setup(tmp_path)
    p = subprocess.run([rt.wrapper, "--root", "a b", "state", "x"], capture_output=True,
                       text=True, env={"PATH": "/usr/bin:/bin", "CRUN_SUITE_TEST": "my-test"})
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert p.stderr.startswith("err: a b\n")
    # the runtime gets exactly fds 0, 1, 2 (and ls's own): nothing leaks from the wrapper
    assert sorted(p.stderr.split()[3:]) == ["0", "1", "2", "3"]
    inv = rt.take_invocations()
    assert len(inv) == 1
    assert (inv[0].test, inv[0].argv, inv[0].rc) == ("my-test", ["--root", "a b", "state", "x"], 3)
    assert inv[0].first_error() == "err: a b"
    assert rt.take_invocations() == []       # records are consumed
    assert list(rt.logdir.iterdir()) == []


def test_wrapper_quotes_odd_binary_paths(tmp_path: Path):
    d = tmp_path / "it's here"
    d.mkdir()
    fake = d / "rt"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    rt = cs.Runtime("odd", str(fake))
    rt.setup(tmp_path)
    assert subprocess.run([rt.wrapper], env={"PATH": "/usr/bin:/bin"}).returncode == 0


# --- safety checks ----------------------------------------------------------------

def test_checked_rmtree_stays_inside(tmp_path: Path):
    base = tmp_path / "work"
    (base / "a" / "b").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    link = base / "link"
    link.symlink_to(outside)
    assert not hl.checked_rmtree(link, base)            # never through a symlink
    assert (outside / "keep").exists()
    assert not hl.checked_rmtree(outside, base)         # not inside
    assert not hl.checked_rmtree(base, base)            # not the base itself
    assert not hl.checked_rmtree(base / ".." / "outside", base)
    assert (outside / "keep").exists()
    assert hl.checked_rmtree(base / "a", base)
    assert not (base / "a").exists()
    assert hl.checked_rmtree(base / "gone", base)       # already absent: fine


@pytest.mark.parametrize(("name", "ok"), [
    ("test-tmpab_c12x9", True), ("container-1234", True), ("a.b+c-d_e", True),
    ("../x", False), ("a/b", False), ("", False), (".hidden", False), ("-f", False),
    ("x" * 129, False),
])
def test_safe_id(name: str, ok: bool):
    assert bool(hl.SAFE_ID.match(name)) is ok


@pytest.mark.parametrize(("name", "ok"), [
    ("test-tmpab_c12x9", True), ("container-77", True), ("frozen", True),
    ("test-tmpshort", False), ("system.slice", False), ("cgrouptest", False),
    ("ev1", False), ("frozen2", False),
])
def test_suite_cgroup_names(name: str, ok: bool):
    assert bool(cs._RE_SUITE_CGROUP.match(name)) is ok


def test_select_files(tmp_path: Path):
    for n in ("test_exec.py", "test_start.py", "tests_utils.py"):
        (tmp_path / n).write_text("")
    assert [f.name for f in cs.select_files(tmp_path, "")] == ["test_exec.py", "test_start.py"]
    assert [f.name for f in cs.select_files(tmp_path, "exec,test_start.py")] == [
        "test_exec.py", "test_start.py"]
    assert cs.select_files(tmp_path, "nope") == []
