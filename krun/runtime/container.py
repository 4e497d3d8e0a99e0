"""Container lifecycle: krun's checks and records around libcrun's operations.

Every entry point validates the id before touching the disk, checks the container's
state in Python (so errors read like runc's), then performs exactly one libcrun
operation. `krun.runtime.libcrun` is imported only here, inside the operations that
need it, so `state` and `list` never load the binding.

Create goes through one seam (krun.runtime.handlers) for everything that rewrites a
config, and one undo path: each thing made is journaled first (krun.runtime.records),
and a failed create, `delete` and `delete --force` all undo exactly the journal.
"""

from __future__ import annotations

import os

from krun import __version__, log
from krun import fastjson as json
from krun.errors import (
    ContainerNotFound,
    KrunError,
    LibcrunError,
    PathError,
    path_error,
    strerror,
)
from krun.runtime import records
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
                 publish: list[str] | None = None, config: str | None = None,
                 keep: bool = False) -> None:
        self.bundle, self.pid_file, self.console_socket = bundle, pid_file, console_socket
        self.preserve_fds, self.no_pivot = preserve_fds, no_pivot
        self.no_new_keyring = no_new_keyring
        self.detach, self.run = detach, run
        self.network, self.ip, self.publish = network, ip, publish or []
        # crun's --config (relative to the bundle); runc's run --keep.
        self.config, self.keep = config, keep


def cgroup_manager(g: SimpleNamespace) -> str:
    """crun's --cgroup-manager; runc's --systemd-cgroup is `systemd`."""
    manager = getattr(g, "cgroup_manager", None)
    return manager or ("systemd" if g.systemd_cgroup else "cgroupfs")


def _context(g: SimpleNamespace, container_id: str | None) -> Any:
    from krun.runtime.libcrun import Context

    manager = cgroup_manager(g)
    ctx = Context(g.root, container_id, log=g.log, log_format=g.log_format, debug=g.debug,
                  systemd_cgroup=manager == "systemd")
    if manager == "disabled":
        ctx.set(force_no_cgroup=True)
    return ctx


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def load(g: SimpleNamespace, container_id: str) -> Status:
    return read_status(g.root, validate_id(container_id))


def ensure_root(root: str) -> None:
    """The state root, created root-only if missing; anything else there is an error."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except FileExistsError:
        raise KrunError(f"--root {root}: not a directory") from None
    except OSError as e:
        raise path_error("mkdir", e) from None  # names the directory that failed
    if not os.path.isdir(root):
        raise KrunError(f"--root {root}: not a directory")


LIBCRUN_STATE = "libcrun"  # the journal owner of libcrun's part: state dir, cgroup, init


def _undo_libcrun_state(g: SimpleNamespace, container_id: str, step: dict[str, Any],
                        force: bool = True, stopped: bool = False) -> list[str]:
    """Remove libcrun's part of a container: through libcrun while its status file
    exists, then by hand whatever a crash kept libcrun from recording (processes by
    cgroup, the cgroup in every hierarchy, the state dir). A `stopped` container that
    needs nothing only libcrun does is removed by hand alone (see _by_hand)."""
    from krun.runtime import cleanup

    state_dir = os.path.join(g.root, container_id)
    cgroups = [step.get("cgroup"), cleanup.status_cgroup(state_dir)]
    if stopped and _by_hand(state_dir):
        log.debug(f"delete {container_id}: stopped, cgroupfs, no poststop hook: "
                  "removed without libcrun")
    elif os.path.isfile(os.path.join(state_dir, "status")):
        from krun.runtime import libcrun

        try:
            libcrun.delete(_context(g, container_id), container_id, force)
        except KrunError:
            if not force:
                raise
    elif os.path.lexists(state_dir) and not step.get("cgroup"):
        cgroups.append(cleanup.state_dir_cgroup(state_dir, container_id))
    left: list[str] = []
    existed = step.get("cgroup_existed")
    keep = [d for d in existed if isinstance(d, str)] if isinstance(existed, list) else []
    for path in dict.fromkeys(c for c in cgroups if c):
        left += cleanup.remove_cgroup(path, keep=keep)
    if step.get("host_rootfs"):
        premounted = step.get("premounted")
        left += cleanup.unmount_new(step["host_rootfs"],
                                    premounted if isinstance(premounted, list) else [])
    cleanup.remove_state_dir(state_dir)
    if os.path.lexists(state_dir):
        left.append(f"state dir {state_dir}")
    return left


def _by_hand(state_dir: str) -> bool:
    """Whether libcrun's delete of this stopped container would do nothing but what
    the by-hand removal does (empty and remove its cgroup in every hierarchy, remove
    the state dir), so the binding need not load (~4 ms of a docker run's delete).
    libcrun 1.8.1's delete also stops a systemd scope and runs poststop hooks: a
    container with either, or whose files do not read cleanly, goes through libcrun."""
    try:
        with open(os.path.join(state_dir, "status"), "rb") as f:
            status = json.loads(f.read(1 << 20))
        with open(os.path.join(state_dir, "config.json"), "rb") as f:
            config = json.loads(f.read(16 << 20))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(status, dict) or status.get("systemd-cgroup") is not False or \
            not isinstance(config, dict):
        return False
    hooks = config.get("hooks")
    return hooks is None or (isinstance(hooks, dict) and not hooks.get("poststop"))


def _undo(g: SimpleNamespace, container_id: str, steps: list[dict[str, Any]],
          force: bool = True, stopped: bool = False) -> list[str]:
    """Undo journaled steps, last made first. Returns what could not be removed."""
    left: list[str] = []
    for step in reversed(steps):
        by = step.get("by")
        log.debug(f"undo {container_id}: {step.get('step')} made by {by}")
        try:
            if by == LIBCRUN_STATE:
                left += _undo_libcrun_state(g, container_id, step, force, stopped)
                continue
            from krun.runtime.handlers import handler_by_name

            handler = handler_by_name(g, by)
            if handler is not None:
                handler.undo(g.root, container_id, step)
        except KrunError as e:
            if by == LIBCRUN_STATE and not force:
                raise
            left.append(e.msg)
        except OSError as e:
            left.append(f"{step.get('step')}: {strerror(e.errno or 0)}")
        except Exception as e:  # a netlink or iptables failure must not stop the rest
            left.append(f"{step.get('step')}: {e}")
    return left


def create(g: SimpleNamespace, container_id: str, opts: CreateOptions) -> int:
    """create (the container waits for `start`) or, with opts.run, run. Returns an exit code.

    Everything it makes is journaled first (krun.runtime.records); if it fails, or a
    foreground run ends, it undoes exactly that journal and nothing else: a duplicate
    create touches nothing of the container that holds the id.
    """
    validate_id(container_id)
    ensure_root(g.root)
    # Imported here, not above: start, delete, kill and state never need them.
    from krun.runtime.bundle import load_bundle
    from krun.runtime.handlers import CreatePlan, handlers_for_create

    bundle = load_bundle(opts.bundle, opts.config)
    pid_file, console_socket = _abs(opts.pid_file), _abs(opts.console_socket)
    journal = records.Journal.claim(g.root, container_id)
    keep = False
    try:
        journal.facts(runtime="krun", version=__version__, bundle=bundle.path)
        handlers = handlers_for_create(g, bundle, opts)
        plan = CreatePlan(g, bundle, container_id, journal, opts)
        if handlers:
            journal.facts(handlers=[h.name for h in handlers])
        log.debug(f"create {container_id}: bundle {bundle.path}, config {bundle.config_path}, "
                  f"handlers {[h.name for h in handlers]}, cgroup manager {cgroup_manager(g)}")
        for handler in handlers:
            handler.prepare_create(plan)

        from krun.runtime import libcrun

        ctx = _context(g, container_id)
        preserve_fds = opts.preserve_fds
        listen_fds = os.environ.get("LISTEN_FDS")
        if listen_fds and listen_fds.isdigit():
            ctx.set(listen_fds=int(listen_fds))
            preserve_fds += int(listen_fds)
        ctx.set(bundle=bundle.path, pid_file=pid_file, console_socket=console_socket,
                preserve_fds=preserve_fds, no_pivot=opts.no_pivot,
                no_new_keyring=opts.no_new_keyring, detach=opts.detach,
                keep_stopped=opts.keep)
        ctx.execute(plan.exec_fd, plan.exec_pin, preserve_fds)
        # libcrun resolves the rootfs and relative paths against the cwd.
        os.chdir(bundle.path)
        if bundle.modified:
            container = libcrun.Container.from_json(bundle.config_json())
        else:
            container = libcrun.Container.from_file(bundle.config_path)
        from krun.runtime import cleanup

        state: dict[str, Any] = {"cgroup": None if cgroup_manager(g) != "cgroupfs"
                                 else cleanup.predicted_cgroup(bundle.config, container_id)}
        existed = cleanup.existing_cgroup_dirs(state["cgroup"])
        if existed:  # the user's cgroup (cgroupsPath): undo must not thaw or remove it
            state["cgroup_existed"] = existed
        if cleanup.shares_host_mounts(bundle.config):
            rootfs = os.path.realpath(bundle.rootfs)
            state.update(host_rootfs=rootfs,
                         premounted=[i for i, _ in cleanup.mounts_below(rootfs)])
        step = journal.step("state", LIBCRUN_STATE, **state)
        try:
            log.debug(f"libcrun {'run' if opts.run and not opts.detach else 'create'} "
                      f"{container_id}" + (f" (exec fd {plan.exec_fd})" if plan.exec_fd
                                            else f" (exec pin {plan.exec_pin})"
                                            if plan.exec_pin else ""))
            if opts.run and not opts.detach:
                # libcrun deletes a foreground run's container when it returns (unless
                # --keep); the finally below undoes the rest.
                status = libcrun.run(ctx, container)
                keep = opts.keep
                return status
            libcrun.create(ctx, container)
        except LibcrunError as e:
            if "already exists" in e.message:
                journal.cancel(step)  # another runtime's state dir: not ours to remove
            raise
        if opts.run:
            # `run -d` is create + start in this process, not libcrun's detached run:
            # that forks a child which goes on creating the container after a SIGKILL
            # of krun, unseen by the create lock, so delete --force could not wait for it.
            _start(g, read_status(g.root, container_id), ctx)
        keep = True
        return 0
    finally:
        left: list[str] = []
        if not keep:
            log.debug(f"create {container_id} failed or ended: undoing its journal")
            left = _undo(g, container_id, journal.read()["steps"])
            for what in left:
                log.warning(f"could not remove {what}")
        # What could not be removed stays journaled, for delete --force to finish.
        journal.release(keep=keep or bool(left))


def start(g: SimpleNamespace, container_id: str) -> None:
    st = load(g, container_id)
    if st.status != "created":
        raise KrunError(f'cannot start container "{container_id}" in state "{st.status}": '
                        "only a created container can be started")
    _start(g, st, None)


def _start(g: SimpleNamespace, st: Status, ctx: Any) -> None:
    if not os.environ.get("NOTIFY_SOCKET") and not container_config(st).get(
            "hooks", {}).get("poststart"):
        log.debug(f"start {st.id}: releasing the exec fifo (no libcrun needed)")
        _release_exec_fifo(st)
        return
    # sd_notify relaying and poststart hooks: libcrun's start does those.
    from krun.runtime import libcrun

    log.debug(f"start {st.id}: through libcrun (sd_notify or poststart hooks)")
    libcrun.start(ctx or _context(g, st.id), st.id)


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
    """Remove a container: exactly what its journal says create made. With --force,
    also whatever a crash left of it (a state dir without a status file, cgroups,
    processes); an id nothing is known of is not an error then (docker relies on that)."""
    validate_id(container_id)
    records.wait_for_create(g.root, container_id)
    record = records.read_record(g.root, container_id)
    state_dir = os.path.join(g.root, container_id)
    try:
        st: Status | None = read_status(g.root, container_id)
    except ContainerNotFound:
        st = None
    except PathError:
        raise  # a state krun may not read is not a crash's leftover: nothing to remove
    except KrunError:
        if not force:
            raise
        st = None  # a corrupt status file: --force removes it with the rest
    if st is None and not force:
        raise ContainerNotFound(container_id)
    if st is not None and st.status != "stopped" and not force:
        # The spec: deleting a container that is not stopped MUST fail (crun and runc
        # remove a `created` one). Engines delete created containers with --force.
        raise KrunError(f'cannot delete container "{container_id}" that is not stopped: '
                        f"{st.status} (use --force)")
    if record is None and not os.path.lexists(state_dir):
        return
    steps = list(record["steps"]) if record else []
    if not any(s.get("by") == LIBCRUN_STATE for s in steps):
        # A state dir krun's journal does not know (a crash before the step was
        # written, or a bare dir): crun removes it too.
        steps.append({"step": "state", "by": LIBCRUN_STATE})
    left = _undo(g, container_id, steps, force=force,
                 stopped=st is not None and st.status == "stopped")
    if left:
        raise KrunError(f'container "{container_id}": could not remove '
                        + "; ".join(left))
    records.remove_record(g.root, container_id)


def kill(g: SimpleNamespace, container_id: str, signum: int, all_processes: bool) -> None:
    st = load(g, container_id)
    if st.status == "stopped" and not all_processes:
        raise KrunError(f'container "{container_id}" is not running')
    log.debug(f"kill {container_id}: signal {signum} to "
              + ("its init" if not all_processes or signum == 0 else "every process"))
    if not all_processes or signum == 0:
        # Signal 0 sends nothing: the init alive means the container is running.
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
                 detach: bool = False, cgroup: str | None = None,
                 ignore_paused: bool = False) -> None:
        self.process, self.pid_file, self.console_socket = process, pid_file, console_socket
        self.preserve_fds, self.detach = preserve_fds, detach
        self.cgroup, self.ignore_paused = cgroup, ignore_paused


def container_config(st: Status) -> dict[str, Any]:
    """The config libcrun recorded at create (after any handler rewrite)."""
    try:
        with open(os.path.join(st.state_dir, "config.json"), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise KrunError(f'container "{st.id}": cannot read its config: {e}') from None


def exec_process(g: SimpleNamespace, st: Status, opts: ExecOptions) -> int:
    container_id = st.id
    if st.status == "stopped":
        raise KrunError(f'cannot exec in a stopped container "{container_id}"')
    if st.status == "paused" and not opts.ignore_paused:
        raise KrunError(f'cannot exec in a paused container "{container_id}" '
                        "(use --ignore-paused to override)")
    process = opts.process
    from krun.runtime.bundle import check_process
    from krun.runtime.handlers import ExecPlan, handler_by_name

    check_process(process, "process")
    names = st.extra.get("handlers") or []
    plan = ExecPlan(g, st, process, f"/proc/{st.pid}/root")
    for name in names if isinstance(names, list) else []:
        handler = handler_by_name(g, name)
        if handler is not None:
            handler.prepare_exec(plan)
    if names and not is_alive(st.pid, st.start_time):
        # The view was the init's: a pid reused since then would be another process's.
        raise KrunError(f'container "{container_id}" is not running')
    from krun.runtime import libcrun

    ctx = _context(g, container_id)
    ctx.set(pid_file=_abs(opts.pid_file), console_socket=_abs(opts.console_socket),
            preserve_fds=opts.preserve_fds, detach=opts.detach,
            exec_ignore_paused=opts.ignore_paused)
    ctx.execute(plan.exec_fd, plan.exec_pin, opts.preserve_fds)
    log.debug(f"exec {container_id}: {process.get('args')}"
              + (f" (exec fd {plan.exec_fd})" if plan.exec_fd else "")
              + (f" in sub-cgroup {opts.cgroup}" if opts.cgroup else ""))
    status = libcrun.exec_process(ctx, container_id, json.dumps(process), opts.cgroup)
    if status and plan.failure_note and not opts.detach:
        log.warning(plan.failure_note.format(status=f"exit status {status}"))
    return status

