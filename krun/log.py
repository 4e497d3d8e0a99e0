"""Where errors and warnings go: the --log file (text or JSON lines) or stderr.

The JSON shape {"level","msg","time"} is what containerd's shim parses from log.json;
it shows the last error to the user. Every message is one line: engines read the log
line by line, and some messages carry text from elsewhere (libcrun's end in a newline).
"""

from __future__ import annotations

import os
import sys
import time

from krun import fastjson as json

_log_path: str | None = None
_log_format = "text"
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _log_path, _log_format, _debug
    _log_path, _log_format, _debug = path, fmt, debug


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


MAX_MESSAGE = 4096


def one_line(msg: str) -> str:
    """msg without line breaks or other control characters, and of bounded length."""
    if msg.isprintable() and len(msg) <= MAX_MESSAGE:
        return msg
    out: list[str] = []
    for part in msg[:4 * MAX_MESSAGE].splitlines():
        part = part.strip()  # noqa: PLW2901
        if part:
            # libcrun's "open log file X\n: no such file" reads "open log file X: no such file".
            out.append(part if not out or part[0] in ":,;." else " " + part)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in "".join(out))
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _emit(level: str, msg: str) -> None:
    msg = one_line(msg)
    if _log_format == "json":
        line = json.dumps({"level": level, "msg": msg, "time": _timestamp()}) + "\n"
    elif _log_path or level == "debug":
        # runc's text records (logrus): time="..." level=error msg="...".
        line = f'time="{_timestamp()}" level={level} msg={json.dumps(msg)}\n'
    else:
        line = f"krun: {msg}\n"
    if _log_path:
        try:
            fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (OSError, ValueError):
            # The log cannot be opened (a missing directory): the message still counts.
            sys.stderr.write(f"krun: {msg}\n")
            sys.stderr.flush()
            return
        try:
            os.write(fd, line.encode(errors="backslashreplace"))
        finally:
            os.close(fd)
    else:
        sys.stderr.write(line)
        sys.stderr.flush()


def error(msg: str) -> None:
    _emit("error", msg)


def warning(msg: str) -> None:
    _emit("warning", msg)


def debugging() -> bool:
    """Whether --debug is on: for a debug message that costs something to build."""
    return _debug


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", msg)
