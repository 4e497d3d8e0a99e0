"""`krun pause ID` and `krun resume ID`."""

from __future__ import annotations

from types import SimpleNamespace

from krun.runtime import container


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    if name == "pause":
        container.pause(g, o.container_id)
    else:
        container.resume(g, o.container_id)
    return 0
