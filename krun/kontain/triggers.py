"""Whether a container asks for Kontain. Cheap by design: runs on every create."""

from __future__ import annotations

import os

from krun.errors import KrunError
from krun.kontain.settings import kontain_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

ANNOTATION = "app.kontain.version"
MARKER = ".kontain"
FEATURE_ANNOTATIONS = {
    "org.krun.kontain.enabled": "true",
    "org.krun.kontain.triggers": "config.kontain,annotation:app.kontain.version=1,"
                                 "rootfs:/.kontain,--kontain=always",
}


def asked_by(config: dict[str, Any], rootfs: str) -> str | None:
    """What in this container asks for Kontain, in trigger order; None when nothing does."""
    if "kontain" in config:
        return "config.json kontain object"
    annotations = config.get("annotations")
    if isinstance(annotations, dict) and annotations.get(ANNOTATION) == "1":
        return f"annotation {ANNOTATION}"
    if os.path.lexists(os.path.join(rootfs, MARKER)):
        return "marker file /.kontain"
    return None


def kontain_requested(g: SimpleNamespace, config: dict[str, Any], rootfs: str) -> bool:
    mode = kontain_mode(getattr(g, "kontain", None))
    asked = asked_by(config, rootfs)
    if mode == "never":
        if asked:
            # A payload cannot run natively: refusing beats a crash at start.
            raise KrunError(f"the container asks for Kontain ({asked}) but krun runs with "
                            "--kontain=never")
        return False
    return mode == "always" or asked is not None
