"""docker: two entries in daemon.json's `runtimes`.

`krun` runs containers natively unless their config asks for Kontain; `krun-kontain`
passes `--kontain=always` through dockerd's `runtimeArgs` (which dockerd puts before the
global flags it adds), so every container of `docker run --runtime krun-kontain` runs
under KM. dockerd reloads `runtimes` on SIGHUP.
"""

from __future__ import annotations

import json
from typing import Any

from krun.engines import Change, Context, EngineError, Result, read

NAMES = ("krun", "krun-kontain")


def _entries(ctx: Context) -> dict[str, Any]:
    return {"krun": {"path": ctx.krun_path},
            "krun-kontain": {"path": ctx.krun_path, "runtimeArgs": ["--kontain=always"]}}


def _load(path: str, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise EngineError(f"{path}: not valid JSON ({e}); fix it first") from None
    if not isinstance(doc, dict):
        raise EngineError(f"{path}: not a JSON object")
    runtimes = doc.get("runtimes", {})
    if not isinstance(runtimes, dict):
        raise EngineError(f"{path}: `runtimes` is not an object")
    return doc


def _indent(text: str | None) -> str | int:
    """The file's own indentation, so a rewrite changes only the lines it must."""
    for line in (text or "").splitlines():
        stripped = line.lstrip(" \t")
        if stripped.startswith('"') and len(stripped) < len(line):
            ws = line[:len(line) - len(stripped)]
            return "\t" if ws.startswith("\t") else len(ws)
    return 2


def _dump(doc: dict[str, Any], like: str | None) -> str:
    return json.dumps(doc, indent=_indent(like), ensure_ascii=False) + "\n"


def install(ctx: Context) -> Result:
    path = ctx.etc("docker", "daemon.json")
    old = read(path)
    doc = _load(path, old)
    runtimes = doc.setdefault("runtimes", {})
    for name, entry in _entries(ctx).items():
        runtimes[name] = entry  # an existing entry keeps its place in the order
    new = old if old is not None and _load(path, old) == doc else _dump(doc, old)
    return Result([Change(path, old, new)],
                  [f"docker: runtimes {', '.join(NAMES)} in {path}; "
                   "reload dockerd (SIGHUP) to use them: docker run --runtime krun ..."])


def uninstall(ctx: Context) -> Result:
    path = ctx.etc("docker", "daemon.json")
    old = read(path)
    doc = _load(path, old)
    if doc.get("default-runtime") in NAMES:
        raise EngineError(f"{path}: default-runtime is {doc['default-runtime']}: "
                          "choose another default first")
    runtimes = doc.get("runtimes", {})
    if not any(n in runtimes for n in NAMES):
        return Result([Change(path, old, old)], [f"docker: krun is not in {path}"])
    for name in NAMES:
        runtimes.pop(name, None)
    if not runtimes:
        del doc["runtimes"]  # `install` made it (an empty one configures nothing anyway)
    new = _dump(doc, old) if doc else None
    return Result([Change(path, old, new)], [f"docker: removed krun from {path}"])
