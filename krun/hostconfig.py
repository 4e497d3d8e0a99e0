"""The host's krun configuration: `/etc/krun/krun.toml` (or $KRUN_CONFIG).

[kontain]
mode = "auto"               # auto | always | never
km = "/opt/kontain/bin/km"  # the host KM bind-mounted into Kontain containers
km_sha256 = "..."           # optional pin: 64 hex digits
init = "/path/to/krun-init"  # pid 1 in front of KM (default: the installed package's)
debug_dir = "/var/lib/krun/debug"           # where debug-on-failure artefacts stay

[network]
subnet = "10.213.0.0/24"    # krun0's subnet for `--network bridge`

The file is read once per process, bounded, and only when it exists. Its keys are
checked as it is read: an unknown one is an error, a known one must have its type (the
tables' owners check the values), so a mistake in it is one line naming the key, never
a Python exception, and never silently ignored. Importing tomllib costs more than the
rest of a create (~10 ms: it pulls in typing, re and datetime), so under a --root the
parse is kept in krun.filecache by the file's identity, and checked again when used.
"""

from __future__ import annotations

import os

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/etc/krun/krun.toml"
MAX_BYTES = 1 << 20  # a few lines in practice

# table -> key -> the Python type tomllib gives a valid value.
KNOWN: dict[str, dict[str, type]] = {
    "kontain": {"mode": str, "km": str, "km_sha256": str, "init": str, "debug_dir": str},
    "network": {"subnet": str},
}
_TOML_TYPES = {str: "a string", bool: "a boolean", int: "an integer"}

_cache: dict[str, Any] | None = None
_checked: set[str] = set()
_cache_root: str | None = None
KIND = "hostconfig"


def use_cache(root: str) -> None:
    """Keep the parse under this --root (krun.runtime.handlers calls this)."""
    global _cache_root
    _cache_root = root


def _check_subnet(path: str, value: str) -> None:
    import ipaddress  # ~1 ms: paid only by the networking code that asks for it

    try:
        ipaddress.ip_network(value)
    except ValueError as e:
        raise KrunError(f"{path}: network.subnet: {e}") from None


# Value checks that cost an import, run when the table is first asked for.
_VALUE_CHECKS = {"network": (("subnet", _check_subnet),)}


def config_path() -> str:
    return os.environ.get("KRUN_CONFIG", DEFAULT_PATH)


def _load(path: str) -> dict[str, Any]:
    from krun import fastjson as json
    from krun import filecache

    try:
        before = os.stat(path)
    except OSError:
        return _checked_keys(path, _parse(path))  # which words the error
    cached = filecache.lookup(_cache_root, KIND, before)
    if cached is not None:
        try:
            config = json.loads(cached)
        except ValueError:
            config = None
        if isinstance(config, dict):
            return _checked_keys(path, config)
    config = _checked_keys(path, _parse(path))
    try:
        after = os.stat(path)
    except OSError:
        return config
    filecache.store(_cache_root, KIND, before, after, json.dumps(config))
    return config


def _parse(path: str) -> dict[str, Any]:
    from krun.fastjson import read_bytes

    data = read_bytes(path, "host config", MAX_BYTES)
    import tomllib

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KrunError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KrunError(f"{path}: {e}") from None
    except ValueError:  # int(): more digits than CPython converts
        raise KrunError(f"{path}: a number with too many digits") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise KrunError(f"{path}: nested too deeply") from None


def _checked_keys(path: str, config: dict[str, Any]) -> dict[str, Any]:
    # An unknown key is refused, not ignored: `[kontian] mode = "always"` or a top-level
    # `km_sha256` would otherwise silently not apply.
    for name, table in config.items():
        keys = KNOWN.get(name)
        if keys is None:
            raise KrunError(f"{path}: unknown " + (f"table [{name}]" if isinstance(table, dict)
                                                   else f"key {name!r} (outside any table)"))
        if not isinstance(table, dict):
            raise KrunError(f"{path}: [{name}] must be a table")
        for key, value in table.items():
            kind = keys.get(key)
            if kind is None:
                raise KrunError(f"{path}: {name}.{key}: unknown key")
            if type(value) is not kind:
                raise KrunError(f"{path}: {name}.{key} must be {_TOML_TYPES[kind]}")
    return config


def section(name: str) -> dict[str, Any]:
    """One table of the file ({} when the file or the table is absent)."""
    global _cache
    if _cache is None:
        path = config_path()
        _cache = _load(path) if os.path.lexists(path) else {}
    table = _cache.get(name, {})
    if not isinstance(table, dict):
        raise KrunError(f"{config_path()}: [{name}] must be a table")
    if name not in _checked:
        for key, check in _VALUE_CHECKS.get(name, ()):
            if key in table:
                check(config_path(), table[key])
        _checked.add(name)
    return table
