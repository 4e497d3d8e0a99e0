"""Crash consistency: whatever killed a container half-way, `delete --force` removes it all.

A campaign of seeded random lifecycles (tests/crashlib.py) with 20-30 % injected faults
(krun SIGKILLed mid-command, the container's init SIGKILLed, ENOSPC in the state root)
must leave no state, cgroup, mount, process, fifo, lease, NAT rule or veth after
`delete --force`, and every id must be usable again. Then hand-made wreckage of the
kinds a crash leaves. scripts/crash-campaign runs the same harness for 1,000+.

KRUN_CRASH_SEED, KRUN_CRASH_LIFECYCLES, KRUN_CRASH_FAULT_RATE and KRUN_CRASH_WORKERS
override the campaign's seed (random by default, printed), size, rate and parallelism.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import crashlib as cl
import pytest

LIFECYCLES = int(os.environ.get("KRUN_CRASH_LIFECYCLES", "300"))
FAULT_RATE = float(os.environ.get("KRUN_CRASH_FAULT_RATE", "0.25"))
WORKERS = int(os.environ.get("KRUN_CRASH_WORKERS", "3"))
SEED = int(os.environ.get("KRUN_CRASH_SEED") or cl.new_seed())

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real containers")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[cl.Harness]:
    h = cl.Harness(tmp_path / "crash")
    yield h
    left = h.sweep()
    h.close()
    assert not left, f"the harness left things behind: {left}"


def test_inventory_sees_every_leak_class(tmp_path: Path) -> None:
    """The inventory is trusted only because it reports a fake leak of every kind."""
    assert cl.selftest(tmp_path) == []


def test_a_hang_is_reported_and_killed() -> None:
    step = cl.run_krun("hang", ["sleep", "60"], timeout=0.3)
    assert step.hung and step.rc == -9 and step.seconds < 5
    step = cl.run_krun("killed", ["sleep", "60"], kill_after=0.05)
    assert step.killed_at is not None and not step.hung and step.rc == -9


def test_crash_campaign(harness: cl.Harness) -> None:
    print(f"crash campaign seed {SEED} (KRUN_CRASH_SEED={SEED} replays it)")
    camp = harness.campaign(LIFECYCLES, FAULT_RATE, SEED, workers=WORKERS)
    summary = camp.summary()
    print(summary)
    failures = camp.failures()
    details = "\n".join(r.report(camp.replay_command(r)) for r in failures[:30])
    if failures:
        pytest.fail(f"{len(failures)} of {len(camp.results)} lifecycles failed (campaign "
                    f"seed {SEED}):\n{details}\n\n{summary}", pytrace=False)
    assert not camp.global_leftovers, camp.global_leftovers
    faulted = [r for r in camp.results if r.plan.fault != "none"]
    assert 0.2 <= len(faulted) / len(camp.results) <= 0.3, summary
    for kind in ("krun-kill", "init-kill"):
        assert any(r.plan.fault == kind and r.fault_hit.startswith("hit") for r in faulted), \
            f"no {kind} fault landed: {summary}"
    assert any(r.plan.fault == "enospc" for r in faulted), summary


# ------------------------------------------------------------------- hand-made wreckage

def _plan(h: cl.Harness, n: int) -> cl.Plan:
    return cl.Plan(index=90000 + n, seed=0, cid=f"{cl.ID_PREFIX}{h.tag}-d{n:04d}",
                   kind="plain", scenario="create-start-kill-delete", fault="none")


def _setup(h: cl.Harness, n: int) -> tuple[cl.Plan, Path, Path]:
    plan = _plan(h, n)
    root = h.root_for(plan)
    if root.exists():
        cl.remove_tree(root)
    (root / ".krun").mkdir(parents=True, mode=0o700)
    return plan, root, h.bundles_for(plan)


def _krun(h: cl.Harness, root: Path, *args: str) -> cl.Step:
    step = cl.run_krun(args[0], [h.krun, "--root", str(root), *args])
    assert step.rc == 0 and not step.hung, step.brief()
    return step


def _real_container(h: cl.Harness, plan: cl.Plan, root: Path, bundle: Path) -> int:
    """A created container's init pid."""
    _krun(h, root, "create", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"),
          plan.cid)
    return int((bundle / "pid").read_text())


def _assert_clean(h: cl.Harness, plan: cl.Plan, root: Path, bundle: Path) -> None:
    res = cl.Result(plan)
    try:
        h.verify(plan, root, bundle, res)
    finally:
        if not res.unscrubbed:
            cl.remove_tree(root)
            cl.remove_tree(bundle)
    if res.failed:
        pytest.fail(res.report(), pytrace=False)


def test_state_dir_with_only_a_config(harness: cl.Harness) -> None:
    """`mkdir R/X; cp config.json R/X/`: what a create killed before libcrun wrote its
    status leaves. crun removes it; so must krun."""
    plan, root, bundle = _setup(harness, 1)
    (root / plan.cid).mkdir(mode=0o700)
    (root / plan.cid / "config.json").write_bytes((bundle / "config.json").read_bytes())
    _assert_clean(harness, plan, root, bundle)


def test_state_dir_without_status_with_cgroups(harness: cl.Harness) -> None:
    """The leak class the review found: a state dir with no status file, plus the
    container's (empty) cgroup in every hierarchy."""
    plan, root, bundle = _setup(harness, 2)
    (root / plan.cid).mkdir(mode=0o700)
    (root / plan.cid / "config.json").write_bytes((bundle / "config.json").read_bytes())
    made = []
    try:
        for h in cl.cgroup_hierarchies():
            (h / plan.cid).mkdir()
            made.append(h / plan.cid)
        _assert_clean(harness, plan, root, bundle)
    finally:
        for cg in made:
            if cg.exists():
                cg.rmdir()


def test_status_with_a_dead_pid(harness: cl.Harness) -> None:
    """A state dir with config.json and a status naming an init that is long gone."""
    plan, root, bundle = _setup(harness, 3)
    dead = subprocess.Popen(["true"])
    dead.wait()
    sdir = root / plan.cid
    sdir.mkdir(mode=0o700)
    (sdir / "config.json").write_bytes((bundle / "config.json").read_bytes())
    (sdir / "status").write_text(json.dumps({
        "pid": dead.pid, "process-start-time": 1, "cgroup-path": f"/{plan.cid}",
        "scope": "", "rootfs": "rootfs", "systemd-cgroup": False, "bundle": str(bundle),
        "created": "2026-01-01T00:00:00.000000000Z", "owner": "root", "detached": True,
        "external_descriptors": '["/dev/null","/dev/null","/dev/null"]'}))
    _assert_clean(harness, plan, root, bundle)


def test_created_container_whose_init_was_killed(harness: cl.Harness) -> None:
    plan, root, bundle = _setup(harness, 4)
    pid = _real_container(harness, plan, root, bundle)
    assert cl.kill_ours(pid, plan.cid, bundle)
    assert cl.wait_pid(pid, 10)
    _assert_clean(harness, plan, root, bundle)


def _a_real_record(h: cl.Harness, n: int) -> bytes:
    """krun's record of a created container, whatever its current format."""
    plan, root, bundle = _setup(h, n)
    _real_container(h, plan, root, bundle)
    data = (root / ".krun" / f"{plan.cid}.json").read_bytes()
    _krun(h, root, "delete", "--force", plan.cid)
    cl.remove_tree(root)
    cl.remove_tree(bundle)
    assert data
    return data


def test_record_without_state_dir(harness: cl.Harness) -> None:
    record = _a_real_record(harness, 5)
    plan, root, bundle = _setup(harness, 5)
    (root / ".krun" / f"{plan.cid}.json").write_bytes(record)
    _assert_clean(harness, plan, root, bundle)


@pytest.mark.parametrize("garbage", ["half", "binary", "empty"])
def test_truncated_or_garbage_record(harness: cl.Harness, garbage: str) -> None:
    record = _a_real_record(harness, 6)
    data = {"half": record[: len(record) // 2], "binary": b"\0\xff{{\n\x01",
            "empty": b""}[garbage]
    plan, root, bundle = _setup(harness, 6)
    (root / ".krun" / f"{plan.cid}.json").write_bytes(data)
    _assert_clean(harness, plan, root, bundle)


def test_truncated_record_of_a_live_container(harness: cl.Harness) -> None:
    """The record torn (a crash mid-write) while the container itself is complete."""
    plan, root, bundle = _setup(harness, 7)
    _real_container(harness, plan, root, bundle)
    _krun(harness, root, "start", plan.cid)
    rec = root / ".krun" / f"{plan.cid}.json"
    rec.write_bytes(rec.read_bytes()[: max(1, len(rec.read_bytes()) // 2)])
    _assert_clean(harness, plan, root, bundle)


def test_krun_killed_while_the_init_waits_on_the_fifo(harness: cl.Harness) -> None:
    """create SIGKILLed right after libcrun forked the init (its pid file exists)."""
    plan, root, bundle = _setup(harness, 8)
    proc = subprocess.Popen([harness.krun, "--root", str(root), "create", "--bundle",
                             str(bundle), "--pid-file", str(bundle / "pid"), plan.cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(2000):
            if (bundle / "pid").exists() or proc.poll() is not None:
                break
            cl.wait_pid(proc.pid, 0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    _assert_clean(harness, plan, root, bundle)
