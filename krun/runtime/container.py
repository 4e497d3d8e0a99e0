"""Container lifecycle: krun's checks and records around libcrun's operations.

Every entry point validates the id before touching the disk, checks the container's
state in Python (so errors read like runc's), then performs exactly one libcrun
operation. `krun.runtime.libcrun` is imported only here, inside the operations that
need it, so `state` and `list` never load the binding.
"""

from __future__ import annotations

import os

from krun import __version__
from krun import fastjson as json
from krun.errors import ContainerNotFound, KrunError
from krun.network.settings import network_request
from krun.runtime import records
from krun.runtime.bundle import Bundle, check_process, load_bundle
from krun.runtime.handlers import handler_by_name, handler_for_bundle
from krun.runtime.ids import validate_id
from krun.runtime.status import Status, is_alive, read_status

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any


class CreateOptions:
    """create's flags; `run` creates and starts in one call (foreground unless detach)."""

    def __init__(self, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0,
                 no_pivot: bool = False, no_new_keyring: bool = False, detach: bool = True,
                 run: bool = False, network: str | None = None, ip: str | None = None,
                 publish: list[str] | None = None) -> None:
        self.bundle, self.pid_file, self.console_socket = bundle, pid_file, console_socket
        self.preserve_fds, self.no_pivot = preserve_fds, no_pivot
        self.no_new_keyring = no_new_keyring
        self.detach, self.run = detach, run
        self.network, self.ip, self.publish = network, ip, publish or []


def _context(g: SimpleNamespace, container_id: str | None) -> Any:
    from krun.runtime.libcrun import Context

    return Context(g.root, container_id, log=g.log, log_format=g.log_format, debug=g.debug,
                   systemd_cgroup=g.systemd_cgroup)


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def load(g: SimpleNamespace, container_id: str) -> Status:
    return read_status(g.root, validate_id(container_id))


def _prepare(g: SimpleNamespace, bundle: Bundle, container_id: str, opts: CreateOptions,
             record: dict[str, Any]) -> None:
    """Let a handler and networking rewrite the config, noting in `record` (krun's own
    record of the container) what they did, so a failure can undo it."""
    record.update(runtime="krun", version=__version__, bundle=bundle.path)
    handler = handler_for_bundle(g, bundle)
    if handler is not None:
        record["handler"] = handler.name
        record.update(handler.prepare_create(bundle))
    if opts.network or opts.ip or opts.publish:
        from krun.network.setup import apply_flags

        apply_flags(bundle, opts.network, opts.ip, opts.publish)
    request = network_request(bundle.config)
    if request is not None:
        from krun.network import setup  # pyroute2 and iptables live behind this

        setup.prepare(g, bundle, container_id, request, record)


def _teardown_network(root: str, container_id: str, record: dict[str, Any] | None) -> None:
    if record and record.get("network"):
        from krun.network import setup

        setup.teardown(root, container_id, record)


def _cleanup_failed_create(g: SimpleNamespace, container_id: str, state_dir: str,
                           record: dict[str, Any]) -> None:
    """A failed create leaves nothing: no state dir, cgroup, mount, address or rule."""
    _teardown_network(g.root, container_id, record)
    if not os.path.lexists(state_dir):
        return
    import shutil

    from krun.runtime import libcrun

    try:
        libcrun.delete(_context(g, container_id), container_id, True)
    except KrunError:
        pass
    shutil.rmtree(state_dir, ignore_errors=True)


def create(g: SimpleNamespace, container_id: str, opts: CreateOptions) -> int:
    """create (the container waits for `start`) or, with opts.run, run. Returns an exit code."""
    validate_id(container_id)
    os.makedirs(g.root, mode=0o700, exist_ok=True)
    bundle = load_bundle(opts.bundle)
    pid_file, console_socket = _abs(opts.pid_file), _abs(opts.console_socket)
    claim = records.Claim(g.root, container_id)
    created = False
    record: dict[str, Any] = {}
    try:
        if os.path.lexists(claim.state_dir):
            raise KrunError(f'container "{container_id}" already exists')
        _prepare(g, bundle, container_id, opts, record)
        claim.write(record)

        from krun.runtime import libcrun

        ctx = _context(g, container_id)
        preserve_fds = opts.preserve_fds
        listen_fds = os.environ.get("LISTEN_FDS")
        if listen_fds and listen_fds.isdigit():
            ctx.set(listen_fds=int(listen_fds))
            preserve_fds += int(listen_fds)
        ctx.set(bundle=bundle.path, pid_file=pid_file, console_socket=console_socket,
                preserve_fds=preserve_fds, no_pivot=opts.no_pivot,
                no_new_keyring=opts.no_new_keyring, detach=opts.detach)
        # libcrun resolves the rootfs and relative paths against the cwd.
        os.chdir(bundle.path)
        if bundle.modified:
            container = libcrun.Container.from_json(bundle.config_json())
        else:
            container = libcrun.Container.from_file(bundle.config_path)
        if not opts.run:
            libcrun.create(ctx, container)
            created = True
            return 0
        status = libcrun.run(ctx, container)
        # A foreground run has been deleted by libcrun once it returns.
        created = opts.detach
        return status
    finally:
        if not created:
            _cleanup_failed_create(g, container_id, claim.state_dir, record)
        claim.release(keep=created)


def start(g: SimpleNamespace, container_id: str) -> None:
    st = load(g, container_id)
    if st.status != "created":
        raise KrunError(f'cannot start container "{container_id}" in state "{st.status}": '
                        "only a created container can be started")
    if not os.environ.get("NOTIFY_SOCKET") and not container_config(st).get(
            "hooks", {}).get("poststart"):
        _release_exec_fifo(st)
        return
    # sd_notify relaying and poststart hooks: libcrun's start does those.
    from krun.runtime import libcrun

    libcrun.start(_context(g, container_id), container_id)


def _release_exec_fifo(st: Status) -> None:
    """libcrun's start protocol without loading libcrun (engines call start once per
    container): open the exec fifo for writing, unlink it, write one byte. Non-blocking
    open, so an init that died since `create` is an error rather than a hang."""
    fifo = os.path.join(st.state_dir, "exec.fifo")
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KrunError(f'container "{st.id}" was started already') from None
    except OSError as e:  # ENXIO: no reader, the init is gone
        raise KrunError(f'container "{st.id}" is not running: {e.strerror.lower()}') from None
    try:
        os.unlink(fifo)
        os.set_blocking(fd, True)
        os.write(fd, b"\0")
    finally:
        os.close(fd)


def delete(g: SimpleNamespace, container_id: str, force: bool) -> None:
    validate_id(container_id)
    try:
        st = read_status(g.root, container_id)
    except ContainerNotFound:
        _teardown_network(g.root, container_id, records.read_record(g.root, container_id))
        records.remove_record(g.root, container_id)
        if force:
            return
        raise
    if st.status != "stopped" and not force:
        # The spec: deleting a container that is not stopped MUST fail (crun and runc
        # remove a `created` one). Engines delete created containers with --force.
        raise KrunError(f'cannot delete container "{container_id}" that is not stopped: '
                        f"{st.status} (use --force)")
    from krun.runtime import libcrun

    libcrun.delete(_context(g, container_id), container_id, force)
    _teardown_network(g.root, container_id, st.extra)
    records.remove_record(g.root, container_id)


def kill(g: SimpleNamespace, container_id: str, signum: int, all_processes: bool) -> None:
    st = load(g, container_id)
    if st.status == "stopped" and not all_processes:
        raise KrunError(f'container "{container_id}" is not running')
    if not all_processes:
        _signal_init(st, signum)
        return
    # Every process of the container: libcrun walks (and freezes) the cgroup.
    from krun.runtime import libcrun

    libcrun.killall(_context(g, container_id), container_id, signum)


def _signal_init(st: Status, signum: int) -> None:
    """libcrun's kill of the init without loading libcrun: a pidfd pins the process, and
    its start time proves it is still the container's init, not a reused pid."""
    import signal

    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        raise KrunError(f'container "{st.id}" is not running') from None
    try:
        if not is_alive(st.pid, st.start_time):
            raise KrunError(f'container "{st.id}" is not running')
        signal.pidfd_send_signal(pidfd, signum)
    finally:
        os.close(pidfd)


def pause(g: SimpleNamespace, container_id: str) -> None:
    st = load(g, container_id)
    if st.status != "running":
        raise KrunError(f'container "{container_id}" is not running: {st.status}')
    from krun.runtime import libcrun

    libcrun.pause(_context(g, container_id), container_id)


def resume(g: SimpleNamespace, container_id: str) -> None:
    st = load(g, container_id)
    if st.status != "paused":
        raise KrunError(f'container "{container_id}" is not paused: {st.status}')
    from krun.runtime import libcrun

    libcrun.resume(_context(g, container_id), container_id)


def update(g: SimpleNamespace, container_id: str, resources: dict[str, Any]) -> None:
    st = load(g, container_id)
    if st.status == "stopped":
        raise KrunError(f'container "{container_id}" is not running')
    from krun.runtime import libcrun

    libcrun.update(_context(g, container_id), container_id, json.dumps(resources).encode())


def pids(g: SimpleNamespace, container_id: str) -> list[int]:
    st = load(g, container_id)
    if st.status == "stopped":
        return []
    from krun.runtime import libcrun

    return libcrun.read_pids(_context(g, container_id), container_id)


class ExecOptions:
    def __init__(self, process: dict[str, Any], pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0,
                 detach: bool = False) -> None:
        self.process, self.pid_file, self.console_socket = process, pid_file, console_socket
        self.preserve_fds, self.detach = preserve_fds, detach


def container_config(st: Status) -> dict[str, Any]:
    """The config libcrun recorded at create (after any handler rewrite)."""
    try:
        with open(os.path.join(st.state_dir, "config.json"), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise KrunError(f'container "{st.id}": cannot read its config: {e}') from None


def exec_process(g: SimpleNamespace, st: Status, opts: ExecOptions) -> int:
    container_id = st.id
    if st.status in ("stopped", "paused"):
        raise KrunError(f'cannot exec in a {st.status} container "{container_id}"')
    process = opts.process
    check_process(process, "process")
    handler = handler_by_name(g, st.extra.get("handler"))
    if handler is not None:
        process = handler.prepare_exec(st.extra, process, st.rootfs)
    from krun.runtime import libcrun

    ctx = _context(g, container_id)
    ctx.set(pid_file=_abs(opts.pid_file), console_socket=_abs(opts.console_socket),
            preserve_fds=opts.preserve_fds, detach=opts.detach)
    return libcrun.exec_process(ctx, container_id, json.dumps(process))
