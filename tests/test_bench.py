"""Smoke test of scripts/bench in its tiny mode: the report's shape, never its timings."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, krun_binary

BENCH = REPO / "scripts" / "bench"
CORE = ("run", "lifecycle", "state", "exec", "list")
# Kontain and the engines depend on parts still being built: measured, skipped with a
# reason, or failed with a message are all fine for the bench itself.
OPTIONAL = ("kontain", "toolkit", "snapshot", "docker", "podman")
RSS_SUBCOMMANDS = ("run", "create", "start", "state", "exec", "list", "delete", "kill")


class TinyRun:
    def __init__(self, report: dict[str, Any], png: bytes, markdown: str, elapsed: float) -> None:
        self.report, self.png, self.markdown, self.elapsed = report, png, markdown, elapsed
        self.rows: list[dict[str, Any]] = report["rows"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    krun_binary()  # ends the session with a clear message when krun is not installed
    out = tmp_path_factory.mktemp("bench")
    started = time.monotonic()
    proc = subprocess.Popen([str(BENCH), "--tiny", "--json", str(out / "b.json"),
                             "--png", str(out / "b.png")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench cleans up on SIGTERM
        proc.communicate(timeout=120)
        pytest.fail("scripts/bench --tiny took more than 90 s")
    elapsed = time.monotonic() - started
    assert proc.returncode in (0, 1), f"bench exited {proc.returncode}\n{stderr[-3000:]}"
    run = TinyRun(json.loads((out / "b.json").read_text()), (out / "b.png").read_bytes(),
                  stdout, elapsed)
    if proc.returncode == 1:  # some measurement failed: it must be an optional one
        failed = [r for r in run.rows if r["error"]]
        assert failed and all(r["scenario"] in OPTIONAL for r in failed), stderr[-3000:]
    return run


def test_tiny_mode_is_tiny(tiny: TinyRun) -> None:
    meta = tiny.report["meta"]
    assert (meta["runs"], meta["warmup"], meta["list_size"], meta["tiny"]) == (1, 0, 10, True)
    assert tiny.elapsed < 90


def test_core_scenarios_have_a_row_per_runtime(tiny: TinyRun) -> None:
    for scenario in CORE:
        mine = {r["runtime"]: r for r in tiny.rows if r["scenario"] == scenario}
        assert set(mine) == {"krun", "crun", "runc"}, scenario
        for r in mine.values():
            assert r["error"] is None and r["skipped"] is None, r
            assert r["n"] == 1 and len(r["samples_ms"]) == 1
            assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert mine["krun"]["ratio_to_crun"] > 0 and mine["krun"]["ratio_to_runc"] > 0
        assert mine["crun"]["ratio_to_crun"] is None  # the ratios are krun's
        assert tiny.report["ratios"][scenario]["crun"] == mine["krun"]["ratio_to_crun"]
    lifecycle = next(r for r in tiny.rows if r["scenario"] == "lifecycle"
                     and r["runtime"] == "krun")
    assert set(lifecycle["parts_median_ms"]) == {"create", "start", "delete"}


def test_optional_scenarios_are_measured_or_say_why_not(tiny: TinyRun) -> None:
    for scenario in OPTIONAL:
        mine = [r for r in tiny.rows if r["scenario"] == scenario]
        assert mine, scenario
        for r in mine:
            if r["skipped"]:
                assert f"skipped: {r['skipped']}" in tiny.markdown and r["n"] == 0
            elif r["error"]:
                assert "FAILED: " in tiny.markdown and r["n"] == 0
            else:
                assert r["n"] == 1 and r["median_ms"] > 0


def test_peak_rss_of_every_krun_subcommand(tiny: TinyRun) -> None:
    krun_rss = tiny.report["rss_kib"]["krun"]
    for sub in RSS_SUBCOMMANDS:
        assert krun_rss[sub]["max"] > 0 and krun_rss[sub]["calls"] >= 1, sub
        assert f"| {sub} | " in tiny.markdown
    # crun takes ~3 MB: a figure near the bench's own ~17 MB would mean the
    # measurement picked up the bench's interpreter instead of the runtime.
    assert tiny.report["rss_kib"]["crun"]["state"]["max"] < 8 * 1024


def test_markdown_tables(tiny: TinyRun) -> None:
    md = tiny.markdown
    assert ("| scenario | runtime | median | min | max | krun/crun | krun/runc "
            "| krun's own (own/crun) | note |") in md
    assert "| subcommand | krun | crun | runc | krun calls |" in md
    for title in ("run", "create+start+delete", "state", "exec --detach", "list (10)"):
        assert f"| {title} | krun |" in md


def test_krun_own_work_is_its_median_less_its_interpreter_starts(tiny: TinyRun) -> None:
    floor = [r for r in tiny.rows if r["scenario"] == "floor"]
    assert len(floor) == 1 and floor[0]["n"] == 1 and floor[0]["median_ms"] > 0, floor
    assert floor[0]["runtime"].endswith(" -c pass")
    for scenario in CORE:
        mine = {r["runtime"]: r for r in tiny.rows if r["scenario"] == scenario}
        calls = 3 if scenario == "lifecycle" else 1
        k = mine["krun"]
        assert k["own_ms"] == pytest.approx(k["median_ms"] - calls * floor[0]["median_ms"])
        assert k["own_ratio_to_crun"] == pytest.approx(k["own_ms"] / mine["crun"]["median_ms"])
        assert tiny.report["ratios"][scenario]["own"] == k["own_ratio_to_crun"]
        assert mine["crun"]["own_ms"] is None  # krun's alone


def test_png_is_a_real_png(tiny: TinyRun) -> None:
    png = tiny.png
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 2000
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    width, height, depth, color_type = struct.unpack(">IIBB", png[16:26])
    assert (width, depth, color_type) == (1000, 8, 2) and 200 < height < 2000
    assert png.endswith(b"IEND\xaeB`\x82")
    pos, idat = 8, b""
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * 3)
    # A chart has ink in several colours, not a blank page.
    assert len({raw[i:i + 3] for i in range(1, len(raw) - 3, 3 * 7)}) > 4


def test_bench_cleans_up(tiny: TinyRun) -> None:
    meta = tiny.report["meta"]
    work, prefix = meta["work_dir"], meta["id_prefix"]
    assert not Path(work).exists()
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}*")]
    # No process left whose root is one of the bench's bundles.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                root = os.readlink(proc / "root")
            except OSError:
                continue
            assert not root.startswith(work), f"pid {proc.name} left in {root}"


def test_help_documents_the_scenarios() -> None:
    out = subprocess.run([str(BENCH), "--help"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    for word in (*CORE, *OPTIONAL, "--tiny", "--only", "--json", "--png", "--docker-host"):
        assert word in out
