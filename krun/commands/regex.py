"""crun's `--regex` for delete and kill: one action on every matching container."""

from __future__ import annotations

from krun import log
from krun.errors import KrunError
from krun.runtime.status import ids_matching

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace


def for_each_match(g: SimpleNamespace, pattern: str, action: str,
                   do: Callable[[str], None]) -> int:
    """`do(id)` for every container whose id the pattern matches. A failure is reported
    and the others still go ahead; the exit code says whether any failed."""
    failed = 0
    for cid in ids_matching(g.root, pattern):
        try:
            do(cid)
        except KrunError as e:
            if "does not exist" in e.msg:
                continue  # deleted by another caller since the listing
            log.error(f"{action} {cid}: {e.msg}")
            failed += 1
    return 1 if failed else 0
