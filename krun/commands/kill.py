"""`krun kill [--all] [--regex] ID [SIGNAL]`: numeric or named signals (`KILL`,
`SIGKILL`, `9`); 0 only checks that the container is running, as kill(2) does."""

from __future__ import annotations

from krun.runtime import container
from krun.runtime.signals import parse_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    signum = parse_signal(o.signal)
    if o.regex:
        from krun.commands.regex import for_each_match

        return for_each_match(g, o.container_id, "kill",
                              lambda cid: container.kill(g, cid, signum, o.all))
    container.kill(g, o.container_id, signum, o.all)
    return 0
