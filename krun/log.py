"""Where errors and warnings go: the --log file (text or JSON lines) or stderr.

The JSON shape {"level","msg","time"} is what containerd's shim parses from log.json;
it shows the last error to the user.
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


def _emit(level: str, msg: str) -> None:
    if _log_format == "json":
        line = json.dumps({"level": level, "msg": msg, "time": _timestamp()}) + "\n"
    else:
        line = f"{_timestamp()} {level}: {msg}\n" if _log_path else f"krun: {msg}\n"
    if _log_path:
        try:
            fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            sys.stderr.write(line)
            return
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    else:
        sys.stderr.write(line)
        sys.stderr.flush()


def error(msg: str) -> None:
    _emit("error", msg)


def warning(msg: str) -> None:
    _emit("warning", msg)


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", msg)
