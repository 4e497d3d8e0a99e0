"""A small type checker for parsed JSON, and the OCI `linux.resources` object's types.

The runtime-spec says what type each member has; runc's Go decoder refuses a value of
the wrong type (`"limit": "lots"`), libcrun sometimes does not, and krun's own code would
fail on it with a Python exception. So every JSON object krun reads is checked against a
hand-written table first: plain `type() is` tests, no jsonschema (that costs ~100 ms to
import), and the path is built only when a check fails. The message names the JSON
path: `config.json: $.process.user.uid: must be an integer`.

A table is made of `str`, `bool`, `Int(lo, hi)`, `Arr(item)`, `Obj({key: table},
required)`, `Map(value table)` (an object with any keys) and `Check(fn)` (fn raises Bad).
Members a table does not name are not checked: the spec says unknown ones are ignored.
"""

from __future__ import annotations

from krun.errors import InvalidConfig

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Bad(Exception):
    """A value that breaks its table's rule; the path is collected on the way up.
    Internal: check() turns it into InvalidConfig."""

    def __init__(self, rule: str, segment: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.segments = [segment] if segment else []


class Int:
    __slots__ = ("hi", "lo", "rule")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.rule = f"must be an integer from {lo} to {hi}"


class Arr:
    __slots__ = ("item", "nonempty")

    def __init__(self, item: Any, nonempty: bool = False) -> None:
        self.item, self.nonempty = item, nonempty


class Obj:
    __slots__ = ("fields", "required")

    def __init__(self, fields: dict[str, Any], required: tuple[str, ...] = ()) -> None:
        self.fields, self.required = fields, required


class Map:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Check:
    __slots__ = ("fn", "then")

    def __init__(self, fn: Callable[[Any], None], then: Any = None) -> None:
        # `then`: a table checked first, so fn sees a value of the right type.
        self.fn, self.then = fn, then


I32 = Int(-(1 << 31), (1 << 31) - 1)
I64 = Int(-(1 << 63), (1 << 63) - 1)
U16 = Int(0, (1 << 16) - 1)
U32 = Int(0, (1 << 32) - 1)
U64 = Int(0, (1 << 64) - 1)


def show(value: Any) -> str:
    """A value for a message: one line, at most ~60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(key: str) -> str:
    # `$.a.b` for plain names; JSON-quoted otherwise, so a message stays one line.
    if key and all(c.isalnum() or c in "_-" for c in key) and key.isascii():
        return "." + key
    from krun.fastjson import _encode_str

    quoted = _encode_str(key)
    if len(quoted) > 60:
        quoted = quoted[:56] + '..."'
    return f"[{quoted}]"


def _walk(value: Any, t: Any) -> None:
    if t is str:
        if type(value) is not str:
            raise Bad("must be a string")
        if "\0" in value:
            raise Bad("must not contain a NUL character")
        return
    if t is bool:
        if type(value) is not bool:
            raise Bad("must be a boolean")
        return
    kind = type(t)
    if kind is Int:
        if type(value) is not int:
            raise Bad("must be an integer")
        if not t.lo <= value <= t.hi:
            raise Bad(t.rule)
    elif kind is Obj:
        if type(value) is not dict:
            raise Bad("must be an object")
        for key in t.required:
            if key not in value:
                raise Bad("is required", _key(key))
        fields = t.fields
        for key, item in value.items():
            sub = fields.get(key)
            if sub is not None:
                try:
                    _walk(item, sub)
                except Bad as e:
                    e.segments.append(_key(key))
                    raise
    elif kind is Arr:
        if type(value) is not list:
            raise Bad("must be an array")
        if t.nonempty and not value:
            raise Bad("must not be empty")
        item_t = t.item
        for i, item in enumerate(value):
            try:
                _walk(item, item_t)
            except Bad as e:
                e.segments.append(f"[{i}]")
                raise
    elif kind is Map:
        if type(value) is not dict:
            raise Bad("must be an object")
        value_t = t.value
        for key, item in value.items():
            try:
                if "\0" in key:
                    raise Bad("a key must not contain a NUL character")
                _walk(item, value_t)
            except Bad as e:
                e.segments.append(_key(key))
                raise
    elif kind is Check:
        if t.then is not None:
            _walk(value, t.then)
        t.fn(value)
    else:  # pragma: no cover - a mistake in a table
        raise TypeError(f"not a type table: {t!r}")


def check(value: Any, table: Any, where: str, root: str = "$") -> None:
    """Raise InvalidConfig `WHERE: ROOT.path: rule` unless value fits the table."""
    try:
        _walk(value, table)
    except Bad as e:
        raise InvalidConfig(f"{where}: {root}{''.join(reversed(e.segments))}: {e.rule}") \
            from None


# The runtime-spec's linux.resources (config-linux.md, specs-go LinuxResources): runc's
# types, so krun refuses what runc refuses. A negative memory or pids limit means
# unlimited, hence the signed types.
_DEVICE_MAJOR_MINOR = {"major": I64, "minor": I64}
_THROTTLE = Obj({**_DEVICE_MAJOR_MINOR, "rate": U64})

RESOURCES = Obj({
    "devices": Arr(Obj({"allow": bool, "type": str, **_DEVICE_MAJOR_MINOR, "access": str},
                       required=("allow",))),
    "memory": Obj({"limit": I64, "reservation": I64, "swap": I64, "kernel": I64,
                   "kernelTCP": I64, "swappiness": U64, "disableOOMKiller": bool,
                   "useHierarchy": bool, "checkBeforeUpdate": bool}),
    "cpu": Obj({"shares": U64, "quota": I64, "burst": U64, "period": U64,
                "realtimeRuntime": I64, "realtimePeriod": U64, "cpus": str, "mems": str,
                "idle": I64}),
    "pids": Obj({"limit": I64}),
    "blockIO": Obj({
        "weight": U16, "leafWeight": U16,
        "weightDevice": Arr(Obj({**_DEVICE_MAJOR_MINOR, "weight": U16, "leafWeight": U16})),
        "throttleReadBpsDevice": Arr(_THROTTLE), "throttleWriteBpsDevice": Arr(_THROTTLE),
        "throttleReadIOPSDevice": Arr(_THROTTLE), "throttleWriteIOPSDevice": Arr(_THROTTLE),
    }),
    "hugepageLimits": Arr(Obj({"pageSize": str, "limit": U64}, required=("pageSize",))),
    "network": Obj({"classID": U32,
                    "priorities": Arr(Obj({"name": str, "priority": U32}))}),
    "rdma": Map(Obj({"hcaHandles": U32, "hcaObjects": U32})),
    "unified": Map(str),
})


def check_resources(value: Any, where: str, root: str = "$") -> None:
    check(value, RESOURCES, where, root)
