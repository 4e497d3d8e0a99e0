"""`krun events [--stats] [--interval D] ID`: runc's stats and OOM events as JSON lines.

One event a line, as Go's json.Encoder writes it: `{"type":"stats","id":ID,
"data":{...}}` every --interval (the first after one interval, as runc's ticker), and
`{"type":"oom","id":ID}` when the container meets the OOM killer. With --stats, one
stats event and exit. The stream ends (exit 0) when the container's init exits: a pidfd
says so at once, and `delete` cannot remove a container whose init still runs. Each line
is written with one write(2), so an engine reading line by line never waits on a buffer.
"""

from __future__ import annotations

import os
import time

from krun.errors import KrunError, UsageError
from krun.runtime.ids import validate_id
from krun.runtime.status import is_alive, read_status

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.stats import Cgroups
    from krun.runtime.status import Status

# Go's time.ParseDuration units, in nanoseconds.
_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_MAX_NS = (1 << 63) - 1
_DIGITS = "0123456789"
# Without an eventfd (or just after it fired), OOM is polled for this often.
_OOM_POLL = 0.1


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "1.5h", "500ms", "-2s", "0"), in nanoseconds.
    A ValueError carries Go's message."""
    s, negative = text, False
    if s[:1] in ("-", "+"):
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    invalid = f'time: invalid duration "{text}"'
    if not s:
        raise ValueError(invalid)
    total = 0
    while s:
        if s[0] != "." and s[0] not in _DIGITS:
            raise ValueError(invalid)
        i = 0
        while i < len(s) and s[i] in _DIGITS:
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s[:1] == ".":
            j = 1
            while j < len(s) and s[j] in _DIGITS:
                j += 1
            frac, s = s[1:j], s[j:]
        if not whole and not frac:
            raise ValueError(invalid)
        j = 0
        while j < len(s) and s[j] != "." and s[j] not in _DIGITS:
            j += 1
        unit, s = s[:j], s[j:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        scale = _UNITS.get(unit)
        if scale is None:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > _MAX_NS + negative:
            raise ValueError(invalid)
    return -total if negative else total


def _emit(event: dict[str, Any]) -> None:
    from krun import fastjson

    data = (fastjson.dumps(event, go=True) + "\n").encode()
    while data:
        data = data[os.write(1, data):]


def _interval(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"invalid --interval {text!r}: {e}") from None


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    interval = _interval(o.interval)
    st = read_status(g.root, validate_id(o.container_id))
    if interval <= 0:
        raise KrunError("duration interval must be greater than 0")
    if st.status == "stopped":
        raise KrunError(f"container with id {st.id} is not running")
    from krun.runtime import stats

    cg = stats.Cgroups(st.cgroup_path)
    try:
        if o.stats:
            _emit({"type": "stats", "id": st.id, "data": stats.read_stats(cg)})
            return 0
        return _stream(st, cg, interval)
    except BrokenPipeError:
        return 141  # what a Go runtime's SIGPIPE death looks like to a shell


def _stream(st: Status, cg: Cgroups, interval_ns: int) -> int:
    import select

    from krun.runtime import stats

    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        raise KrunError(f"container with id {st.id} is not running") from None
    watch = None
    try:
        # The pidfd pins the pid: if it is still the init, it is until the fd is closed.
        if not is_alive(st.pid, st.start_time):
            raise KrunError(f"container with id {st.id} is not running")
        watch = stats.OomWatch(cg)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if watch.fd is not None:
            poller.register(watch.fd, select.POLLIN)
        interval = interval_ns / 1e9
        next_tick = time.monotonic() + interval
        while True:
            wait = max(next_tick - time.monotonic(), 0.0)
            if watch.polling():
                wait = min(wait, _OOM_POLL)
            ready = {fd for fd, _ in poller.poll(wait * 1000)}
            if watch.check():
                _emit({"type": "oom", "id": st.id})
            if pidfd in ready:
                return 0  # the init exited: the container stopped
            now = time.monotonic()
            if now >= next_tick:
                _emit({"type": "stats", "id": st.id, "data": stats.read_stats(cg)})
                # A tick missed (a long read, a stopped process) is dropped, as Go's is.
                next_tick += interval * max(1, int((now - next_tick) // interval) + 1)
    finally:
        if watch is not None:
            watch.close()
        os.close(pidfd)
