"""Unit tests of the harness's TAP parser, expectations and verdicts, and of the
safety checks of harnesslib, which it shares with crun-suite (no runtime needed)."""

import os
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conformance as c
import harnesslib as hl


def tap(s: str) -> c.TapResult:
    return c.parse_tap(textwrap.dedent(s).lstrip("\n"))


def result(text: str, exit: int | None = 0, timed_out: bool = False,
           name: str = "t") -> c.FileResult:
    return c.FileResult(name, "x", None if timed_out else exit, timed_out, 1.0, tap(text))


# --- TAP parser ------------------------------------------------------------

def test_counts_pass_fail_skip():
    r = tap("""
        TAP version 13
        ok 1 - a
        not ok 2 - b
        ok 3 # SKIP not here
        ok 4 # skip lower case (tap-go prints it so)
        not ok 5 - c # TODO later
        1..5
        """)
    assert (r.passed, r.failed, r.skipped) == (1, 1, 3)
    assert [a.key() for a in r.failures()] == ["2"]
    assert r.failures()[0].description == "b"
    assert r.plan_problems() == []


def test_yaml_and_json_diagnostics_are_ignored():
    r = tap("""
        TAP version 13
        ok 1 - has expected hostname
          ---
          {
            "actual": "x",
        ok 99 - not an assertion inside a YAML block
        not ok 98
            "expected": "x"
          }
          ...
        not ok 2 - memory kernel is set correctly
        # expect: 1, actual: 2
          {"inline": "json"}
        ok 3
        1..3
        """)
    assert [a.number for a in r.assertions] == [1, 2, 3]
    assert (r.passed, r.failed) == (2, 1)
    assert r.plan_problems() == []


def test_two_streams_each_with_header_and_plan():
    r = tap("""
        TAP version 13
        ok 1 - first
        not ok 2 - second
        1..2
        TAP version 13
        1..1
        not ok 1 - other stream
        """)
    assert len(r.streams) == 2
    assert [a.key() for a in r.failures()] == ["2", "2:1"]
    assert r.plan_problems() == []


def test_numbering_restart_without_header_starts_a_stream():
    r = tap("""
        ok 1
        ok 2
        ok 1
        """)
    assert [s.count for s in r.streams] == [2, 1]


def test_plan_mismatch_and_skip_all():
    r = tap("""
        TAP version 13
        1..3
        ok 1
        """)
    assert r.plan_problems() == ["stream 1: planned 3, ran 1"]
    r = tap("""
        TAP version 13
        1..0 # SKIP no hugetlb
        """)
    assert r.plan_problems() == [] and r.streams[0].plan_skip == "no hugetlb"
    assert r.assertions == []


def test_unnumbered_assertions_and_bail_out():
    r = tap("""
        ok - a
        not ok - b
        Bail out! runtime exploded
        """)
    assert [a.number for a in r.assertions] == [1, 2]
    assert r.bailed_out == "runtime exploded"


def test_stray_output_is_not_an_assertion():
    r = tap("""
        TAP version 13
        failed to start the container
        okay this is not tap
        1..0
        """)
    assert r.assertions == [] and r.plan_problems() == []


def test_error_diagnostic_is_recorded():
    r = tap("""
        TAP version 13
          ---
          {
            "error": "Hooks MUST be called in the listed order"
          }
          ...
        1..0
        """)
    assert r.error_diagnostics == ["Hooks MUST be called in the listed order"]


# --- file results ------------------------------------------------------------

def test_file_without_assertions_is_judged_by_exit_status():
    assert result("", exit=0).clean()
    bad = result("", exit=1)
    assert not bad.clean() and bad.file_problems() == ["exit 1"]
    assert result("", timed_out=True).file_problems() == ["timeout"]
    assert result("", timed_out=True).cell() == "0/0/0/T/O"


def test_file_without_assertions_but_error_diagnostic_fails():
    r = result("""
        TAP version 13
          ---
          {"error": "failed"}
          ...
        1..0
        """)
    assert not r.clean()
    assert r.file_problems() == ["error: failed"]


# --- expectations --------------------------------------------------------------

def test_parse_expectations_forms():
    e = c.parse_expectations({"accept": {
        "a": {"assertions": "any", "reason": "env"},
        "b": {"assertions": [6, "15", "2:1", "1:3"], "reason": "kernel"},
    }})
    assert e["a"].any
    assert e["b"].assertions == {"6", "15", "2:1", "3"}


@pytest.mark.parametrize("entry", [
    {"assertions": "any"},                       # no reason
    {"assertions": "all", "reason": "r"},
    {"assertions": [], "reason": "r"},
    {"assertions": [0], "reason": "r"},
    {"assertions": [True], "reason": "r"},
    {"assertions": ["x"], "reason": "r"},
    {"assertions": "any", "reason": "r", "typo": 1},
])
def test_parse_expectations_rejects(entry):
    with pytest.raises(c.ExpectationError):
        c.parse_expectations({"accept": {"f": entry}})


def test_committed_expectations_load_and_keep_the_strict_files_strict():
    e = c.load_expectations(Path(c.HERE) / "expectations.toml")
    assert "delete" not in e and "process_capabilities_fail" not in e
    assert e["linux_cgroups_blkio"].any
    assert not e["process_rlimits"].any and e["process_rlimits"].assertions == {"13"}
    assert e["hooks"].diagnostics and not e["hooks"].any
    for x in e.values():
        assert x.reason.strip()


# --- verdicts ------------------------------------------------------------------

GOOD = "ok 1\nok 2\nok 3\n1..3\n"
ONE_FAIL = "ok 1\nnot ok 2\nok 3\n1..3\n"


def exp(**kw):
    return c.Expectation("t", "reason", **kw)


def test_clean_is_ok():
    v = c.judge(result(GOOD), result(GOOD), None)
    assert v.ok and v.label == "ok"


def test_unaccepted_failure_fails_even_if_anchor_fails_too():
    v = c.judge(result(ONE_FAIL), result(ONE_FAIL), None)
    assert not v.ok and "unaccepted failure #2" in v.label


def test_accepted_assertion_numbers():
    assert c.judge(result(ONE_FAIL), result(ONE_FAIL), exp(assertions=frozenset({"2"}))).ok
    v = c.judge(result(ONE_FAIL), result(ONE_FAIL), exp(assertions=frozenset({"3"})))
    assert not v.ok


def test_accepted_numbers_do_not_cover_other_streams():
    two = "ok 1\n1..1\nTAP version 13\nnot ok 1\n1..1\n"
    assert not c.judge(result(two), None, exp(assertions=frozenset({"1"}))).ok
    assert c.judge(result(two), None, exp(assertions=frozenset({"2:1"}))).ok


def test_accept_any_covers_exit_status_and_flakes():
    v = c.judge(result("", exit=1), result(GOOD), exp(any=True))
    assert v.ok and v.label == "accepted"


def test_fewer_passes_than_anchor_fails():
    fewer = "ok 1\nok 2 # SKIP\nok 3\n1..3\n"
    v = c.judge(result(fewer), result(GOOD), None)
    assert not v.ok and "passes 2 < anchor 3" in v.label


def test_nonzero_exit_fails_unless_any():
    v = c.judge(result(GOOD, exit=1), result(GOOD), None)
    assert not v.ok and "exit 1" in v.label
    v = c.judge(result(GOOD, exit=1), result(GOOD), exp(assertions=frozenset({"2"})))
    assert not v.ok


def test_timeout_when_anchor_does_not_always_fails():
    v = c.judge(result("", timed_out=True), result(GOOD), exp(any=True))
    assert not v.ok and "timed out (anchor did not)" in v.label
    v = c.judge(result("", timed_out=True), result("", timed_out=True), exp(any=True))
    assert v.ok


def test_better_than_anchor():
    v = c.judge(result(GOOD), result(ONE_FAIL), None)
    assert v.ok and v.label == "better"


def test_unused_expectation_is_reported():
    v = c.judge(result(GOOD), result(GOOD), exp(any=True))
    assert v.ok and "unused" in v.label


# --- report ----------------------------------------------------------------------

def test_table_and_totals():
    a, b = result(ONE_FAIL), result(GOOD)
    rows = [{"name": "hooks", "a_cell": a.cell(), "b_cell": b.cell(), "verdict": "x"}]
    t = c.render_table(rows, "krun", "crun")
    assert t.splitlines()[0].startswith("file ")
    assert "hooks | 2/1/0/0" in t
    assert c.totals([a, b])["passed"] == 5


# --- accepted diagnostics (programs without assertions) ------------------------

HOOKS_BUG = """
TAP version 13
  ---
  {
    "error": "Hooks MUST be called in the listed order\\nRefer to: https://example/spec"
  }
  ...
1..0
"""
HOOKS_CREATE_FAILED = """
TAP version 13
  ---
  {
    "error": "exit status 1",
    "stderr": "failed to create the container"
  }
  ...
1..0
"""


def test_accepted_diagnostic_only_covers_its_text():
    e = exp(diagnostics=("Hooks MUST be called in the listed order",))
    v = c.judge(result(HOOKS_BUG), result(HOOKS_BUG), e)
    assert v.ok and v.label == "accepted"
    v = c.judge(result(HOOKS_CREATE_FAILED), result(HOOKS_BUG), e)
    assert not v.ok and "error: exit status 1" in v.label
    v = c.judge(result(HOOKS_BUG, exit=1), result(HOOKS_BUG), e)
    assert not v.ok and "exit 1" in v.label


def test_expectation_needs_assertions_or_diagnostics():
    with pytest.raises(c.ExpectationError):
        c.parse_expectations({"accept": {"f": {"reason": "r"}}})
    with pytest.raises(c.ExpectationError):
        c.parse_expectations({"accept": {"f": {"reason": "r", "diagnostics": [""]}}})
    e = c.parse_expectations({"accept": {"f": {"reason": "r", "diagnostics": ["x"]}}})
    assert e["f"].diagnostics == ("x",) and not e["f"].any and not e["f"].assertions


# --- hugetlb hint -----------------------------------------------------------------

HYBRID = """\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""


def test_hugetlb_hint():
    assert "mount -t cgroup -o hugetlb" in c.hugetlb_hint(HYBRID)
    fixed = HYBRID + "40 25 0:40 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb\n"
    assert c.hugetlb_hint(fixed) is None
    pure_v2 = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert c.hugetlb_hint(pure_v2) is None


def test_fewer_passes_than_an_anchor_that_died_is_no_regression():
    # process_capabilities_fail: crun wrongly creates, runtimetest prints 270 oks, then exit 1;
    # krun rejects the config, nothing printed, exit 0.
    anchor = result("ok 1\nok 2\nok 3\n", exit=1)
    v = c.judge(result("", exit=0), anchor, None)
    assert v.ok and v.label == "better"
    # but an anchor that merely fails assertions still sets the bar
    v = c.judge(result("ok 1\n"), result("ok 1\nok 2\nnot ok 3\n"), None)
    assert not v.ok and "passes 1 < anchor 2" in v.label


# --- harnesslib: parsing and the checks that keep the cleanup to our own -----------

def test_parse_mountinfo_unescapes_and_skips_optional_fields():
    text = ("36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/r rw\n"
            "37 35 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
            "truncated line\n")
    assert hl.parse_mountinfo(text) == [("/mnt/with space", "ext3"),
                                        ("/sys/fs/cgroup/cpu", "cgroup")]


def test_cleanup_mounts_wants_a_work_directory():
    for bad in ("/", "//", "relative/dir", ""):
        with pytest.raises(ValueError):
            hl.cleanup_mounts(bad)


def test_kill_session_refuses_its_own_session_and_init():
    for bad in (0, 1, os.getsid(0)):
        with pytest.raises(ValueError):
            hl.kill_session(bad)


def test_remove_cgroup_trees_leaves_what_is_not_below_a_cgroup_root(tmp_path: Path):
    d = tmp_path / "cgrouptest"
    d.mkdir()
    assert hl.remove_cgroup_trees([str(d), "/sys/fs/cgroup/cpu/../../../tmp"]) == []
    assert d.is_dir()


def test_delete_containers_takes_only_real_dirs_with_safe_ids(tmp_path: Path):
    root = tmp_path / "root"
    for name in ("abc-1", ".krun", "-f", "ok.2"):
        (root / name).mkdir(parents=True)
    (root / "file").write_text("")
    (root / "link").symlink_to(tmp_path)
    log = tmp_path / "log"
    fake = tmp_path / "rt"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    fake.chmod(0o755)
    assert hl.delete_containers([str(fake), "--root", str(root)], root) == ["abc-1", "ok.2"]
    assert log.read_text().splitlines() == [f"--root {root} delete --force abc-1",
                                            f"--root {root} delete --force ok.2"]
    assert hl.delete_containers([str(fake)], tmp_path / "none") == []


def test_remove_work_dir_needs_the_prefix(tmp_path: Path):
    other = tmp_path / "someone-else"
    other.mkdir()
    assert not hl.remove_work_dir(other, "krun-conformance.")
    assert other.is_dir()
    ours = tmp_path / "krun-conformance.x1"
    (ours / "a").mkdir(parents=True)
    assert hl.remove_work_dir(ours, "krun-conformance.")
    assert not ours.exists()
