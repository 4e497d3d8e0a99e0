"""`krun pause ID` and `krun resume ID`."""

from __future__ import annotations

from krun.runtime import container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    if name == "pause":
        container.pause(g, o.container_id)
    else:
        container.resume(g, o.container_id)
    return 0
