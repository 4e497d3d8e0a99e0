"""`krun start`: release a created container from its exec.fifo."""

from __future__ import annotations

from types import SimpleNamespace

from krun.runtime import container


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    container.start(g, o.container_id)
    return 0
