"""JSON through the `_json` C accelerator, without importing `json`.

`import json` pulls in `re`, `enum`, `functools` and `collections` (5-10 ms here), a
large share of a whole `runc run`. krun only parses and prints plain JSON, so it drives
the accelerator the `json` package itself uses; on a parse error it asks `json` for the
position (line and column) and keeps that message.

Parsing is stricter than `json.loads`, refusing what runc's Go decoder or libcrun's yajl
refuse, and a little more: no NaN or Infinity, no number beyond a double, no byte order
mark, valid UTF-8 only, no lone UTF-16 surrogate, no duplicate key (krun would check one
value while libcrun, reading the same file, may use the other), and about MAX_DEPTH
levels of nesting, so nothing that walks a parsed value recursively (dumps, jsonschema)
can reach Python's recursion limit. Every failure is a JSONError: a ValueError, one line.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
MAX_DEPTH = 100  # a runtime-spec config nests 7 levels deep at most
MAX_CONFIG_BYTES = 16 << 20  # far above any real config (CRI-O's with seccomp: ~100 kB)


class JSONError(ValueError):
    """Malformed JSON; str() is one line."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONError(f"duplicate key {_encode_str(key)[:80]}")
            seen.add(key)
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONError(f"number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


class _Context:
    # The attributes _json.make_scanner reads from a JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = staticmethod(_pairs)
    parse_float = staticmethod(_float)
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner reads and fills it


_scan = _json.make_scanner(_Context())
_encode_str = _json.encode_basestring_ascii


def _describe(text: str) -> str:
    """Why `text` is not JSON, worded by the `json` package (line and column)."""
    import json

    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return str(e)
    except RecursionError:
        return f"nested too deeply (over {MAX_DEPTH} levels)"
    except ValueError:  # int(): more digits than CPython converts
        return "a number with too many digits"
    return "not valid JSON"


def _too_deep(value: Any) -> bool:
    # Level by level, iteratively: the point is to stay clear of the recursion limit.
    level, depth = [value], 1
    while level:
        if depth > MAX_DEPTH:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level, depth = below, depth + 1
    return False


def _scan_bounded(text: str, start: int) -> tuple[Any, int]:
    """_scan, with nesting bounded through the recursion limit: in CPython 3.11 the C
    scanner counts each level against it, so the bound costs nothing per value. Exact
    to within the few C calls the stack holds below us."""
    import sys

    frame, depth = sys._getframe(), 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(depth + MAX_DEPTH + _SLACK)
    except RecursionError:  # more C calls below us than frames: walk the value instead
        value, end = _scan(text, start)
        if isinstance(value, dict | list) and _too_deep(value):
            raise JSONError(f"nested too deeply (over {MAX_DEPTH} levels)") from None
        return value, end
    try:
        return _scan(text, start)
    finally:
        sys.setrecursionlimit(old)


_SLACK = 8  # frames the hooks and the C calls below us may take
# From 3.12 on, C recursion has a limit of its own: the value is walked instead.
_LIMIT_BOUNDS_C = __import__("sys").version_info < (3, 12)


def _lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(data: str | bytes) -> Any:
    if isinstance(data, bytes | bytearray):
        if data[:3] == b"\xef\xbb\xbf":
            raise JSONError("starts with a byte order mark")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONError(f"invalid UTF-8 at byte {e.start}") from None
    else:
        text = data
    if text[:1] == "\ufeff":
        raise JSONError("starts with a byte order mark")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan_bounded(text, start) if _LIMIT_BOUNDS_C else _scan(text, start)
    except JSONError:
        raise
    except RecursionError:
        raise JSONError(f"nested too deeply (over {MAX_DEPTH} levels)") from None
    except (StopIteration, ValueError, SystemError):
        # SystemError: without `json.decoder` imported, the scanner cannot build its
        # JSONDecodeError for some errors (an unterminated string in an array).
        value, end = None, -1
    finally:
        _Context.memo.clear()
    if end < 0 or text[end:].strip(_WHITESPACE):
        raise JSONError(_describe(text))
    # Counting brackets is cheap; the walk is for when the recursion limit did not bound
    # the scan (see _scan_bounded).
    if not _LIMIT_BOUNDS_C and text.count("[") + text.count("{") > MAX_DEPTH \
            and isinstance(value, dict | list) and _too_deep(value):
        raise JSONError(f"nested too deeply (over {MAX_DEPTH} levels)")
    # A \ud800 escape alone decodes to a str that no file name, C string or log line can
    # carry; only an escape can make one (UTF-8 input cannot).
    if ("\\ud" in text or "\\uD" in text) and _lone_surrogate(value):
        raise JSONError("a lone UTF-16 surrogate escape (not Unicode)")
    return value


def _go_str(text: str) -> str:
    # Go's encoding/json also escapes <, > and &.
    return _encode_str(text).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")


def _dump(value: Any, indent: str | None, level: int, out: list[str], sort: bool,
          go: bool = False) -> None:
    if isinstance(value, str):
        out.append(_go_str(value) if go else _encode_str(value))
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
        sep = "," + pad if indent is not None or go else ", "
        out.append(open_ + pad)
        for i, item in enumerate(items):
            if i:
                out.append(sep)
            if is_dict:
                key, val = item
                out.append((_go_str(str(key)) + ":") if go else (_encode_str(str(key)) + ": "))
                _dump(val, indent, level + 1, out, sort, go)
            else:
                _dump(item, indent, level + 1, out, sort, go)
        out.append(("\n" + indent * level if indent is not None else "") + close)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any, indent: int | None = None, sort_keys: bool = False,
          go: bool = False) -> str:
    """JSON text; `go`: on one line, compact and escaped as Go's encoding/json writes it
    (runc's `list --format json` and `events`, which tools compare textually)."""
    out: list[str] = []
    _dump(value, " " * indent if indent is not None else None, 0, out, sort_keys, go)
    return "".join(out)


def read_bytes(source: str, what: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """At most `limit` bytes of a regular file, or of stdin for `-`.

    Bounded, and never a FIFO or a device: a config.json that is a symlink to /dev/zero
    must not fill memory, and a FIFO must not hang krun (hence the stat before the open,
    and O_NONBLOCK in case the path changes between the two). Errors name `what`."""
    import os
    import stat

    from krun.errors import KrunError, strerror

    fd = 0
    try:
        if source != "-":
            st = os.stat(source)
            if not stat.S_ISREG(st.st_mode):
                raise KrunError(_not_regular(source, what, st.st_mode))
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            if source != "-":
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise KrunError(_not_regular(source, what, st.st_mode))
                if st.st_size > limit:
                    raise KrunError(f"{what} {source}: larger than {limit} bytes")
            chunks, size = [], 0
            while True:
                chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise KrunError(f"{what} {source}: larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            if fd != 0:
                os.close(fd)
    except FileNotFoundError:
        raise KrunError(f"open {source}: no such file or directory") from None
    except OSError as e:
        raise KrunError(f"{'read' if source == '-' else 'open'} {source}: "
                        f"{strerror(e.errno) if e.errno else 'input/output error'}") from None


def _not_regular(source: str, what: str, mode: int) -> str:
    import stat

    if stat.S_ISDIR(mode):
        return f"{what} {source}: is a directory"
    return f"{what} {source}: not a regular file"


def read_object(source: str, what: str, limit: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A JSON object from a file, or stdin for `-`; errors name the file and `what`."""
    from krun.errors import InvalidConfig

    data = read_bytes(source, what, limit)
    try:
        value = loads(data)
    except ValueError as e:
        raise InvalidConfig(f"malformed {what} {source}: {e}") from None
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} {source}: must be a JSON object")
    return value
