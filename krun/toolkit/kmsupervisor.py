"""krun km's supervisor: forks the runner (`krun run` of the bundle), relays the
terminal and stdin, delivers signals to krun-init itself, and removes what is left if
the runner dies (see krun.toolkit.kmrun's design notes)."""

from __future__ import annotations

import errno
import os

from krun.errors import KrunError
from krun.toolkit.kmbundle import (
    _terminal_size,
    build_bundle,
    bundle_dir,
    collect_stale,
    make_bundle_dir,
    remove_bundle,
)
from krun.toolkit.kmrun import OUTPUT, Interrupted, KmError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, SimpleNamespace
    from typing import Any

    from krun.toolkit.kmrun import Request


def _create_options(req: Request, bundle: str, console_socket: str | None) -> Any:
    """`krun run`'s options for the bundle; `km_bundle` marks it as krun km's, so that
    krun.runtime.handlers adds KmBundleHandler to the create."""
    from krun.runtime import container

    opts = container.CreateOptions(
        bundle=bundle, console_socket=console_socket, run=True, detach=req.detach,
        network=req.network if req.network != "none" else None, publish=req.publish)
    opts.km_bundle = True  # type: ignore[attr-defined]
    return opts


# ---------------------------------------------------------------- running it


INTERRUPTS = (2, 15, 1, 3)  # SIGINT, SIGTERM, SIGHUP, SIGQUIT


def _set_size(master: int) -> None:
    import fcntl
    import struct
    import termios

    size = _terminal_size()
    if size:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _init_takes(pid: int, signum: int) -> bool:
    """Whether a signal sent now reaches the payload through krun-init, the container's
    pid 1. The init of a pid namespace drops a signal it neither blocks nor catches,
    and until libcrun has executed krun-init the init is libcrun's code with default
    dispositions: a signal sent then would be lost, and the payload run on. krun-init
    blocks every signal before it forks KM and never unblocks them (it takes them with
    sigwaitinfo, during which /proc shows no mask at all): so, once it has a child."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read(256).split(b"\0", 1)[0]
        if os.path.basename(argv0) != b"krun-init":
            return False
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            if f.read(64).split():
                return True
        with open(f"/proc/{pid}/status", "rb") as f:
            masks = {k: int(v, 16) for k, _, v in (line.partition(b":\t") for line in f)
                     if k in (b"SigBlk", b"SigCgt")}
    except (OSError, ValueError):
        return False
    return bool((masks.get(b"SigBlk", 0) | masks.get(b"SigCgt", 0)) & 1 << (signum - 1))


class Supervisor:
    """The parent side: signals, the terminal and stdin, the runner's result, cleanup."""

    def __init__(self, g: SimpleNamespace, req: Request, cid: str) -> None:
        self.g, self.req, self.cid = g, req, cid
        self.phase = "setup"        # setup -> claim -> setup -> running -> cleanup
        self.child: int | None = None
        self.signals: list[int] = []  # every interrupt received, in order
        self.acted = 0                # how many of them were acted on
        self.pending: int | None = None  # a signal waiting for krun-init to take it
        self.forced = False           # a second interrupt: the container was killed
        self.abandoned = False        # an interrupt before a detached container ran
        self.master: int | None = None
        self.saved_tty: Any = None
        self.to_fd: int | None = None  # where stdin goes: the pty, or the runner's pipe
        self.to_buf = b""
        self.stdin_open = False
        self.old: dict[int, Any] = {}

    # signals

    def install(self) -> None:
        import signal

        for s in INTERRUPTS:
            self.old[s] = signal.signal(s, self._on_signal)
        self.old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._on_winch)

    def restore(self) -> None:
        import signal

        for s, handler in self.old.items():
            signal.signal(s, handler)
        self.old = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        if self.phase == "setup":
            raise Interrupted(signum)  # unwinds the setup; its finally cleans up
        # "claim" (the bundle's mkdir and marker, which must not be cut in two) acts on
        # it right after; "running" in the supervision loop, which the wakeup fd wakes.

    def _on_winch(self, signum: int, frame: FrameType | None) -> None:
        if self.master is not None:
            _set_size(self.master)

    def _act(self) -> None:
        """The interrupts received since last time: the first is for the payload (or,
        before a detached container ran, ends the run); a second kills the container."""
        while self.acted < len(self.signals):
            signum = self.signals[self.acted]
            self.acted += 1
            if self.acted > 1:
                self.forced = True
                self._kill_runner()
            elif self.req.detach:
                self.abandoned = True
                self._kill_runner()
            else:
                self.pending = signum
        self._deliver()

    def _kill_runner(self) -> None:
        """SIGKILL for the runner; the cleanup's delete --force removes the container
        (its processes by cgroup) and everything else the journal lists."""
        self.pending = None
        if self.child is not None:
            try:
                os.kill(self.child, 9)
            except ProcessLookupError:
                pass

    def _deliver(self) -> None:
        """The pending signal to krun-init, which passes it to KM and KM to the payload,
        as soon as krun-init can take it. Never through the runner: libcrun would pass
        it on at once, to an init that may not be krun-init yet."""
        if self.pending is None:
            return
        from krun.runtime import container
        from krun.runtime.status import read_status

        try:
            st = read_status(self.g.root, self.cid)
        except KrunError:
            return  # not created yet: the loop tries again
        if st.status in ("running", "paused") and _init_takes(st.pid, self.pending):
            try:
                container.kill(self.g, self.cid, self.pending, False)
            except KrunError:
                pass  # it stopped meanwhile
            self.pending = None

    # the run

    def run(self) -> int:
        import signal

        from krun import fastjson as json

        req, g, cid = self.req, self.g, self.cid
        made = False
        listener = None
        sock_dir = None
        log_fd = None
        stdin_r = None
        result: dict[str, Any] | None = None
        status: int | None = None
        try:
            # libcrun's import may re-execute this process (its CVE-2019-5736 guard, off
            # a read-only mount): before anything is made, never in the runner.
            import krun.runtime.libcrun  # noqa: F401

            collect_stale(g.root)
            from krun.runtime.records import read_record

            if read_record(g.root, cid) is not None or os.path.lexists(
                    os.path.join(g.root, cid)):
                raise KmError(f'container "{cid}" already exists')
            self.phase = "claim"
            make_bundle_dir(g.root, cid)
            made = True
            self.phase = "setup"
            if self.signals:
                raise Interrupted(self.signals[0])
            bundle = build_bundle(req, g.root, cid)
            console = None
            if req.tty:
                listener, console, sock_dir = self._console_listener(bundle)
            elif req.interactive and not req.detach and os.isatty(0):
                # The payload reads the terminal through a pipe, as under docker -i: the
                # container stays out of the terminal's process group, so ^C reaches
                # krun km alone, which passes it on once.
                stdin_r, self.to_fd = os.pipe2(os.O_CLOEXEC)
                os.set_blocking(self.to_fd, False)
            if req.detach:
                log_fd = os.open(os.path.join(bundle, OUTPUT), os.O_RDWR | os.O_CREAT
                                 | os.O_APPEND | os.O_CLOEXEC, 0o600)
            opts = _create_options(req, bundle, console)
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            # Blocked across the fork: the runner sets its own dispositions first.
            signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
            self.phase = "running"
            supervisor = os.getpid()
            try:
                pid = os.fork()
                if pid == 0:
                    os.close(read_end)
                    self._runner(opts, write_end, log_fd, listener, stdin_r, supervisor)
                self.child = pid
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
            os.close(write_end)
            if stdin_r is not None:
                os.close(stdin_r)
                stdin_r = None
            self._supervise(pid, listener, sock_dir)
            listener = sock_dir = None
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            # Written before the runner exited, if at all: never wait for more (a
            # process the runner started may hold the pipe still).
            os.set_blocking(read_end, False)
            try:
                data = os.read(read_end, 1 << 16)
            except BlockingIOError:
                data = b""
            finally:
                os.close(read_end)
            try:
                result = json.loads(data) if data else None
            except ValueError:
                result = None
        finally:
            self.phase = "cleanup"
            done = bool(req.detach and result and "status" in result and not self.abandoned)
            self._close_terminal()
            for fd in (stdin_r, self.to_fd):
                if fd is not None and fd != self.master:
                    os.close(fd)
            if listener is not None:
                listener.close()
            if sock_dir is not None:
                _remove_socket_dir(sock_dir)
            if log_fd is not None and not done and not self.signals:
                self._show_output(log_fd)
            if log_fd is not None:
                os.close(log_fd)
            if made and not done:
                self._cleanup()
            self.restore()
        return self._exit_code(result, status)

    def _exit_code(self, result: dict[str, Any] | None, status: int | None) -> int:
        from krun import log

        if self.abandoned:
            return 128 + self.signals[0]
        if self.forced:
            return 137  # killed, as docker reports it
        if result and isinstance(result.get("status"), int):
            if self.req.detach:
                print(self.cid, flush=True)
                return 0
            return int(result["status"]) & 0xFF
        if result and "error" in result:
            if result["error"]:
                log.error(str(result["error"]))
            code = result.get("code")
            return code if code in (126, 127) else KmError.exit_code
        if self.signals:
            return 128 + self.signals[0]
        what = f"signal {-status}" if status is not None and status < 0 else \
            f"status {status}"
        log.error(f"krun km: the container's runner ended without a result ({what})")
        return KmError.exit_code

    def _cleanup(self) -> None:
        """What the runner could not undo: its record, if it is this run's (its bundle
        is ours), through delete --force; then the bundle itself."""
        from krun import log
        from krun.runtime import container, records

        bundle = bundle_dir(self.g.root, self.cid)
        record = records.read_record(self.g.root, self.cid)
        try:
            if record is not None and record.get("bundle") == bundle:
                container.delete(self.g, self.cid, True)
            remove_bundle(self.g.root, self.cid)
        except KrunError as e:
            log.warning(f"{e.msg} (`krun delete -f {self.cid}` tries again)")

    def _show_output(self, fd: int) -> None:
        """A detached create that failed: what libcrun and the hooks said went to the
        container's output file; the user sees it here instead."""
        import sys

        try:
            data = os.pread(fd, 1 << 16, 0)
        except OSError:
            return
        if data:
            sys.stderr.flush()
            _write_all(2, data if data.endswith(b"\n") else data + b"\n")

    # the runner (the child)

    def _runner(self, opts: Any, result_fd: int, log_fd: int | None, listener: Any,
                stdin_r: int | None, supervisor: int) -> None:
        """`krun run` of the bundle, in the forked child; never returns."""
        import signal

        from krun import fastjson as json

        result: dict[str, Any]
        try:
            # The supervisor never signals the runner but to kill it; a signal from
            # elsewhere (SIGTERM when the supervisor dies, below) ends the create the
            # way ^C ends `krun run`: its journal is undone. Once libcrun runs, it
            # blocks them all and passes them to the container.
            for s in INTERRUPTS:
                signal.signal(s, signal.default_int_handler)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
            _die_with_parent()
            if os.getppid() != supervisor:  # it died before the line above
                os._exit(1)
            if listener is not None:
                listener.close()
            if self.to_fd is not None:
                os.close(self.to_fd)
            # Its own process group, out of the terminal's: ^C reaches the supervisor
            # only, which passes it on once.
            os.setpgid(0, 0)
            self._stdio(log_fd, stdin_r)
            from krun.runtime import container

            result = {"status": container.create(self.g, self.cid, opts)}
        except KrunError as e:
            result = {"error": e.msg, "code": e.exit_code}
        except KeyboardInterrupt:
            result = {"error": "", "code": 130}
        except BaseException as e:
            from krun.cli import _last_resort

            result = {"error": _last_resort(e), "code": 1}
        try:
            os.write(result_fd, json.dumps(result).encode())
        finally:
            os._exit(0)

    def _stdio(self, log_fd: int | None, stdin_r: int | None) -> None:
        """The container's stdio is the runner's: stdin is /dev/null unless -i (a pipe
        from the supervisor on a terminal); with -d, stdout and stderr go to the
        bundle's output file."""
        import sys

        if stdin_r is not None:
            os.dup2(stdin_r, 0)
            os.close(stdin_r)
        elif self.req.detach or not self.req.interactive or self.req.tty:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if log_fd is not None:
            # krun's own messages still reach the user's stderr.
            sys.stderr = open(os.dup(2), "w", closefd=True)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)

    # supervision: signals, the terminal, stdin

    def _supervise(self, pid: int, listener: Any, sock_dir: str | None) -> None:
        """Until the runner exits: act on signals (woken by the wakeup fd; every 10 ms
        while one waits for krun-init), take the pty from the console socket, relay
        stdin to the pty or the runner's pipe, and the pty to stdout."""
        import select
        import signal

        pidfd = os.pidfd_open(pid)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        # stdin is read here when it goes through a pipe or the pty (with -i).
        self.stdin_open = self.req.interactive and (self.to_fd is not None or self.req.tty)
        try:
            self._act()  # what came while the fork held signals back
            while True:
                reads = [pidfd, wake_r]
                if listener is not None:
                    reads.append(listener)
                if self.master is not None:
                    reads.append(self.master)
                if self.stdin_open and self.to_fd is not None and len(self.to_buf) < 1 << 16:
                    reads.append(0)
                writes = [self.to_fd] if self.to_buf and self.to_fd is not None else []
                ready, writable, _ = select.select(reads, writes, [],
                                                   0.01 if self.pending else None)
                if wake_r in ready:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                self._act()
                if listener is not None and listener in ready:
                    self._take_terminal(listener, sock_dir)
                    listener = sock_dir = None
                if self.master is not None and self.master in ready:
                    self._from_master()
                if 0 in ready:
                    self._from_stdin()
                if writable:
                    self._flush_input()
                if pidfd in ready:
                    if self.master is not None:
                        os.set_blocking(self.master, False)
                        while self.master is not None and self._from_master():
                            pass
                    return
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for fd in (wake_r, wake_w, pidfd):
                os.close(fd)
            if listener is not None:
                listener.close()
            if sock_dir is not None:
                _remove_socket_dir(sock_dir)

    def _console_listener(self, bundle: str) -> tuple[Any, str, str | None]:
        """The console socket libcrun hands the pty master to: in the bundle when its
        path fits in a sockaddr_un, else in a private temporary directory."""
        import socket

        path = os.path.join(bundle, "console.sock")
        sock_dir = None
        if len(os.fsencode(path)) > 100:
            import tempfile

            sock_dir = tempfile.mkdtemp(prefix="krun-km-")
            path = os.path.join(sock_dir, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(path)
        listener.listen(1)
        return listener, path, sock_dir

    def _take_terminal(self, listener: Any, sock_dir: str | None) -> None:
        """The pty master from libcrun; with -i on a terminal, that terminal goes raw
        (keys, ^C included, go to the payload's pty as typed)."""
        import socket

        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
        listener.close()
        if sock_dir is not None:
            _remove_socket_dir(sock_dir)
        if not fds:
            return
        self.master = fds[0]
        os.set_inheritable(self.master, False)
        _set_size(self.master)
        if self.req.interactive:
            self.to_fd = self.master
            if os.isatty(0):
                import termios
                import tty

                self.saved_tty = termios.tcgetattr(0)
                tty.setraw(0)

    def _from_master(self) -> bool:
        """One read of the pty to stdout; False (and the pty closed) once it is done."""
        assert self.master is not None
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: every slave fd is closed, the payload's gone
                raise
            data = b""
        if not data:
            self._close_master()
            return False
        try:
            _write_all(1, data)
        except BrokenPipeError:
            pass  # nobody reads the output: the payload still runs to its end
        return True

    def _from_stdin(self) -> None:
        data = os.read(0, 1 << 16)
        if data:
            self.to_buf += data
            self._flush_input()
            return
        self.stdin_open = False  # EOF: the payload sees it too
        if self.to_fd is not None and self.to_fd == self.master:
            if not os.isatty(0):
                self.to_buf += b"\x04"  # EOF for a reader of the pty
                self._flush_input()
        elif self.to_fd is not None and not self.to_buf:
            os.close(self.to_fd)
            self.to_fd = None

    def _flush_input(self) -> None:
        if self.to_fd is None:
            self.to_buf = b""
            return
        try:
            n = os.write(self.to_fd, self.to_buf)
        except BlockingIOError:
            return
        except OSError:  # the payload closed its end: what it did not read is dropped
            self.to_buf = b""
            self.stdin_open = False
            return
        self.to_buf = self.to_buf[n:]
        if not self.to_buf and not self.stdin_open and self.to_fd != self.master:
            os.close(self.to_fd)
            self.to_fd = None

    def _close_master(self) -> None:
        if self.master is not None:
            if self.to_fd == self.master:
                self.to_fd, self.to_buf = None, b""
            os.close(self.master)
            self.master = None

    def _close_terminal(self) -> None:
        if self.saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
            self.saved_tty = None
        self._close_master()


def _remove_socket_dir(path: str) -> None:
    """The temporary directory of a console socket: the socket, then the directory."""
    try:
        os.unlink(os.path.join(path, "console.sock"))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _die_with_parent() -> None:
    """The runner gets SIGTERM if the supervisor dies (SIGKILL): libcrun passes it to the
    container, whose end the runner then cleans up like any foreground run's."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, 15, 0, 0, 0)
