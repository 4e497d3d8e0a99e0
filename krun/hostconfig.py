"""The host's krun configuration: `/etc/krun/krun.toml` (or $KRUN_CONFIG).

[kontain]
mode = "auto"               # auto | always | never
km = "/opt/kontain/bin/km"  # the host KM bind-mounted into Kontain containers
km_sha256 = "..."           # optional pin

[network]
subnet = "10.213.0.0/24"    # krun0's subnet for `--network bridge`
"""

from __future__ import annotations

import os

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/etc/krun/krun.toml"

_cache: dict[str, Any] | None = None


def config_path() -> str:
    return os.environ.get("KRUN_CONFIG", DEFAULT_PATH)


def section(name: str) -> dict[str, Any]:
    """One table of the file; read once per process, and only when the file exists."""
    global _cache
    if _cache is None:
        path = config_path()
        if not os.path.exists(path):
            _cache = {}
        else:
            import tomllib

            try:
                with open(path, "rb") as f:
                    _cache = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise KrunError(f"{path}: {e}") from None
    table = _cache.get(name, {})
    if not isinstance(table, dict):
        raise KrunError(f"{config_path()}: [{name}] must be a table")
    return table
