"""`krun spec --kontain`: a config.json whose process runs under KM."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_kontain(spec: dict[str, Any], payload: str | None) -> None:
    spec["kontain"] = {"version": 1, "device": "auto", "exec": {"policy": "km"}}
    process = spec["process"]
    process["args"] = [payload or "/hello.km"]
    process["terminal"] = False
