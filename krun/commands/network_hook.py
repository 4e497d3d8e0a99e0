"""`krun network-hook ID`: internal, run by libcrun as the createRuntime hook of a
bridged container (state on stdin) to give it eth0 before its process starts."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    from krun.network.handler import hook

    hook(g, o.container_id)
    return 0
