"""The host's krun configuration: `/etc/krun/krun.toml` (or $KRUN_CONFIG).

[kontain]
mode = "auto"               # auto | always | never
km = "/opt/kontain/bin/km"  # the host KM bind-mounted into Kontain containers
km_sha256 = "..."           # optional pin
"""

from __future__ import annotations

import os

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/etc/krun/krun.toml"
DEFAULT_KM = "/opt/kontain/bin/km"
MODES = ("auto", "always", "never")

_cache: dict[str, Any] | None = None


def host_config() -> dict[str, Any]:
    """The [kontain] table; read once per process, and only when the file exists."""
    global _cache
    if _cache is None:
        path = os.environ.get("KRUN_CONFIG", DEFAULT_PATH)
        if not os.path.exists(path):
            _cache = {}
        else:
            import tomllib

            try:
                with open(path, "rb") as f:
                    _cache = tomllib.load(f).get("kontain", {})
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise KrunError(f"{path}: {e}") from None
            mode = _cache.get("mode", "auto")
            if mode not in MODES:
                raise KrunError(f"{path}: kontain.mode: {mode!r} is not one of {list(MODES)}")
    return _cache


def kontain_mode(flag: str | None) -> str:
    return flag or host_config().get("mode", "auto")


def km_path() -> str:
    return host_config().get("km", DEFAULT_KM)


def km_pin() -> str | None:
    return host_config().get("km_sha256")
