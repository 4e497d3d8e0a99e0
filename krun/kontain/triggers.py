"""Whether a container asks for Kontain. Cheap by design: runs on every create."""

from __future__ import annotations

from types import SimpleNamespace
TYPE_CHECKING = False  # typing itself costs ~10 ms to import

if TYPE_CHECKING:
    from typing import Any

FEATURE_ANNOTATIONS: dict[str, str] = {}


def kontain_requested(g: SimpleNamespace, config: dict[str, Any], rootfs: str) -> bool:
    return False
