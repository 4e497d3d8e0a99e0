"""`krun delete [--force] [--regex] ID`."""

from __future__ import annotations

from krun.runtime import container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    if o.regex:
        from krun.commands.regex import for_each_match

        return for_each_match(g, o.container_id, "delete",
                              lambda cid: container.delete(g, cid, o.force))
    container.delete(g, o.container_id, o.force)
    return 0
