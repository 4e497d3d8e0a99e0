"""The runtime scenarios: fixtures outside the clock, samples interleaved across runtimes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib.proc import CommandFailed, Runtime, Spawner, reap_strays, wait_exit
from benchlib.report import Row

# A measure takes one sample: total ms, or ms per part (summed into the total).
Measure = Callable[[], float | dict[str, float]]

KM = Path("/opt/kontain/bin/km")
# Runtime calls per sample of each core scenario: krun's own work is its median less
# that many interpreter starts (the "floor" scenario, measured in the same run).
CALLS = {"run": 1, "lifecycle": 3, "state": 1, "exec": 1, "list": 1}


@dataclass
class Bench:
    runtimes: list[Runtime]
    spawner: Spawner
    runs: int
    warmup: int
    list_size: int
    work: Path
    bundles: dict[str, Path]
    log: Callable[[str], None]

    def krun(self) -> Runtime:
        return next(rt for rt in self.runtimes if rt.name == "krun")


def make_bundle(work: Path, name: str, rootfs: Path, krun: str, args: list[str],
                kontain_payload: Path | None = None) -> Path:
    """A bundle from `krun spec`, edited: no terminal, `args`, optionally Kontain."""
    bundle = work / "bundles" / name
    bundle.mkdir(parents=True)
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run([krun, "spec", "--bundle", str(bundle)], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    if kontain_payload is not None:
        shutil.copy2(kontain_payload, bundle / "rootfs" / kontain_payload.name)
        config["kontain"] = {"version": 1}
    config_path.write_text(json.dumps(config, indent=2))
    return bundle


def interleave(b: Bench, scenario: str, title: str,
               measures: list[tuple[str, Measure | None]], rss_round: bool = True) -> list[Row]:
    """Rounds of A B C A B C ...; the first `warmup` rounds are thrown away.

    With `rss_round`, one more untimed round follows, whose runtime calls record their
    peak RSS (see proc.Spawner). A measure of None (its fixture failed) or one that
    fails leaves an error row and the others carry on.
    """
    rows = [Row(scenario, title, label) for label, _ in measures]
    for row, (_, m) in zip(rows, measures, strict=True):
        if m is None:
            row.error = row.error or "setup failed"
    rounds = b.warmup + b.runs
    b.log(f"{title}: {rounds} rounds x {len(measures)}" + (" + 1 RSS round" if rss_round else ""))
    try:
        for i in range(rounds + (1 if rss_round else 0)):
            b.spawner.timing = i < rounds
            for row, (_, measure) in zip(rows, measures, strict=True):
                if row.error or measure is None:
                    continue
                try:
                    result = measure()
                except CommandFailed as e:
                    row.error = str(e)
                    b.log(f"  {row.runtime}: {e}")
                    continue
                if i < b.warmup or i >= rounds:
                    continue
                if isinstance(result, dict):
                    for part, ms in result.items():
                        row.parts.setdefault(part, []).append(ms)
                    result = sum(result.values())
                row.samples.append(result)
    finally:
        b.spawner.timing = False
    return rows


def _stop_and_delete(rt: Runtime, cid: str, pid: int) -> None:
    # kill + delete (not delete --force) so `kill` gets its RSS measured too.
    try:
        if rt("kill", cid, "9", check=False).code == 0:
            wait_exit(pid)
            if rt("delete", cid, check=False).code == 0:
                rt.ids.discard(cid)
                return
    except (CommandFailed, TimeoutError):
        pass
    rt.remove(cid)


def _create(b: Bench, rt: Runtime, what: str, bundle: str, start: bool) -> tuple[str, int]:
    cid = rt.new_id(what)
    pid_file = b.work / f"{cid}.pid"
    rt("create", "--bundle", str(b.bundles[bundle]), "--pid-file", str(pid_file), cid)
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if start:
        rt("start", cid)
    return cid, pid


def run(b: Bench) -> list[Row]:
    def measure(rt: Runtime) -> Measure:
        def sample() -> float:
            cid = rt.new_id("run")
            ms = rt("run", "--bundle", str(b.bundles["true"]), cid).ms
            rt.ids.discard(cid)  # a foreground run deletes its container
            return ms
        return sample
    return interleave(b, "run", "run", [(rt.name, measure(rt)) for rt in b.runtimes])


def lifecycle(b: Bench) -> list[Row]:
    """create, start, delete, each timed; waiting for `true` to exit is not timed.

    The wait reaps the container's init, adopted by this subreaper process, so it
    lasts as long as the container's own life and costs no runtime call.
    """
    def measure(rt: Runtime) -> Measure:
        def sample() -> dict[str, float]:
            cid = rt.new_id("csd")
            pid_file = b.work / f"{cid}.pid"
            create = rt("create", "--bundle", str(b.bundles["true"]),
                        "--pid-file", str(pid_file), cid).ms
            start = rt("start", cid).ms
            wait_exit(int(pid_file.read_text()))
            delete = rt("delete", cid).ms
            rt.ids.discard(cid)
            pid_file.unlink()
            return {"create": create, "start": start, "delete": delete}
        return sample
    return interleave(b, "lifecycle", "create+start+delete",
                      [(rt.name, measure(rt)) for rt in b.runtimes])


def _with_containers(b: Bench, scenario: str, title: str, count: int, start: bool,
                     make_measure: Callable[[Runtime, str], Measure]) -> list[Row]:
    """Set up `count` containers per runtime, measure, then stop and delete them all.

    A single fixture container is stopped with kill + delete so that `kill` is measured
    too; the crowd of the list scenario goes with delete --force.
    """
    made: dict[str, list[tuple[str, int]]] = {rt.name: [] for rt in b.runtimes}
    measures: list[tuple[str, Measure | None]] = []
    errors: dict[str, str] = {}
    try:
        for rt in b.runtimes:
            try:
                for _ in range(count):
                    made[rt.name].append(_create(b, rt, scenario, "sleep", start))
                measures.append((rt.name, make_measure(rt, made[rt.name][0][0])))
            except CommandFailed as e:
                errors[rt.name] = f"setup: {e}"
                measures.append((rt.name, None))
        rows = interleave(b, scenario, title, measures)
        for row in rows:
            row.error = errors.get(row.runtime, row.error)
        return rows
    finally:
        for rt in b.runtimes:
            for cid, pid in made[rt.name]:
                if count == 1:
                    _stop_and_delete(rt, cid, pid)
                else:
                    rt.remove(cid)


def state(b: Bench) -> list[Row]:
    return _with_containers(b, "state", "state", 1, False,
                            lambda rt, cid: lambda: rt("state", cid).ms)


def exec_detach(b: Bench) -> list[Row]:
    def measure(rt: Runtime, cid: str) -> Measure:
        def sample() -> float:
            ms = rt("exec", "--detach", cid, "true").ms
            reap_strays()  # the exec'd `true`, adopted by us once the runtime exits
            return ms
        return sample
    return _with_containers(b, "exec", "exec --detach", 1, True, measure)


def list_(b: Bench) -> list[Row]:
    return _with_containers(b, "list", f"list ({b.list_size})", b.list_size, False,
                            lambda rt, _cid: lambda: rt("list").ms)


def kontain(b: Bench, payload: Path) -> list[Row]:
    title = "kontain: krun run"
    missing = [str(p) for p in (KM, payload) if not p.exists()]
    if missing:
        return [Row("kontain", title, "", skipped=f"{' and '.join(missing)} not built "
                    "(scripts/build-km)")]
    k = b.krun()

    def krun_run(bundle: str) -> Measure:
        def sample() -> float:
            cid = k.new_id("km")
            ms = k("run", "--bundle", str(b.bundles[bundle]), cid).ms
            k.ids.discard(cid)
            return ms
        return sample

    rows = interleave(b, "kontain", title, [
        ("krun hello.km (kontain)", krun_run("kontain")),
        ("krun true (busybox)", krun_run("true")),
        ("km hello.km (no runtime)", lambda: b.spawner.run([str(KM), str(payload)]).ms),
    ], rss_round=False)  # km's memory would count as krun run's
    base = rows[1].median
    for row in (rows[0], rows[2]):
        if row.median is not None and base:
            row.note = f"{row.median / base:.2f}x krun run of busybox true"
    if rows[0].median is not None and base and rows[2].median is not None:
        # Issue 17's target: what krun adds for Kontain beyond a plain run and KM's own
        # start, at most 2 ms.
        extra = rows[0].median - base - rows[2].median
        rows[0].note += f"; krun's Kontain overhead {extra:+.1f} ms (krun true + km alone)"
    return rows


def interpreter(krun: str) -> list[str]:
    """krun's interpreter and its flags, from its launcher's #! line."""
    with open(krun, "rb") as f:
        line = f.readline(4096).decode(errors="replace")
    return line[2:].split() if line.startswith("#!") else []


def floor(b: Bench) -> list[Row]:
    """The start of krun's own interpreter, as krun's launcher runs it, doing nothing:
    what every krun call pays before krun's first line."""
    title = "interpreter start"
    argv = interpreter(b.krun().binary)
    if not argv:
        return [Row("floor", title, "", skipped=f"{b.krun().binary} has no #! line")]
    label = f"{' '.join(argv)} -c pass"
    return interleave(b, "floor", title, [(label, lambda: b.spawner.run(
        [*argv, "-c", "pass"]).ms)], rss_round=False)
