"""`krun restore`: a Kontain container resumed from `krun checkpoint`'s image."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace



def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    from krun.kontain.checkpoint import restore

    return restore(g, o.container_id, o.image_path or "checkpoint", bundle=o.bundle,
                   detach=o.detach, pid_file=o.pid_file, console_socket=o.console_socket,
                   no_pivot=o.no_pivot)
