"""Minimal, careful edits of TOML files that people wrote by hand.

The standard library reads TOML (tomllib) but cannot write it, and re-serialising would
lose the comments and layout of files like containers.conf. So edits here are textual:
a small scanner finds where each top-level statement (a table header or a `key = value`
that may span lines) starts and ends, an edit replaces or inserts whole statements, and
every result is re-parsed with tomllib and compared with the original document: only the
intended key may differ. Anything the scanner cannot place safely raises TomlEditError
instead of guessing, and the file is left alone.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, NamedTuple

Path_ = tuple[str, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class TomlEditError(Exception):
    pass


class Statement(NamedTuple):
    kind: str  # "table" ([x]), "array" ([[x]]) or "key" (k = v)
    path: Path_  # the table's path, or the key's dotted path
    start: int  # offset of the statement's first character (at a line start)
    end: int  # offset just past the newline that ends it (or len(text))


def _parse_key(text: str, i: int, stop: str) -> tuple[Path_, int]:
    """Parse a dotted key starting at text[i], up to a char in `stop` (not consumed)."""
    parts: list[str] = []
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            raise TomlEditError("unterminated key")
        c = text[i]
        if c == '"':
            j, buf = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    esc = text[j + 1:j + 2]
                    if esc in _ESCAPES:
                        buf.append(_ESCAPES[esc])
                        j += 2
                        continue
                    if esc in ("u", "U"):
                        n = 4 if esc == "u" else 8
                        buf.append(chr(int(text[j + 2:j + 2 + n], 16)))
                        j += 2 + n
                        continue
                    raise TomlEditError(f"bad escape in key at {j}")
                if text[j] == "\n":
                    raise TomlEditError("newline in quoted key")
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        elif c == "'":
            j = text.find("'", i + 1)
            if j < 0 or "\n" in text[i:j]:
                raise TomlEditError("unterminated literal key")
            parts.append(text[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                raise TomlEditError(f"bad key at offset {i}")
            parts.append(m.group())
            i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        if i < len(text) and text[i] in stop:
            return tuple(parts), i
        raise TomlEditError(f"unexpected {text[i:i + 1]!r} in key at offset {i}")


def _skip_value(text: str, i: int) -> int:
    """Skip a value starting at text[i]; return the offset of the line end that ends it.

    Tracks strings (all four kinds), arrays, inline tables and comments, which is all a
    value can span lines with.
    """
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith('"""', i) or text.startswith("'''", i):
            q = text[i:i + 3]
            j = i + 3
            while True:
                j = text.find(q, j)
                if j < 0:
                    raise TomlEditError("unterminated multi-line string")
                if q == '"""':
                    backslashes = len(text[:j]) - len(text[:j].rstrip("\\"))
                    if backslashes % 2:
                        j += 1
                        continue
                # Up to two more quotes may belong to the string ("""a"""" is legal).
                while text.startswith(q[0], j + 3):
                    j += 1
                break
            i = j + 3
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\n":
                    raise TomlEditError("newline in string")
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise TomlEditError("unterminated literal string")
            i = j + 1
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "\n" and depth == 0:
            return i
        i += 1
    if depth:
        raise TomlEditError("unterminated array or inline table")
    return n


def scan(text: str) -> list[Statement]:
    """Every top-level statement of a TOML document, in order."""
    out: list[Statement] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] in " \t\r":
            j += 1
        if j >= n:
            break
        c = text[j]
        if c in "\n#":
            nl = text.find("\n", j)
            i = n if nl < 0 else nl + 1
            continue
        if c == "[":
            array = text.startswith("[[", j)
            path, k = _parse_key(text, j + (2 if array else 1), "]")
            if array:
                if not text.startswith("]]", k):
                    raise TomlEditError("bad array-of-tables header")
                k += 2
            else:
                k += 1
            line_end = _skip_value(text, k)  # only a comment may follow
            out.append(Statement("array" if array else "table", path, i,
                                 min(line_end + 1, n)))
            i = line_end + 1
            continue
        path, k = _parse_key(text, j, "=")
        line_end = _skip_value(text, k + 1)
        out.append(Statement("key", path, i, min(line_end + 1, n)))
        i = line_end + 1
    return out


class Table(NamedTuple):
    header: Statement | None  # None: the implicit root table
    keys: list[Statement]
    end: int  # where the next header starts (or len(text))


def tables(text: str) -> list[Table]:
    stmts = scan(text)
    result: list[Table] = []
    current: Statement | None = None
    keys: list[Statement] = []
    for s in stmts:
        if s.kind == "key":
            keys.append(s)
            continue
        result.append(Table(current, keys, s.start))
        current, keys = s, []
    result.append(Table(current, keys, len(text)))
    return result


def find_table(text: str, path: Path_) -> Table | None:
    for t in tables(text):
        if t.header is not None and t.header.kind == "table" and t.header.path == path:
            return t
    return None


def format_key(part: str) -> str:
    return part if _BARE.fullmatch(part) else basic_string(part)


def format_path(path: Path_) -> str:
    return ".".join(format_key(p) for p in path)


def basic_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value(v: str | bool | int | list[str]) -> str:
    """A TOML literal for the few value types krun writes."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(basic_string(x) for x in v) + "]"
    return basic_string(v)


def lookup(doc: dict[str, Any], path: Path_) -> Any:
    node: Any = doc
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _without(doc: Any, path: Path_) -> Any:
    """A copy of doc with the value at path removed (and tables emptied by that, too)."""
    if not path or not isinstance(doc, dict) or path[0] not in doc:
        return doc
    copy = dict(doc)
    if len(path) == 1:
        del copy[path[0]]
        return copy
    copy[path[0]] = _without(copy[path[0]], path[1:])
    return copy


def _prune_empty(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    pruned = {k: _prune_empty(v) for k, v in doc.items()}
    return {k: v for k, v in pruned.items() if v != {}}


def check_edit(old: str, new: str, changed: Path_, want: Any) -> None:
    """Refuse an edit that broke the document or touched anything but `changed`."""
    try:
        before = tomllib.loads(old)
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as e:
        raise TomlEditError(f"the edited file would not parse: {e}") from None
    if lookup(after, changed) != want:
        raise TomlEditError(f"the edit did not set {format_path(changed)}")
    # Empty tables may appear (a header we added) or vanish (one we removed).
    if _prune_empty(_without(before, changed)) != _prune_empty(_without(after, changed)):
        raise TomlEditError(f"the edit of {format_path(changed)} would change other settings")


def _line_ending(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def set_key(text: str, table: Path_, key: str, literal: str, want: Any,
            marker: str = "") -> str:
    """Set `key = literal` in [table], adding the table at the end if it is missing.

    `marker`, a comment line, goes above a table this call creates, so that remove_key
    can later remove the table too and give back the file it found.
    """
    nl = _line_ending(text)
    line = f"{format_key(key)} = {literal}{nl}"
    t = find_table(text, table)
    if t is None:
        if lookup(_safe_load(text), table) is not None and not _only_subtables(text, table):
            # Defined by dotted keys or an inline table: a header would be a redefinition.
            raise TomlEditError(f"[{format_path(table)}] is defined inline; edit it by hand")
        # One blank line before the new table; remove_key takes exactly that one back.
        sep = "" if not text else (nl if text.endswith("\n") else nl + nl)
        head = f"{marker}{nl}" if marker else ""
        new = f"{text}{sep}{head}[{format_path(table)}]{nl}{line}"
    else:
        same = [k for k in t.keys if k.path == (key,)]
        dotted = [k for k in t.keys if k.path[0] == key and len(k.path) > 1]
        if dotted:
            raise TomlEditError(f"{format_path((*table, key))} is set by dotted keys; "
                                "edit it by hand")
        if same:
            s = same[0]
            new = text[:s.start] + line + text[s.end:]
        else:
            assert t.header is not None
            at = t.keys[-1].end if t.keys else t.header.end
            prefix = "" if at == 0 or text[at - 1] == "\n" else nl
            new = text[:at] + prefix + line + text[at:]
    check_edit(text, new, (*table, key), want)
    return new


def remove_key(text: str, table: Path_, key: str, marker: str = "") -> str:
    """Remove `key` from [table]; remove the table as well if set_key created it."""
    t = find_table(text, table)
    if t is None:
        return text
    hits = [k for k in t.keys if k.path == (key,)]
    if not hits:
        return text
    s = hits[0]
    new = text[:s.start] + text[s.end:]
    assert t.header is not None
    # Our own table (marker line right above its header, no other key left): drop it all,
    # with the blank line set_key put before it.
    if marker and len(t.keys) == 1:
        head_start = t.header.start
        marker_line = marker + _line_ending(text)
        body = text[t.header.end:s.start] + text[s.end:t.end]
        if text[:head_start].endswith(marker_line) and not body.strip():
            start = head_start - len(marker_line)
            end = t.end
            before = text[:start]
            new = _drop_separator(before, text[end:])
    check_edit(text, new, (*table, key), None)
    return new


def remove_table(text: str, table: Path_, marker: str = "") -> str:
    """Remove [table] (header and keys), and the marker line above it if it is ours."""
    t = find_table(text, table)
    if t is None:
        return text
    assert t.header is not None
    start, end = t.header.start, t.end
    marker_line = marker + _line_ending(text) if marker else ""
    if marker_line and text[:start].endswith(marker_line):
        start -= len(marker_line)
    new = _drop_separator(text[:start], text[end:])
    # Sub-tables defined elsewhere would keep the table alive: remove those first.
    check_edit(text, new, table, None)
    return new


def _drop_separator(before: str, after: str) -> str:
    """Join the text around a removed table, minus the blank line set_key put before it."""
    if not after:
        nl = _line_ending(before)
        if before.endswith(nl + nl):
            before = before[:-len(nl)]
        elif before == nl:
            before = ""
    return before + after


def _safe_load(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TomlEditError(f"cannot parse: {e}") from None


def _only_subtables(text: str, table: Path_) -> bool:
    """True if `table` exists only because headers of its sub-tables imply it."""
    for t in tables(text):
        head = t.header.path if t.header else ()
        if len(head) >= len(table):
            continue  # keys under [table.sub] headers define sub-tables only
        for s in t.keys:
            full = (*head, *s.path)
            if full[:len(table)] == table or table[:len(full)] == full:
                return False  # `runtimes.krun = ...` in [engine], or an inline table
    return True
