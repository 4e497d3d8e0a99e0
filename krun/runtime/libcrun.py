"""A thin, typed layer over the cffi module that links libcrun statically.

Loading `_libcrun` runs libcrun's CVE-2019-5736 guard: unless the interpreter binary
sits on a read-only mount (krun.installer arranges that), the process re-executes itself
from a sealed memfd copy before any Python below this import runs again.

libcrun keeps process-wide state (signal mask, subreaper flag, logging), so a krun
process performs one libcrun operation, as crun does.
"""

from __future__ import annotations

import os

from krun.errors import AlreadyReported, KrunError, LibcrunError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any


try:
    from krun.runtime._libcrun import ffi, lib
except ImportError as e:  # pragma: no cover - only in a source tree, not an install
    raise KrunError(f"the libcrun binding does not load ({e}): reinstall krun") from None


class Context:
    """A libcrun_context_t whose strings stay alive as long as this object."""

    def __init__(self, root: str, container_id: str | None, *, log: str | None = None,
                 log_format: str = "text", debug: bool = False,
                 systemd_cgroup: bool = False) -> None:
        self._keep: list[Any] = []
        self.ctx = ffi.new("libcrun_context_t *")
        self.ctx.state_root = self._str(root)
        self.ctx.id = self._str(container_id)
        self.ctx.bundle = self._str(".")
        self.ctx.fifo_exec_wait_fd = -1
        self.ctx.systemd_cgroup = systemd_cgroup
        self.ctx.notify_socket = self._str(os.environ.get("NOTIFY_SOCKET"))
        err = ffi.new("libcrun_error_t *")
        # Routes libcrun's own warnings into the same --log file as krun's messages.
        if log:
            check(lib.libcrun_init_logging(ffi.addressof(self.ctx, "output_handler"),
                                           ffi.addressof(self.ctx, "output_handler_arg"),
                                           self.ctx.id, self._str(log), err), err)
        lib.krun_use_output_handler(self.ctx)
        if log_format == "json":
            check(lib.libcrun_set_log_format(b"json", err), err)
        if debug:
            lib.libcrun_set_verbosity(1)

    def _str(self, value: str | None) -> Any:
        if value is None:
            return ffi.NULL
        buf = ffi.new("char[]", os.fsencode(value))
        self._keep.append(buf)
        return buf

    def execute(self, fd: int | None, pin: tuple[int, int] | None, preserve_fds: int) -> None:
        """What the process must execute, verified by the caller (krun's patch 0004):
        the file `fd`, or args[0] if it is the (device, inode) `pin` on a read-only
        mount. `fd` stays open until krun exits: a created init inherits it."""
        if fd is not None:
            import fcntl

            # Past the fds libcrun hands the process, so the process never gets it.
            floor = 3 + preserve_fds
            if fd < floor:
                fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
            self.ctx.exec_fd = fd
        elif pin is not None:
            self.ctx.exec_pin_dev, self.ctx.exec_pin_ino = pin

    def set(self, **fields: Any) -> None:
        for name, value in fields.items():
            if isinstance(value, str) or value is None:
                setattr(self.ctx, name, self._str(value))
            else:
                setattr(self.ctx, name, value)


def new_error() -> Any:
    return ffi.new("libcrun_error_t *")


def check(ret: int, err: Any, what: str = "", child_reports: bool = False) -> int:
    """Raise LibcrunError for a failed call. Some failures reported by a forked child
    come back as a non-zero return with no error object: those are failures too. Where
    that child has printed its error already (exec's process, a run's hooks),
    `child_reports` keeps krun from adding a second, vaguer line."""
    if ret >= 0 and err[0] == ffi.NULL:
        return ret
    if err[0] != ffi.NULL:
        status = err[0].status
        msg = ffi.string(err[0].msg).decode(errors="replace") if err[0].msg != ffi.NULL else ""
        lib.libcrun_error_release(err)
        raise LibcrunError(status, msg)
    if child_reports:
        raise AlreadyReported()
    raise LibcrunError(0, f"{what or 'libcrun'} failed")


class Container:
    """A loaded container definition (libcrun_container_t)."""

    def __init__(self, handle: Any) -> None:
        self.handle = ffi.gc(handle, lib.libcrun_container_free)

    @classmethod
    def from_file(cls, path: str) -> Container:
        err = new_error()
        handle = lib.libcrun_container_load_from_file(os.fsencode(path), err)
        if handle == ffi.NULL:
            check(-1, err, "loading config.json")
        return cls(handle)

    @classmethod
    def from_json(cls, text: str) -> Container:
        err = new_error()
        handle = lib.libcrun_container_load_from_memory(text.encode(), err)
        if handle == ffi.NULL:
            check(-1, err, "loading config.json")
        return cls(handle)


def create(c: Context, container: Container) -> None:
    err = new_error()
    # A failed hook is printed by libcrun itself, which then returns -1 with no error.
    check(lib.libcrun_container_create(c.ctx, container.handle, 0, err), err, "create",
          child_reports=True)


def run(c: Context, container: Container) -> int:
    """A foreground run: the container's exit status. (krun's `run -d` is create + start:
    libcrun's detached run forks a child that outlives a killed krun.)"""
    err = new_error()
    ret = lib.libcrun_container_run(c.ctx, container.handle, 0, err)
    if err[0] != ffi.NULL or ret < 0:
        check(-1, err, "run", child_reports=True)
    return ret


def start(c: Context, container_id: str) -> None:
    err = new_error()
    check(lib.libcrun_container_start(c.ctx, container_id.encode(), err), err, "start")


def delete(c: Context, container_id: str, force: bool) -> None:
    err = new_error()
    check(lib.libcrun_container_delete(c.ctx, ffi.NULL, container_id.encode(), force, err), err,
          "delete")


def killall(c: Context, container_id: str, signum: int) -> None:
    """Every process of the container (krun signals the init alone without libcrun)."""
    err = new_error()
    check(lib.libcrun_container_killall(c.ctx, container_id.encode(), str(signum).encode(),
                                        err), err, "kill")


def pause(c: Context, container_id: str) -> None:
    err = new_error()
    check(lib.libcrun_container_pause(c.ctx, container_id.encode(), err), err, "pause")


def resume(c: Context, container_id: str) -> None:
    err = new_error()
    check(lib.libcrun_container_unpause(c.ctx, container_id.encode(), err), err, "resume")


def update(c: Context, container_id: str, resources_json: bytes) -> None:
    err = new_error()
    check(lib.libcrun_container_update(c.ctx, container_id.encode(), resources_json,
                                       len(resources_json), err), err, "update")


def read_pids(c: Context, container_id: str) -> list[int]:
    err = new_error()
    pids = ffi.new("int **")
    ret = lib.libcrun_container_read_pids(c.ctx, container_id.encode(), True, pids, err)
    check(ret, err, "ps")
    try:
        out = []
        i = 0
        while pids[0] != ffi.NULL and pids[0][i] != 0:
            out.append(pids[0][i])
            i += 1
        return out
    finally:
        if pids[0] != ffi.NULL:
            lib.free(pids[0])


def exec_process(c: Context, container_id: str, process_json: str,
                 cgroup: str | None = None) -> int:
    """Foreground: the process's exit status; detached: 0. `cgroup`: exec --cgroup."""
    err = new_error()
    ret = lib.krun_exec_json(c.ctx, container_id.encode(), process_json.encode(),
                             os.fsencode(cgroup) if cgroup else ffi.NULL, err)
    if err[0] != ffi.NULL or ret < 0:
        check(-1, err, "exec", child_reports=True)
    return ret
