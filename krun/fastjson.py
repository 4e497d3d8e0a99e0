"""JSON through the `_json` C accelerator, without importing `json`.

`import json` pulls in `re`, `enum`, `functools` and `collections` (5-10 ms here), a
large share of a whole `runc run`. krun only parses and prints plain JSON, so it drives
the accelerator the `json` package itself uses; on any parse error it defers to `json`,
whose messages (line and column) it keeps.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _Context:
    # The attributes _json.make_scanner reads from a JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner reads and fills it

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())
_encode_str = _json.encode_basestring_ascii


def loads(data: str | bytes) -> Any:
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
        _Context.memo.clear()
    except (StopIteration, ValueError):
        value, end = None, -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        import json

        return json.loads(text)  # raises json.JSONDecodeError with the position
    return value


def _dump(value: Any, indent: str | None, level: int, out: list[str], sort: bool) -> None:
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int | float):
        out.append(repr(value) if isinstance(value, float) else str(value))
    elif isinstance(value, dict | list | tuple):
        is_dict = isinstance(value, dict)
        items = (sorted(value.items()) if sort else list(value.items())) if is_dict \
            else list(value)
        if not items:
            out.append("{}" if is_dict else "[]")
            return
        open_, close = ("{", "}") if is_dict else ("[", "]")
        pad = "\n" + indent * (level + 1) if indent is not None else ""
        sep = "," + pad if indent is not None else ", "
        out.append(open_ + pad)
        for i, item in enumerate(items):
            if i:
                out.append(sep)
            if is_dict:
                key, val = item
                out.append(_encode_str(str(key)) + ": ")
                _dump(val, indent, level + 1, out, sort)
            else:
                _dump(item, indent, level + 1, out, sort)
        out.append(("\n" + indent * level if indent is not None else "") + close)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    out: list[str] = []
    _dump(value, " " * indent if indent is not None else None, 0, out, sort_keys)
    return "".join(out)


def read_object(source: str, what: str) -> dict[str, Any]:
    """A JSON object from a file, or stdin for `-`; errors name the file and `what`."""
    import sys

    from krun.errors import InvalidConfig, KrunError

    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise KrunError(f"open {source}: no such file or directory") from None
    except OSError as e:
        raise KrunError(f"open {source}: {e.strerror.lower()}") from None
    try:
        value = loads(data)
    except ValueError as e:
        raise InvalidConfig(f"malformed {what} {source}: {e}") from None
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} {source}: must be a JSON object")
    return value

