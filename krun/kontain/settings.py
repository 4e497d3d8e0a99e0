"""Kontain's part of the host configuration (the [kontain] table of krun.toml).

krun.hostconfig has checked the types; the values are checked here, where their meaning
is known. An empty or malformed pin is an error, never "no pin": a pin that silently
stops pinning is worse than none.
"""

from __future__ import annotations

import os

from krun.errors import KrunError
from krun.hostconfig import config_path, section

DEFAULT_KM = "/opt/kontain/bin/km"
# The build puts the static krun-init in the package, so it is installed (root-owned,
# read-only to others) wherever krun is.
DEFAULT_INIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "libexec", "krun-init")
DEFAULT_DEBUG_DIR = "/var/lib/krun/debug"
MODES = ("auto", "always", "never")
_HEX = frozenset("0123456789abcdefABCDEF")


def kontain_mode(flag: str | None) -> str:
    mode = flag or section("kontain").get("mode", "auto")
    if mode not in MODES:
        raise KrunError(f"{config_path()}: kontain.mode: {mode!r} is not one of {list(MODES)}")
    return mode


def _absolute(key: str, default: str) -> str:
    path = section("kontain").get(key, default)
    if not path.startswith("/") or "\0" in path:
        raise KrunError(f"{config_path()}: kontain.{key}: {path[:200]!r} must be an absolute "
                        "path (and hold no NUL)")
    return path


def km_path() -> str:
    return _absolute("km", DEFAULT_KM)


def init_path() -> str:
    """krun-init (native/init), pid 1 in front of KM."""
    return _absolute("init", DEFAULT_INIT)


def debug_dir() -> str:
    """Root's artefacts go to /var/lib; a user's (rootless) to its own state directory,
    as XDG says, since /var/lib is not theirs to write."""
    default = DEFAULT_DEBUG_DIR
    if os.geteuid() != 0:
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        if state.startswith("/"):
            default = os.path.join(state, "krun", "debug")
    return _absolute("debug_dir", default)


def km_pin() -> str | None:
    pin = section("kontain").get("km_sha256")
    if pin is not None and (len(pin) != 64 or not _HEX.issuperset(pin)):
        raise KrunError(f"{config_path()}: kontain.km_sha256: {pin[:80]!r} is not a sha256 "
                        "(64 hex digits)")
    return pin
