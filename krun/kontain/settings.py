"""Kontain's part of the host configuration (the [kontain] table of krun.toml)."""

from __future__ import annotations

from krun.errors import KrunError
from krun.hostconfig import config_path, section

DEFAULT_KM = "/opt/kontain/bin/km"
MODES = ("auto", "always", "never")


def kontain_mode(flag: str | None) -> str:
    mode = flag or section("kontain").get("mode", "auto")
    if mode not in MODES:
        raise KrunError(f"{config_path()}: kontain.mode: {mode!r} is not one of {list(MODES)}")
    return mode


def km_path() -> str:
    return section("kontain").get("km", DEFAULT_KM)


def km_pin() -> str | None:
    return section("kontain").get("km_sha256")
