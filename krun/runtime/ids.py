"""Container ids: checked before anything touches the disk, since an id becomes a path."""

from __future__ import annotations

from krun.errors import KrunError

MAX_ID_BYTES = 1024


def validate_id(container_id: str | None) -> str:
    if not container_id:
        raise KrunError("invalid container id: empty")
    if len(container_id.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        raise KrunError(f"invalid container id: longer than {MAX_ID_BYTES} bytes")
    if container_id in (".", "..") or "/" in container_id or "\0" in container_id:
        raise KrunError(f"invalid container id {container_id!r}: must not be `.`, `..` "
                        "or contain `/` or NUL")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in container_id):
        raise KrunError(f"invalid container id {container_id!r}: control characters")
    return container_id
