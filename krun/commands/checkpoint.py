"""`krun checkpoint`: a KM snapshot of a running Kontain container (runc's flags)."""

from __future__ import annotations

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    for flag, value in (("--pre-dump", o.pre_dump), ("--parent-path", o.parent_path),
                        ("--page-server", o.page_server), ("--status-fd", o.status_fd)):
        if value:
            raise KrunError(f"checkpoint {flag}: CRIU's, not supported for KM snapshots")
    from krun.kontain.checkpoint import checkpoint

    checkpoint(g, o.container_id, o.image_path or "checkpoint", o.leave_running)
    return 0
