"""`checkpoint` and `restore`: not supported yet, and said so (even for --help,
which podman runs to probe for checkpoint support)."""

from __future__ import annotations

from types import SimpleNamespace

from krun.errors import KrunError


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    raise KrunError(f"{name} is not supported by krun yet")
