"""Exceptions shared by every floor of krun.

Messages follow runc's wording because engines parse them: docker turns a failed create
into exit 127 for "no such file or directory" / "executable file not found", 126 for
"permission denied"; containerd and CRI-O look for "does not exist" and "not running".
"""

from __future__ import annotations

import os


class KrunError(Exception):
    """An error that ends the command with a one-line message and exit code 1."""

    exit_code = 1

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class AlreadyReported(KrunError):
    """A failure whose one line libcrun has printed already (a failed hook, exec's
    child). crun exits 255 then (its -1 return), and scripts test for it."""

    exit_code = 255

    def __init__(self) -> None:
        super().__init__("")


class UsageError(KrunError):
    exit_code = 2


class ContainerNotFound(KrunError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f'container "{container_id}" does not exist')
        self.container_id = container_id


class InvalidConfig(KrunError):
    pass


def strerror(errno_: int) -> str:
    """errno text as Go (and so runc) prints it: lower-case first letter."""
    text = os.strerror(errno_)
    return text[:1].lower() + text[1:]


class PathError(KrunError):
    """A file krun could not use (not one that was wrong): `open /x/y: permission denied`."""


def path_error(op: str, e: OSError, path: str | None = None) -> PathError:
    """An OSError worded as Go's os.PathError, as runc reports it. `path` defaults to
    the one the error names (for os.makedirs, the directory that could not be made)."""
    name = path if path is not None else e.filename if isinstance(e.filename, str) else ""
    text = strerror(e.errno) if e.errno else "input/output error"
    return PathError(f"{op} {name}: {text}" if name else f"{op}: {text}")


class LibcrunError(KrunError):
    """A failure reported by libcrun: its errno status and message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(self._format(status, message))

    @staticmethod
    def _format(status: int, message: str) -> str:
        _, sep, tail = message.partition("executable file `")
        suffix = "` not found in $PATH"
        if sep and tail.endswith(suffix):
            # runc's wording, which docker maps to exit code 127.
            name = tail[: -len(suffix)]
            return f'exec: "{name}": executable file not found in $PATH'
        message = message.strip() or "libcrun failed"
        # Only a real errno is worth naming ("unknown error 32576" helps nobody).
        if 0 < status < 4096 and not os.strerror(status).startswith("Unknown error"):
            return f"{message}: {strerror(status)}"
        return message
