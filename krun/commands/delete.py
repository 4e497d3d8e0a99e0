"""`krun delete [--force] ID`."""

from __future__ import annotations

from types import SimpleNamespace

from krun.runtime import container


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    container.delete(g, o.container_id, o.force)
    return 0
