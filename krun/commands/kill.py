"""`krun kill ID [SIGNAL]`: numeric or named signals (`KILL`, `SIGKILL`, `9`)."""

from __future__ import annotations

from types import SimpleNamespace

from krun.runtime import container
from krun.runtime.signals import parse_signal


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    signum = parse_signal(o.signal)
    container.kill(g, o.container_id, signum, o.all)
    return 0
