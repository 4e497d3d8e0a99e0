"""Container ids: checked before anything touches the disk, since an id becomes a path.

An id names `<root>/<id>` (libcrun's state dir), `<root>/.krun/<id>.json` (krun's
record) and, by default, a cgroup in every hierarchy. So it must be one path component
that the filesystem accepts with the record's suffix, made of runc's characters, and it
must never start with a `.`: krun's own files under the root are dot names (libcrun's
`list` skips dot entries for the same reason), and an id like `.krun` would otherwise
name krun's records.
"""

from __future__ import annotations

from krun.errors import KrunError

NAME_MAX = 255  # bytes in one path component (ext4, tmpfs, xfs, btrfs)
RECORD_SUFFIX = ".json"
MAX_ID_BYTES = NAME_MAX - len(RECORD_SUFFIX)


# runc's rule (`^[\w+-\.]+$`, ASCII): what every engine's ids (hex, uuids, names) fit.
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(container_id: str | None) -> str:
    if not container_id:
        raise KrunError("invalid container id: empty")
    if len(container_id) > MAX_ID_BYTES:
        raise KrunError(f"invalid container id: longer than {MAX_ID_BYTES} bytes")
    if not ID_CHARS.issuperset(container_id):
        raise KrunError(f"invalid container id {container_id!r}: only letters, digits and "
                        "`_+-.` are allowed")
    if container_id.startswith("."):
        raise KrunError(f"invalid container id {container_id!r}: must not start with `.`")
    return container_id
