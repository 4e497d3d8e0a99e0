"""`krun create` and `krun run`."""

from __future__ import annotations

from krun.runtime import container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    run = name == "run"
    opts = container.CreateOptions(
        bundle=o.bundle, pid_file=o.pid_file, console_socket=o.console_socket,
        preserve_fds=o.preserve_fds, no_pivot=o.no_pivot, no_new_keyring=o.no_new_keyring,
        detach=o.detach if run else True, run=run, network=o.network, ip=o.ip,
        publish=o.publish, config=o.config, keep=run and o.keep)
    return container.create(g, o.container_id, opts)
