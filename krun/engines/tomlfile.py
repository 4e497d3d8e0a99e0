"""Edits of TOML files that people wrote by hand (containers.conf, containerd's config.toml).

tomlkit reads the file and finds the statement to change: deleting an item from its
document and diffing the text it renders against the file gives the item's exact place.
The edit itself is a splice into the file's text, so krun decides what it touches: a new
key goes right after the table's last key (not after the comments that open the next
table), a new table goes at the end of the file under the marker line, in the file's
line endings, and a removal takes krun's marker and the blank line install put before
its table, but leaves the comments after a table, which belong to what follows. tomlkit
renders the keys and values krun writes. Every result is parsed again by tomllib (what
the engines' Go readers agree with) and compared with the original: only the edited key
or table may differ. Whatever cannot be done that way raises TomlEditError and the file
is left alone.

tomlkit is imported inside the functions: only `krun install`/`uninstall` come here.
"""

from __future__ import annotations

import re
import tomllib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tomlkit.container import Container
    from tomlkit.items import Key, Table
    from tomlkit.toml_document import TOMLDocument

Path_ = tuple[str, ...]
Value = str | bool | int | list[str]


class TomlEditError(Exception):
    pass


def newline(text: str | None) -> str:
    return "\r\n" if text and "\r\n" in text else "\n"


def load(text: str) -> dict[str, Any]:
    """The document's values (tomllib), or a one-line error that says where it breaks."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", str(e))
        what, where = (m.group(1), m.group(2)) if m else (str(e), "")
        where = f" at {where}" if where else ""
        raise TomlEditError(f"not valid TOML{where} ({what}); fix it first") from None


def lookup(doc: dict[str, Any], path: Path_) -> Any:
    node: Any = doc
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def literal(value: Value) -> str:
    """A TOML literal for the few value types krun writes."""
    import tomlkit

    return tomlkit.item(value).as_string()


def dotted(path: Path_) -> str:
    import tomlkit

    return tomlkit.key(list(path)).as_string()


def set_value(text: str | None, table: Path_, key: str, value: Value, marker: str = "") -> str:
    """Set `key = value` in [table], adding the table at the end if it is missing.

    `text` None is a file that does not exist yet. `marker`, a comment line, goes above
    a table this call adds, so that remove_key / remove_table can take it away again.
    """
    body = text or ""
    old = load(body)
    if lookup(old, (*table, key)) == value:
        return body
    nl = newline(body)
    doc = _parse(body)
    found = _concrete(doc, table)
    if found is None:
        if lookup(old, (*table, key)) is not None:
            raise TomlEditError(f"{dotted((*table, key))} is a table, not a value; "
                                "edit it by hand")
        # One blank line before the new table (in an existing file, even an empty one:
        # uninstall tells a file install created by the marker on its first line).
        sep = "" if text is None else nl
        head = f"{marker}{nl}" if marker else ""
        new = f"{body}{sep}{head}[{dotted(table)}]{nl}{_line(key, value)}{nl}"
        _check(body, new, (*table, key), value, by_hand=True)
        return new
    from tomlkit.items import AoT, Table

    t = found[2]
    existing = next(((k, v) for k, v in t.value.body if k is not None and k.key == key), None)
    if existing is not None:
        if isinstance(existing[1], (AoT, Table)):  # a sub-table, or dotted keys below it
            raise TomlEditError(f"{dotted((*table, key))} is a table or set by dotted keys; "
                                "edit it by hand")
        # tomlkit replaces the value in place: the key's indentation and comment stay.
        t[key] = value
        new = doc.as_string()
        start, end = _span(body, _parse(body), table, key)
        if not (new.startswith(body[:start]) and new.endswith(body[end:])
                and len(new) >= len(body) - end + start):
            raise TomlEditError(f"tomlkit changed more than {dotted((*table, key))}")
    else:
        keys = [(k, v) for k, v in t.value.body if k is not None and not _is_table(k, v)]
        if keys:
            last_key, last = keys[-1]
            pos = _span(body, doc, table, last_key.key)[1]
            indent = "" if isinstance(last, Table) else last.trivia.indent  # Table: dotted
        else:  # right after the header line
            start = _span(body, doc, table)[0]
            eol = body.find("\n", start)
            pos = len(body) if eol < 0 else eol + 1
            indent = t.trivia.indent
        if indent.strip(" \t"):
            indent = ""
        line = _line(key, value, indent)
        if pos == len(body) and not body.endswith("\n"):
            # The last line has no newline: neither has ours, so that removing it
            # gives the file back (see _cut).
            new = f"{body}{nl}{line}"
        else:
            new = f"{body[:pos]}{line}{nl}{body[pos:]}"
    _check(body, new, (*table, key), value)
    return new


def remove_key(text: str, table: Path_, key: str, marker: str = "") -> str:
    """Remove `key` from [table]; the table as well if it is krun's (marker) and empty."""
    doc = _parse(text)
    found = _concrete(doc, table)
    if found is None:
        return text
    t = found[2]
    body = t.value.body
    keyed = [i for i, (k, _) in enumerate(body) if k is not None]
    if not any(body[i][0].key == key and not _is_table(*body[i]) for i in keyed):
        return text
    from tomlkit.items import Comment

    # krun's table holds nothing else (the comments after its key are not in it).
    alone = len(keyed) == 1 and not any(isinstance(v, Comment) for _, v in body[:keyed[0]])
    if marker and alone and _marked(text, _span(text, _parse(text), table)[0], marker):
        return remove_table(text, table, marker)
    start, end = _span(text, doc, table, key)
    new = _cut(text, start, end)
    _check(text, new, (*table, key), None)
    return new


def remove_table(text: str, table: Path_, marker: str = "") -> str:
    """Remove [table] (header, keys, sub-tables), and the marker line above it if any."""
    doc = _parse(text)
    found = _concrete(doc, table)
    if found is None:
        return text
    t = found[2]
    keep = _tail(t)  # comments and blank lines after the table stay
    held = [(*table, k.key) for k, _ in t.value.body if k]
    start, end = _span(text, doc, table)
    if keep and text[end - len(keep):end] == keep:
        end -= len(keep)
    nl = newline(text)
    if marker and _marked(text, start, marker):
        before, after = text[:start - len(marker) - len(nl)], text[end:]
        if before.endswith(nl) and (not after or after.startswith(nl)):
            before = before[:-len(nl)]  # the blank line install put before the table
        new = before + after
    else:
        new = _cut(text, start, end)
        if start and not text[end:] and new.endswith(nl + nl):
            new = new[:-len(nl)]  # the blank line before it, at the end of the file now
    # What [table] itself held goes; sub-tables defined elsewhere in the file stay.
    _check(text, new, table, removed=held)
    return new


# -- helpers ------------------------------------------------------------------------------

def _parse(text: str) -> TOMLDocument:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as e:  # tomllib read it (load comes first): a tomlkit limit
        raise TomlEditError(f"tomlkit cannot read it ({e}); edit it by hand") from None
    if doc.as_string() != text:
        raise TomlEditError("tomlkit does not write it back as it is; edit it by hand")
    return doc


def _is_table(k: Key, v: object) -> bool:
    """A [header] table or an array of tables (not a dotted key or an inline table: those
    are key lines)."""
    from tomlkit.items import AoT, Table

    return isinstance(v, AoT) or (isinstance(v, Table) and not k.is_dotted())


def _tables(container: Container, prefix: Path_ = ()) -> Iterator[tuple[Path_, Container, int,
                                                                          Key, Table]]:
    from tomlkit.items import Table

    for i, (k, v) in enumerate(container.body):
        if k is not None and isinstance(v, Table):
            path = (*prefix, k.key)
            yield path, container, i, k, v
            yield from _tables(v.value, path)


def _concrete(doc: TOMLDocument, table: Path_) -> tuple[Container, int, Table] | None:
    """[table] as a header defines it (not implied by sub-tables, not dotted keys): the
    container that holds it, its place there, the table."""
    for path, parent, i, k, t in _tables(doc):
        if path == table and not t.is_super_table() and not k.is_dotted():
            return parent, i, t
    return None


def _span(text: str, doc: TOMLDocument, table: Path_, key: str | None = None
          ) -> tuple[int, int]:
    """Where [table] (or its `key`) is in text: dropped from doc (text parsed, which this
    spoils), tomlkit renders the rest, the diff says where."""
    from tomlkit.items import Null

    found = _concrete(doc, table)
    assert found is not None
    container, i, t = found
    if key is not None:
        container = t.value
        i = next(j for j, (k, _) in enumerate(container.body) if k is not None and k.key == key)
    # Exactly this one entry, the way tomlkit deletes (its remove() takes every entry of a
    # key: a table also defined out of order, every line of a dotted key). The document is
    # only rendered afterwards.
    container.body[i] = (None, Null())
    new = doc.as_string()
    n = len(text) - len(new)
    head = _common(text, new)
    tail = _common(text[::-1], new[::-1])
    # Any start in [lo, hi] gives `new`; the statement starts a line.
    lo, hi = max(0, len(new) - tail), min(head, len(new))
    for i in range(hi, lo - 1, -1):
        if n > 0 and (i == 0 or text[i - 1] == "\n"):
            return i, i + n
    raise TomlEditError(f"tomlkit changed more than {dotted((*table, key) if key else table)}")


def _common(a: str, b: str) -> int:
    """How many characters a and b start with alike."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _tail(t: Table) -> str:
    """The comments and blank lines that end the table's text (the next table's, maybe)."""
    from tomlkit.items import Comment, Table, Whitespace

    parts: list[str] = []
    for k, v in reversed(t.value.body):
        if k is None:
            if isinstance(v, (Comment, Whitespace)):
                parts.append(v.as_string())
            continue  # tomlkit's Null, left where an item was deleted: no text
        if isinstance(v, Table) and not k.is_dotted():
            parts.append(_tail(v))  # a sub-table's text ends ours
        break
    return "".join(reversed(parts))


def _marked(text: str, start: int, marker: str) -> bool:
    """True if the line right above offset `start` is the marker."""
    line = marker + newline(text)
    at = start - len(line)
    return at >= 0 and text[at:start] == line and (at == 0 or text[at - 1] == "\n")


def _cut(text: str, start: int, end: int) -> str:
    before, after = text[:start], text[end:]
    nl = newline(text)
    if not after and not text.endswith("\n") and before.endswith(nl):
        # The file's last line (without a newline) went: the newline before it goes too.
        before = before[:-len(nl)]
    return before + after


def _line(key: str, value: Value, indent: str = "") -> str:
    return f"{indent}{dotted((key,))} = {literal(value)}"


def _without(doc: Any, path: Path_) -> Any:
    """A copy of doc with the value at path removed."""
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


def _check(old: str, new: str, changed: Path_, want: Any = None, by_hand: bool = False,
           removed: list[Path_] | None = None) -> None:
    """Refuse an edit that broke the document or touched anything but `changed` (set to
    `want`), or but the `removed` keys."""
    before = load(old)
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as e:
        if by_hand:  # a new [table] header that the file forbids
            how = ("an array of tables" if isinstance(lookup(before, changed[:-1]), list)
                   else "set inline or by dotted keys")
            raise TomlEditError(f"[{dotted(changed[:-1])}] is {how}, where krun adds no "
                                "header; edit it by hand") from None
        raise TomlEditError(f"the edited file would not parse: {e}") from None
    if removed is None:
        if lookup(after, changed) != want:
            raise TomlEditError(f"the edit did not set {dotted(changed)}")
        removed = [changed]
    expected = before
    for path in removed:
        expected = _without(expected, path)
        after = _without(after, path)
    # Empty tables may appear (a header we added) or vanish (one we removed).
    if _prune_empty(expected) != _prune_empty(after):
        raise TomlEditError(f"the edit of {dotted(changed)} would change other settings")
