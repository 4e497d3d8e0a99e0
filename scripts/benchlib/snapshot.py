"""Kontain snapshots in scripts/bench: `krun checkpoint` of a running counter, the
snapshot's size, `krun restore` and the instant start of a warmed-up payload against
its cold start.

warm.km stands in for an application with a costly start (a prime sieve over 8 MiB);
`km --snapshot=F warm.km snapshot` snapshots it once warm (hypercall 505, not live). A
bundle whose payload is that snapshot resumes it: it answers at once. CRIU is the other
way to checkpoint: with crun under podman, when CRIU works on this host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from benchlib.report import Row
from benchlib.scenarios import KM, Bench, Measure, interleave, make_bundle

TITLE = "snapshot: checkpoint, restore, instant start"


def _criu_reason() -> str:
    """Why the CRIU comparison is not made here."""
    criu = shutil.which("criu")
    if criu is None:
        return "CRIU is not installed"
    try:
        proc = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"criu check: {e}"
    if proc.returncode != 0 or "Error" in proc.stderr:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
        return f"CRIU does not work on this host (criu check: {last[0][:120]})"
    return "Debian's crun 1.8.1 is built without CRIU (podman: runtime does not support " \
           "checkpoint/restore)"


def snapshot(b: Bench, payloads: Path, rootfs: Path) -> list[Row]:
    counter, warm = payloads / "counter.km", payloads / "warm.km"
    missing = [str(p) for p in (KM, counter, warm) if not p.exists()]
    if missing:
        return [Row("snapshot", TITLE, "", skipped=f"{' and '.join(missing)} not built "
                    "(scripts/build-km)")]
    k = b.krun()
    work = b.work / "snapshot"
    work.mkdir(exist_ok=True)
    # The warm snapshot, made once by KM itself, in / (a snapshot resumes in its working
    # directory, which must exist where it resumes).
    warm_snap = work / "warm.snap"
    subprocess.run([str(KM), f"--snapshot={warm_snap}", str(warm), "snapshot"], check=True,
                   capture_output=True, cwd="/")
    cold = make_bundle(b.work, "snap-cold", rootfs, k.binary, ["/warm.km"], warm)
    instant = make_bundle(b.work, "snap-instant", rootfs, k.binary, ["/warm.snap"], warm_snap)
    (instant / "rootfs" / "warm.snap").chmod(0o755)
    # A restore image of the same snapshot, as `krun checkpoint` lays one out.
    image = work / "image"
    image.mkdir()
    shutil.copy2(warm_snap, image / "km.snapshot")
    shutil.copy2(instant / "config.json", image / "config.json")
    (image / "krun-checkpoint.json").write_text(json.dumps({"format": 1, "network": {}}))
    # A running counter for live checkpoints.
    ticking = make_bundle(b.work, "snap-counter", rootfs, k.binary, ["/counter.km"], counter)
    cid = k.new_id("snap")
    k("run", "-d", "--bundle", str(ticking), cid)
    sizes: list[int] = []
    serial = iter(range(1_000_000))

    def checkpoint() -> float:
        d = work / f"cp{next(serial)}"
        ms = k("checkpoint", "--leave-running", "--image-path", str(d), cid).ms
        sizes.append((d / "km.snapshot").stat().st_size)
        shutil.rmtree(d)
        return ms

    def krun_run(bundle: Path) -> Measure:
        def sample() -> float:
            run_id = k.new_id("snap")
            ms = k("run", "--bundle", str(bundle), run_id).ms
            k.ids.discard(run_id)
            return ms
        return sample

    def restore() -> float:
        run_id = k.new_id("snap")
        ms = k("restore", "--image-path", str(image), "--bundle", str(instant), run_id).ms
        k.ids.discard(run_id)
        return ms

    measures: list[tuple[str, Measure | None]] = [
        ("krun checkpoint --leave-running (counter)", checkpoint),
        ("krun restore (warm snapshot, to its exit)", restore),
        ("krun run of the warm snapshot (instant start)", krun_run(instant)),
        ("krun run warm.km (cold start)", krun_run(cold)),
        ("km warm snapshot (no runtime)",
         lambda: b.spawner.run([str(KM), str(warm_snap)]).ms),
        ("km warm.km (no runtime)", lambda: b.spawner.run([str(KM), str(warm)]).ms),
    ]
    try:
        rows = interleave(b, "snapshot", TITLE, measures, rss_round=False)
    finally:
        k.remove(cid)
    if sizes:
        rows[0].note = (f"snapshot {max(sizes) / 1024:.0f} KiB (counter); warm snapshot "
                        f"{warm_snap.stat().st_size / 1024:.0f} KiB")
    instant_ms, cold_ms = rows[2].median, rows[3].median
    if instant_ms and cold_ms:
        rows[2].note = f"{cold_ms / instant_ms:.1f}x faster than the cold start"
    rows.append(Row("snapshot", TITLE, "podman checkpoint with crun (CRIU)",
                    skipped=_criu_reason()))
    return rows
