"""Result rows, their statistics, and the Markdown and JSON reports."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from benchlib.proc import Runtime

RSS_SUBCOMMANDS = ("run", "create", "start", "state", "exec", "list", "delete", "kill")


@dataclass
class Row:
    """One runtime (or command) in one scenario; `skipped`/`error` rows hold no samples."""

    scenario: str
    title: str
    runtime: str
    samples: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""
    skipped: str = ""
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def ratio(rows: list[Row], scenario: str, other: str) -> float | None:
    """krun's median over `other`'s median in one scenario."""
    by_rt = {r.runtime: r.median for r in rows if r.scenario == scenario}
    k, o = by_rt.get("krun"), by_rt.get(other)
    return k / o if k is not None and o else None


def own(rows: list[Row], scenario: str) -> float | None:
    """krun's median in `scenario` less the interpreter starts its calls pay (the floor
    row of the same run): the work that is krun's own."""
    from benchlib.scenarios import CALLS

    floor = next((r.median for r in rows if r.scenario == "floor"), None)
    k = next((r.median for r in rows if r.scenario == scenario and r.runtime == "krun"), None)
    if floor is None or k is None or scenario not in CALLS:
        return None
    return k - CALLS[scenario] * floor


def own_ratio(rows: list[Row], scenario: str) -> float | None:
    """krun's own work over crun's whole median (target: at most 1)."""
    mine = own(rows, scenario)
    c = next((r.median for r in rows if r.scenario == scenario and r.runtime == "crun"), None)
    return mine / c if mine is not None and c else None


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def markdown(rows: list[Row], runtimes: list[Runtime], meta: dict[str, Any]) -> str:
    out = [f"### Timings (ms; {meta['runs']} runs after {meta['warmup']} warm-ups, "
           f"interleaved; {meta['date']}, {meta['host']})", "",
           "| scenario | runtime | median | min | max | krun/crun | krun/runc "
           "| krun's own (own/crun) | note |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.skipped or r.error:
            status = f"skipped: {r.skipped}" if r.skipped else f"FAILED: {r.error}"
            out.append(f"| {r.title} | {r.runtime or '-'} | | | | | | | {_cell(status)} |")
            continue
        is_krun = r.runtime == "krun"
        out.append("| " + " | ".join([
            r.title, r.runtime, _ms(r.median), _ms(min(r.samples)), _ms(max(r.samples)),
            _x(ratio(rows, r.scenario, "crun")) if is_krun else "",
            _x(ratio(rows, r.scenario, "runc")) if is_krun else "",
            _own(rows, r.scenario) if is_krun else "",
            _cell(r.note)]) + " |")
    names = [rt.name for rt in runtimes]
    out += ["", "### Peak RSS per subcommand (KiB; ru_maxrss from wait4 of untimed calls forked"
            " by a static busybox sh, max over calls; includes container processes the"
            " runtime reaped)", "",
            "| subcommand | " + " | ".join(names) + " | krun calls |",
            "|---|" + "---:|" * (len(names) + 1)]
    for sub in RSS_SUBCOMMANDS:
        if not any(rt.rss.get(sub) for rt in runtimes):
            continue  # not called by the scenarios chosen with --only
        cells = [str(max(rt.rss[sub])) if rt.rss.get(sub) else "" for rt in runtimes]
        calls = next((len(rt.rss.get(sub, [])) for rt in runtimes if rt.name == "krun"), 0)
        out.append(f"| {sub} | " + " | ".join(cells) + f" | {calls} |")
    return "\n".join(out) + "\n"


def _own(rows: list[Row], scenario: str) -> str:
    mine, r = own(rows, scenario), own_ratio(rows, scenario)
    if mine is None:
        return ""
    return f"{mine:.1f} ({r:.2f}x)" if r is not None else f"{mine:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_json(rows: list[Row], runtimes: list[Runtime], meta: dict[str, Any]) -> dict[str, Any]:
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    return {
        "meta": meta,
        "rows": [{
            "scenario": r.scenario, "title": r.title, "runtime": r.runtime,
            "n": len(r.samples), "median_ms": r.median,
            "min_ms": min(r.samples) if r.samples else None,
            "max_ms": max(r.samples) if r.samples else None,
            "samples_ms": [round(s, 3) for s in r.samples],
            "parts_median_ms": {k: statistics.median(v) for k, v in r.parts.items() if v},
            "ratio_to_crun": ratio(rows, r.scenario, "crun") if r.runtime == "krun" else None,
            "ratio_to_runc": ratio(rows, r.scenario, "runc") if r.runtime == "krun" else None,
            "own_ms": own(rows, r.scenario) if r.runtime == "krun" else None,
            "own_ratio_to_crun": own_ratio(rows, r.scenario) if r.runtime == "krun" else None,
            "note": r.note, "skipped": r.skipped or None, "error": r.error or None,
        } for r in rows],
        "ratios": {s: {"crun": ratio(rows, s, "crun"), "runc": ratio(rows, s, "runc"),
                       "own": own_ratio(rows, s)}
                   for s in scenarios},
        "rss_kib": {rt.name: {sub: {"max": max(v), "median": statistics.median(v),
                                    "calls": len(v)}
                              for sub, v in rt.rss.items() if sub in RSS_SUBCOMMANDS}
                    for rt in runtimes},
    }
