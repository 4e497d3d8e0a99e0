"""The seam for containers that run differently (today: Kontain, under KM).

A handler answers crun's custom-handler questions: does it apply to this container,
how does it change the config at create, how does it change a process at exec, what
does it add to `features`. The core never names a handler's internals, and a container
no handler claims never imports one (Kontain's jsonschema stays unloaded).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs ~10 ms to import

if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any, Protocol

    from krun.runtime.bundle import Bundle
else:
    Protocol = object


class Handler(Protocol):
    name: str

    def prepare_create(self, bundle: Bundle) -> dict[str, Any]:
        """Rewrite bundle.config for libcrun; return the record kept in krun's state."""

    def prepare_exec(self, record: dict[str, Any], process: dict[str, Any],
                     rootfs: str) -> dict[str, Any]:
        """Rewrite an exec process for a container this handler created."""


def handler_for_bundle(g: SimpleNamespace, bundle: Bundle) -> Handler | None:
    from krun.kontain.triggers import kontain_requested

    if kontain_requested(g, bundle.config, bundle.rootfs):
        from krun.kontain.handler import KontainHandler

        return KontainHandler(g)
    return None


def handler_by_name(g: SimpleNamespace, name: str | None) -> Handler | None:
    if name == "kontain":
        from krun.kontain.handler import KontainHandler

        return KontainHandler(g)
    return None


def features() -> dict[str, Any]:
    """Annotations the handlers add to `krun features`."""
    from krun.kontain.triggers import FEATURE_ANNOTATIONS

    return dict(FEATURE_ANNOTATIONS)
