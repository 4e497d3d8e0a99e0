"""`krun events`: runc 1.1.5's stats and OOM events as JSON lines, on real containers."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import BundleFactory, Krun

from krun.commands.events import parse_duration

# What runc 1.1.5's types.Stats always writes, in its order.
STATS_KEYS = ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
              "network_interfaces"]
WAIT_FOR_GO = "while [ ! -e /go ]; do sleep 0.05; done; "


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _stats(krun: Krun, cid: str) -> dict[str, Any]:
    proc = krun("events", "--stats", cid)
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, proc.stdout
    assert ", " not in proc.stdout and '": ' not in proc.stdout, "compact, as Go writes it"
    event = json.loads(proc.stdout)
    assert list(event) == ["type", "id", "data"]
    assert event["type"] == "stats" and event["id"] == cid
    return event["data"]


@contextmanager
def _container(krun: Krun, bundle_dir: Path, cid: str) -> Iterator[None]:
    krun("run", "-d", "--bundle", str(bundle_dir), cid)
    try:
        yield
    finally:
        krun("delete", "--force", cid, check=False)


class _Stream:
    """`krun events` running, its stdout read line by line with a deadline."""

    def __init__(self, krun: Krun, *args: str) -> None:
        self.proc = subprocess.Popen(krun.argv("events", *args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""

    def line(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None at EOF; fails after `timeout` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout}s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def finish(self, timeout: float = 10) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err.decode(errors="replace")


def test_stats_once_has_runcs_shape(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    with _container(krun, bundle(["sleep", "1000"]), cid):
        data = _stats(krun, cid)
        assert list(data) == STATS_KEYS
        cpu = data["cpu"]
        assert list(cpu) == ["usage", "throttling"]
        usage = cpu["usage"]
        assert isinstance(usage["total"], int) and usage["total"] > 0
        assert isinstance(usage["kernel"], int) and isinstance(usage["user"], int)
        for key in ("percpu", "percpu_kernel", "percpu_user"):
            if key in usage:  # cgroup v1 only
                assert all(isinstance(v, int) for v in usage[key])
                assert len(usage[key]) == os.cpu_count()
        assert all(k in ("periods", "throttledPeriods", "throttledTime")
                   for k in cpu["throttling"])
        mem = data["memory"]
        assert [k for k in mem if k not in ("cache", "raw")] == \
            ["usage", "swap", "kernel", "kernelTCP"]
        for key in ("usage", "swap", "kernel", "kernelTCP"):
            assert set(mem[key]) <= {"limit", "usage", "max", "failcnt"}
            assert "limit" in mem[key] and "failcnt" in mem[key]
            assert all(isinstance(v, int) and v >= 0 for v in mem[key].values())
        assert mem["usage"]["usage"] > 0
        assert mem["usage"]["limit"] > 1 << 40  # no limit in the config
        assert isinstance(mem["raw"], dict) and mem["raw"]
        assert list(mem["raw"]) == sorted(mem["raw"]), "Go writes maps sorted"
        assert all(isinstance(v, int) for v in mem["raw"].values())
        assert data["pids"] == {"current": 1}, "one process; pids.max is max (omitted)"
        assert isinstance(data["blkio"], dict)
        assert isinstance(data["hugetlb"], dict)
        for size, entry in data["hugetlb"].items():
            assert size.endswith("B") and "failcnt" in entry
        assert list(data["hugetlb"]) == sorted(data["hugetlb"])
        assert data["intel_rdt"] == {}
        assert data["network_interfaces"] is None
        assert "sched_load_balance" in data["cpuset"]


def test_stats_follow_the_load(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    # Idle until /go appears, then 32 MiB in /dev/shm (charged to the container) and a
    # busy loop.
    b = bundle(["sh", "-c", WAIT_FOR_GO + "dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 "
                "2>/dev/null; while :; do :; done"])
    with _container(krun, b, cid):
        before = _stats(krun, cid)
        (b / "rootfs" / "go").touch()
        deadline = time.monotonic() + 20
        while True:
            after = _stats(krun, cid)
            cpu_gain = after["cpu"]["usage"]["total"] - before["cpu"]["usage"]["total"]
            mem_gain = after["memory"]["usage"]["usage"] - before["memory"]["usage"]["usage"]
            if cpu_gain > 200_000_000 and mem_gain > 30 << 20:
                break
            assert time.monotonic() < deadline, (cpu_gain, mem_gain)
            time.sleep(0.1)
        if "max" in after["memory"]["usage"]:  # cgroup v1: the peak
            assert after["memory"]["usage"]["max"] >= after["memory"]["usage"]["usage"]


def test_stream_until_the_container_stops(krun: Krun, bundle: BundleFactory,
                                          cid: str) -> None:
    with _container(krun, bundle(["sleep", "1000"]), cid):
        stream = _Stream(krun, "--interval", "200ms", cid)
        try:
            start = time.monotonic()
            events = [stream.line(timeout=5), stream.line(timeout=5)]
            assert time.monotonic() - start >= 0.35, "one event per interval"
            for event in events:
                assert event is not None and event["type"] == "stats" and event["id"] == cid
                assert list(event["data"]) == STATS_KEYS
            krun("kill", cid, "KILL")
            while (event := stream.line(timeout=5)) is not None:
                assert event["type"] == "stats"
        finally:
            code, err = stream.finish()
        assert code == 0 and err == ""


def test_oom_event(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    limit = 32 << 20

    def small(config: dict[str, Any]) -> None:
        config["linux"].setdefault("resources", {})["memory"] = {"limit": limit}

    # busybox tail keeps an endless line in memory: it grows past the limit and is killed.
    b = bundle(["sh", "-c", WAIT_FOR_GO + "dd if=/dev/zero bs=1M count=256 2>/dev/null | "
                "tail >/dev/null; sleep 1000"], mutate=small)
    with _container(krun, b, cid):
        assert _stats(krun, cid)["memory"]["usage"]["limit"] == limit
        # An interval far longer than the test: the OOM event must not wait for a tick.
        stream = _Stream(krun, "--interval", "1m", cid)
        try:
            time.sleep(0.3)
            (b / "rootfs" / "go").touch()
            assert stream.line(timeout=15) == {"type": "oom", "id": cid}
            krun("kill", cid, "KILL")
            assert stream.line(timeout=10) is None, "one OOM, one event"
        finally:
            code, err = stream.finish()
        assert code == 0 and err == ""


def test_interrupt_is_quiet(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    with _container(krun, bundle(["sleep", "1000"]), cid):
        stream = _Stream(krun, "--interval", "100ms", cid)
        try:
            assert stream.line(timeout=5) is not None
            stream.proc.send_signal(signal.SIGINT)
        finally:
            code, err = stream.finish()
        assert code == 130 and err == ""


@pytest.mark.parametrize(("text", "why"), [
    ("abc", 'time: invalid duration "abc"'),
    ("5", 'time: missing unit in duration "5"'),
    ("5sec", 'time: unknown unit "sec" in duration "5sec"'),
    ("", 'time: invalid duration ""'),
])
def test_bad_interval_is_a_usage_error(krun: Krun, text: str, why: str) -> None:
    for args in (["--stats"], []):
        proc = krun("events", *args, "--interval", text, "anything", check=False)
        assert proc.returncode == 2
        line = _one_line_error(proc)
        assert why in line and "--interval" in line


def test_interval_must_be_positive(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    with _container(krun, bundle(["sleep", "1000"]), cid):
        for text in ("0", "0s", "-1s"):
            proc = krun("events", "--interval", text, cid, check=False)
            assert proc.returncode == 1
            assert _one_line_error(proc) == "krun: duration interval must be greater than 0"


@pytest.mark.parametrize("args", [["--stats"], []])
def test_missing_container(krun: Krun, args: list[str]) -> None:
    proc = krun("events", *args, "nosuch", check=False)
    assert proc.returncode == 1
    assert _one_line_error(proc) == 'krun: container "nosuch" does not exist'


def test_stopped_container(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    with _container(krun, bundle(["true"]), cid):
        krun.wait_status(cid, "stopped")
        for args in (["--stats"], [], ["--interval", "100ms"]):
            proc = krun("events", *args, cid, check=False, timeout=10)
            assert proc.returncode == 1
            assert _one_line_error(proc) == f"krun: container with id {cid} is not running"


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("5s", 5_000_000_000), ("500ms", 500_000_000), ("1m30s", 90_000_000_000),
    ("1.5h", 5_400_000_000_000), (".5s", 500_000_000), ("1.s", 1_000_000_000),
    ("+2us", 2_000), ("3\u00b5s", 3_000), ("-1s", -1_000_000_000), ("1h2m3s4ms5us6ns",
                                                                    3_723_004_005_006),
])
def test_parse_duration_as_go(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", ".s", "1", "1.5.s", "1x", "+", "3000000h", "1 s"])
def test_parse_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        parse_duration(text)


def test_cgroup_v2_reader_on_a_fake_tree(tmp_path: Path) -> None:
    """This VM's containers are on v1: the unified-hierarchy reader is checked on files
    shaped as a cgroup v2 kernel writes them."""
    from krun.runtime import stats

    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    d = tmp_path / "ctr"
    d.mkdir()
    files = {
        "cgroup.controllers": "cpu io memory hugetlb pids\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                    "nr_throttled 1\nthrottled_usec 7\n",
        "memory.stat": "anon 4096\nfile 8192\n",
        "memory.current": "12288\n", "memory.max": "65536\n",
        "memory.swap.current": "100\n", "memory.swap.max": "max\n",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "pids.current": "2\n", "pids.max": "10\n",
        "io.stat": "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        "hugetlb.2MB.current": "0\n", "hugetlb.2MB.events": "max 2\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    cg = stats.Cgroups("/ctr", root=str(tmp_path))
    data = stats.read_stats(cg)
    assert data["cpu"] == {"usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
                           "throttling": {"periods": 4, "throttledPeriods": 1,
                                          "throttledTime": 7000}}
    mem = data["memory"]
    assert mem["cache"] == 8192 and mem["raw"] == {"anon": 4096, "file": 8192}
    assert mem["usage"] == {"limit": 65536, "usage": 12288, "failcnt": 0}
    assert mem["swap"] == {"limit": (1 << 64) - 1, "usage": 12388, "failcnt": 0}
    assert mem["kernel"] == {"limit": 0, "failcnt": 0}
    assert data["pids"] == {"current": 2, "limit": 10}
    assert data["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096},
                                    {"major": 8, "op": "Write"}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1},
                                {"major": 8, "op": "Write"}]}
    assert data["hugetlb"] == {"2MB": {"failcnt": 2}}
    watch = stats.OomWatch(cg)
    assert watch.fd is None and watch.polling() and not watch.check()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert watch.check() and not watch.check()
    watch.close()
