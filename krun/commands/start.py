"""`krun start`: release a created container from its exec.fifo."""

from __future__ import annotations

from krun.runtime import container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    container.start(g, o.container_id)
    return 0
