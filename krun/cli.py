"""krun's command line: one table of commands and options, two parsers over it.

The fast parser below handles every well-formed call without importing click, whose
import alone (35-40 ms here) costs more than a whole `runc run`. click, built from the
same table in `krun.cli_click`, takes over for --help and for anything the fast parser
does not accept, so it words every usage error. One table means the two cannot drift.
"""

from __future__ import annotations

import os
import sys

# types.SimpleNamespace without importing `types` (~0.3 ms, paid by every command).
SimpleNamespace = type(sys.implementation)

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


FLAG, VALUE, INT, MULTI = "flag", "value", "int", "multi"


class Opt:
    __slots__ = ("choices", "default", "dest", "help", "kind", "long", "maximum", "short")

    def __init__(self, long: str, short: str | None = None, kind: str = FLAG,
                 default: Any = None, help: str = "", choices: tuple[str, ...] = (),
                 maximum: Callable[[], tuple[int, str]] | None = None) -> None:
        self.long, self.short, self.kind, self.default = long, short, kind, default
        self.help, self.choices = help, choices
        # INT options are never negative; `maximum` gives the upper bound and its reason.
        self.maximum = maximum
        self.dest = long.lstrip("-").replace("-", "_")

    def initial(self) -> Any:
        if self.kind == MULTI:
            return []
        if self.kind == FLAG:
            return bool(self.default)
        return self.default

    def int_error(self, value: int, text: str = "") -> str | None:
        """Why an INT value (given as `text`) is refused, as both parsers word it; None
        when it is fine."""
        if value < 0:
            return f"{text or value} is negative"
        if self.maximum is not None and value > 0:
            limit, why = self.maximum()
            if value > limit:
                return f"{text or value} is more than {limit} ({why})"
        return None


class Arg:
    __slots__ = ("name", "required")

    def __init__(self, name: str, required: bool = True) -> None:
        self.name, self.required = name, required


# Plain classes, not dataclasses: importing dataclasses costs ~20 ms (inspect, re, enum),
# more than krun's whole budget for `state`.
class Cmd:
    __slots__ = ("args", "help", "module_name", "name", "opts", "rest")

    def __init__(self, name: str, help: str, opts: tuple[Opt, ...] = (),
                 args: tuple[Arg, ...] = (Arg("container_id"),), rest: str | None = None,
                 module: str = "") -> None:
        self.name, self.help, self.opts, self.args = name, help, opts, args
        # Trailing free arguments (exec's command): option parsing stops once the fixed
        # arguments are filled, as in runc, so `exec ID sh -c x` keeps its `-c`.
        self.rest = rest
        self.module_name = module or name


def _fd_limit() -> tuple[int, str]:
    # fds 3..N+2 are passed on: each must fit under the open-file soft limit.
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (1 << 31 if soft == resource.RLIM_INFINITY else max(soft - 3, 0)), \
        "the open-file soft limit less stdin, stdout and stderr"


_PID_FILE = Opt("--pid-file", kind=VALUE, help="write the container process id to this file")
_CONSOLE = Opt("--console-socket", kind=VALUE,
               help="path to an AF_UNIX socket that receives the pty master fd")
_PRESERVE = Opt("--preserve-fds", kind=INT, default=0, maximum=_fd_limit,
                help="pass N additional fds to the container")
_BUNDLE = Opt("--bundle", "-b", kind=VALUE, default=".", help="path to the OCI bundle")
_CREATE_OPTS = (
    _BUNDLE, _CONSOLE, _PID_FILE, _PRESERVE,
    Opt("--config", "-f", kind=VALUE, help="the config file (default: BUNDLE/config.json)"),
    Opt("--no-subreaper", help="accepted for runc and crun; krun's init needs no subreaper"),
    Opt("--no-pivot", help="do not use pivot_root (for ramfs roots)"),
    Opt("--no-new-keyring", help="do not create a new session keyring"),
    Opt("--network", kind=VALUE, choices=("none", "host", "bridge"),
        help="krun networking: none (default), host, or bridge on krun0"),
    Opt("--ip", kind=VALUE, help="with bridge: a static address on krun0"),
    Opt("--publish", "-p", kind=MULTI, help="with bridge: HOST_PORT:CONTAINER_PORT[/tcp|udp]"),
)

# CRIU's knobs, which runc and crun take and engines pass (podman: --file-locks,
# --tcp-established, --manage-cgroups-mode); a KM snapshot has nothing they apply to.
_CRIU_OPTS = tuple(Opt(name, kind=kind, help="accepted for runc (CRIU's); no effect on a "
                                             "KM snapshot")
                   for name, kind in (("--tcp-established", FLAG), ("--ext-unix-sk", FLAG),
                                      ("--shell-job", FLAG), ("--file-locks", FLAG),
                                      ("--manage-cgroups-mode", VALUE), ("--empty-ns", MULTI),
                                      ("--auto-dedup", FLAG), ("--lazy-pages", FLAG),
                                      ("--tcp-close", FLAG), ("--link-remap", FLAG)))


def _default_root() -> str:
    """runc's rule: a non-root user's state lives in $XDG_RUNTIME_DIR (a private tmpfs
    the login made), root's in /run. Root of a user namespace that a user made is that
    user (rootless podman runs its runtime there, with no --root): /run is not its to
    write, so its state goes to the $XDG_RUNTIME_DIR it was given, unless USER says it
    is root's."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() != 0:
        return os.path.join(xdg or f"/run/user/{os.geteuid()}", "krun")
    if xdg and os.environ.get("USER") != "root" and _in_user_namespace():
        return os.path.join(xdg, "krun")
    return "/run/krun"


def _in_user_namespace() -> bool:
    """Not the initial user namespace, whose uid_map is the whole 32-bit range."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return b"4294967295" not in f.read()
    except OSError:
        return False


GLOBAL_OPTS: tuple[Opt, ...] = (
    Opt("--root", kind=VALUE, default=_default_root(),
        help="directory of krun's container state (default: /run/krun for root, else "
             "$XDG_RUNTIME_DIR/krun, as for root in a rootless user namespace)"),
    Opt("--log", kind=VALUE, help="log file (errors and warnings)"),
    Opt("--log-format", kind=VALUE, default="text", choices=("text", "json"), help="log format"),
    Opt("--debug", help="also log what krun does (debug level)"),
    Opt("--systemd-cgroup", help="use the systemd cgroup manager (--cgroup-manager systemd)"),
    Opt("--cgroup-manager", kind=VALUE, choices=("cgroupfs", "systemd", "disabled"),
        help="cgroupfs (default), systemd, or disabled: no cgroup at all"),
    Opt("--rootless", kind=VALUE, choices=("true", "false", "auto"), default="auto",
        help="ignore cgroup permission errors (true, false, auto: when not root)"),
    Opt("--criu", kind=VALUE, help="accepted for runc; this build has no CRIU"),
    Opt("--kontain", kind=VALUE, choices=("auto", "always", "never"),
        help="when to run containers under KM (default from /etc/krun/krun.toml, else auto)"),
    Opt("--version", "-v", help="print the version and exit"),
    Opt("--usage", help="print a short usage message and exit (crun)"),
)

COMMANDS: tuple[Cmd, ...] = (
    Cmd("create", "create a container from a bundle; it waits for `start`", _CREATE_OPTS),
    Cmd("start", "start a created container"),
    Cmd("run", "create and start a container", module="create", opts=
        (*_CREATE_OPTS, Opt("--detach", "-d", help="detach from the container's process"),
         Opt("--keep", help="do not delete the container after it exits"))),
    Cmd("state", "print the state of a container as JSON", module="info"),
    Cmd("kill", "send a signal to the container's init (or all its processes)",
        (Opt("--all", "-a", help="signal every process of the container"),
         Opt("--regex", "-r", help="CONTAINER_ID is a regular expression: signal every match")),
        (Arg("container_id"), Arg("signal", required=False))),
    Cmd("delete", "delete a container's resources",
        (Opt("--force", "-f", help="kill the container first if it is running or created"),
         Opt("--regex", "-r", help="CONTAINER_ID is a regular expression: delete every match"))),
    Cmd("exec", "run a process in a running container", (
        Opt("--process", "-p", kind=VALUE, help="path to a process.json"),
        _CONSOLE, _PID_FILE, _PRESERVE,
        Opt("--detach", "-d", help="detach from the process"),
        Opt("--tty", "-t", help="allocate a pseudo-TTY"),
        Opt("--cwd", kind=VALUE, help="working directory in the container"),
        Opt("--env", "-e", kind=MULTI, help="set an environment variable (repeatable)"),
        Opt("--user", "-u", kind=VALUE, help="UID[:GID] to run as"),
        Opt("--additional-gids", "-g", kind=MULTI, help="additional group id (repeatable)"),
        Opt("--cap", "-c", kind=MULTI, help="add a capability (repeatable)"),
        Opt("--no-new-privs", help="set no_new_privs for the process"),
        Opt("--process-label", kind=VALUE, help="SELinux label"),
        Opt("--apparmor", kind=VALUE, help="AppArmor profile"),
        Opt("--cgroup", kind=VALUE,
            help="run the process in an existing sub-cgroup: [CONTROLLER[,...]:]PATH"),
        Opt("--ignore-paused", help="allow exec in a paused container"),
    ), rest="command"),
    Cmd("list", "list krun's containers", (
        Opt("--format", "-f", kind=VALUE, default="table", choices=("table", "json")),
        Opt("--quiet", "-q", help="print only the ids"),
    ), args=(), module="info"),
    Cmd("ps", "list the processes of a container (table: the host's ps, with PS_OPTIONS)",
        (Opt("--format", "-f", kind=VALUE, default="table", choices=("table", "json")),),
        rest="ps_options", module="info"),
    Cmd("events", "print cgroup stats and OOM events of a container as JSON lines", (
        Opt("--stats", help="print the stats once and exit"),
        Opt("--interval", kind=VALUE, default="5s",
            help="time between stats events (a Go duration: 500ms, 5s, 1m)"),
    ), module="events"),
    Cmd("pause", "freeze every process of a container", module="pause"),
    Cmd("resume", "thaw a paused container", module="pause"),
    Cmd("update", "change a running container's resource limits", (
        Opt("--resources", "-r", kind=VALUE, help="resources JSON file, `-` for stdin"),
        Opt("--memory", kind=VALUE, help="memory limit (bytes, or 50M, 1g...)"),
        Opt("--memory-reservation", kind=VALUE, help="memory soft limit (bytes, or 50M...)"),
        Opt("--memory-swap", kind=VALUE, help="memory+swap limit (-1: unlimited swap)"),
        Opt("--kernel-memory", kind=VALUE, help="kernel memory limit (cgroup v1)"),
        Opt("--kernel-memory-tcp", kind=VALUE, help="kernel TCP buffer limit (cgroup v1)"),
        Opt("--cpu-share", kind=VALUE, help="CPU shares (relative weight)"),
        Opt("--cpu-shares", kind=VALUE, help="the same as --cpu-share"),
        Opt("--cpu-quota", kind=VALUE, help="CFS quota per period (us; -1: none)"),
        Opt("--cpu-period", kind=VALUE, help="CFS period (us)"),
        Opt("--cpu-rt-period", kind=VALUE, help="realtime period (us)"),
        Opt("--cpu-rt-runtime", kind=VALUE, help="realtime runtime per period (us)"),
        Opt("--cpuset-cpus", kind=VALUE, help="CPUs to use (0-3,5)"),
        Opt("--cpuset-mems", kind=VALUE, help="memory nodes to use"),
        Opt("--blkio-weight", kind=VALUE, help="block IO weight (10-1000)"),
        Opt("--pids-limit", kind=VALUE, help="maximum number of pids (-1: none)"),
    )),
    Cmd("spec", "write a default config.json", (
        _BUNDLE, Opt("--rootless", help="a spec for an unprivileged user"),
        Opt("--kontain", help="add the Kontain extension (run the payload under KM)"),
        Opt("--payload", kind=VALUE, help="with --kontain: the payload to run"),
    ), args=()),
    Cmd("features", "print the OCI features krun supports as JSON", args=()),
    Cmd("check", "diagnose the host: can krun run containers, and Kontain ones",
        (Opt("--format", "-f", kind=VALUE, default="text", choices=("text", "json")),),
        args=(), module="check"),
    Cmd("install", "register krun with container engines (docker, podman, containerd, CRI-O, "
        "Kubernetes)", (
        Opt("--engine", kind=VALUE, default="all",
            choices=("docker", "podman", "containerd", "crio", "kubernetes", "all"),
            help="the engine to configure (default: all that are installed)"),
        Opt("--dry-run", help="print a unified diff of every file change; change nothing"),
        Opt("--path", kind=VALUE, help="the krun binary engines run (default: this krun)"),
        Opt("--config-root", kind=VALUE, default="/", help="prefix of /etc (images, tests)"),
        Opt("--output", "-o", kind=VALUE, help="kubernetes: write the RuntimeClass here"),
    ), args=(), module="install"),
    Cmd("uninstall", "undo `krun install`", (
        Opt("--engine", kind=VALUE, default="all",
            choices=("docker", "podman", "containerd", "crio", "kubernetes", "all"),
            help="the engine to unconfigure (default: all that are installed)"),
        Opt("--dry-run", help="print a unified diff of every file change; change nothing"),
        Opt("--config-root", kind=VALUE, default="/", help="prefix of /etc (images, tests)"),
        Opt("--output", "-o", kind=VALUE, help="kubernetes: the manifest file to remove"),
    ), args=(), module="install"),
    Cmd("network-hook", "internal: the createRuntime hook that wires a bridged container",
        module="network_hook"),
    # The Kontain toolkit: each parses its own words with click (not on the runtime's hot
    # path, and `krun km` takes docker's options, not runc's).
    Cmd("payload", "build Kontain payloads (.km) from C sources (build, cc)", args=(),
        rest="argv", module="payload"),
    Cmd("image", "build a minimal OCI image around a payload (build)", args=(), rest="argv",
        module="image"),
    Cmd("km", "run a payload under KM in a throwaway container, in one line", args=(),
        rest="argv", module="km"),
    Cmd("checkpoint", "checkpoint a running Kontain container (a KM snapshot); plain "
        "containers need CRIU, which this build lacks", (
        Opt("--image-path", kind=VALUE, help="directory for the checkpoint (default: "
                                             "./checkpoint)"),
        Opt("--work-path", kind=VALUE, help="directory for logs (accepted; KM writes none)"),
        Opt("--leave-running", help="leave the container running after the checkpoint"),
        *_CRIU_OPTS,
        Opt("--pre-dump", help="CRIU's iterative pre-dump: refused for KM snapshots"),
        Opt("--parent-path", kind=VALUE, help="CRIU's pre-dump parent: refused"),
        Opt("--page-server", kind=VALUE, help="CRIU's page server: refused"),
        Opt("--status-fd", kind=VALUE, help="CRIU's status fd: refused"),
    ), module="checkpoint"),
    Cmd("restore", "restore a Kontain container from a checkpoint", (
        _BUNDLE, _CONSOLE, _PID_FILE,
        Opt("--image-path", kind=VALUE, help="the checkpoint's directory (default: "
                                             "./checkpoint)"),
        Opt("--work-path", kind=VALUE, help="directory for logs (accepted; KM writes none)"),
        Opt("--detach", "-d", help="detach from the container's process"),
        Opt("--no-subreaper", help="accepted for runc"),
        Opt("--no-pivot", help="do not use pivot_root (for ramfs roots)"),
        *_CRIU_OPTS,
        Opt("--lsm-profile", kind=VALUE, help="accepted for runc; the config's profile applies"),
        Opt("--lsm-mount-context", kind=VALUE, help="accepted for runc"),
    ), module="restore"),
)

COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}


class NeedClick(Exception):
    """The fast parser declines; click parses (and explains) instead."""


def _parse_opts(opts: tuple[Opt, ...], tokens: list[str], positional_slots: int | None,
                stop_at_rest: bool) -> tuple[dict[str, Any], list[str]]:
    by_long = {o.long: o for o in opts}
    by_short = {o.short: o for o in opts if o.short}
    values = {o.dest: o.initial() for o in opts}
    positionals: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if stop_at_rest and positional_slots is not None and len(positionals) >= positional_slots:
            positionals.extend(tokens[i - 1:])
            break
        if tok == "--":
            positionals.extend(tokens[i:])
            break
        if tok.startswith("--"):
            name, eq, inline = tok.partition("=")
            opt = by_long.get(name)
        elif tok.startswith("-") and len(tok) > 2 and "-" + tok.partition("=")[0] in by_long:
            # Go's flag syntax, which runc accepts: containerd's shim passes
            # `restore -no-subreaper`.
            name, eq, inline = ("-" + tok).partition("=")
            opt = by_long[name]
        elif tok.startswith("-") and len(tok) > 1:
            opt, eq, inline = by_short.get(tok[:2]), "", ""
            if len(tok) > 2:
                if opt is None or opt.kind == FLAG:
                    raise NeedClick  # bundled short flags: leave to click
                eq, inline = "=", tok[2:]
        else:
            if positional_slots is None:  # the global parser: this is the command name
                positionals.extend(tokens[i - 1:])
                break
            positionals.append(tok)
            continue
        if opt is None:
            raise NeedClick
        if opt.kind == FLAG:
            if eq:
                raise NeedClick
            values[opt.dest] = True
            continue
        if not eq:
            if i >= len(tokens):
                raise NeedClick
            inline = tokens[i]
            i += 1
        if opt.choices and inline not in opt.choices:
            raise NeedClick
        if opt.kind == INT:
            # Decimal digits only: int() would take " 1", "+1" and "1_0" too.
            if not (inline.isascii() and inline.isdigit() and len(inline) <= 18):
                raise NeedClick
            values[opt.dest] = int(inline)
            if opt.int_error(values[opt.dest]):
                raise NeedClick
        elif opt.kind == MULTI:
            values[opt.dest].append(inline)
        else:
            values[opt.dest] = inline
    return values, positionals


def parse(argv: list[str]) -> tuple[SimpleNamespace, Cmd, SimpleNamespace]:
    """Parse argv (without the program name) into (globals, command, command options)."""
    gvalues, rest = _parse_opts(GLOBAL_OPTS, argv, None, False)
    g = SimpleNamespace(**gvalues)
    if g.version or g.usage:
        return g, Cmd("version" if g.version else "usage", "", args=()), SimpleNamespace()
    if not rest or rest[0] not in COMMANDS_BY_NAME:
        raise NeedClick
    cmd = COMMANDS_BY_NAME[rest[0]]
    values, positionals = _parse_opts(cmd.opts, rest[1:], len(cmd.args), cmd.rest is not None)
    fixed = cmd.args
    required = sum(1 for a in fixed if a.required)
    if len(positionals) < required or (len(positionals) > len(fixed) and cmd.rest is None):
        raise NeedClick
    for a, value in zip(fixed, [*positionals, *[None] * len(fixed)][: len(fixed)], strict=True):
        values[a.name] = value
    if cmd.rest:
        values[cmd.rest] = positionals[len(fixed):]
    return g, cmd, SimpleNamespace(**values)


def _last_resort(e: BaseException) -> str:
    """One line for an exception no krun layer turned into a KrunError."""
    if isinstance(e, OSError):
        from krun.errors import strerror

        text = strerror(e.errno) if e.errno else (e.strerror or "input/output error")
        # A filename may be an fd number: naming that would only confuse.
        names = [n for n in (e.filename, e.filename2) if isinstance(n, str)]
        return f"{' -> '.join(names)}: {text}" if names else text
    if isinstance(e, RecursionError):
        return "input nested too deeply"
    if isinstance(e, MemoryError):
        return "out of memory"
    return f"internal error: {type(e).__name__}: {e}"


def dispatch(g: SimpleNamespace, cmd: Cmd, opts: SimpleNamespace) -> int:
    """Run one command; returns its exit code. Errors are logged, never raised."""
    from krun import log
    from krun.errors import KrunError

    log.configure(g.log, g.log_format, g.debug)
    if g.debug:
        log.debug(f"krun {cmd.name}: root {g.root}, options {vars(opts)}")
    try:
        if cmd.name in ("version", "usage"):
            from krun.commands import version

            code = version.main(g, opts) if cmd.name == "version" else version.usage()
        else:
            module = __import__(f"krun.commands.{cmd.module_name}", fromlist=["main"])
            code = int(module.main(g, cmd.name, opts) or 0)
    except KrunError as e:
        if e.msg:
            log.error(e.msg)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if g.debug:
            import traceback

            for line in traceback.format_exc().splitlines():  # one log entry per line
                log.debug(line)
        log.error(_last_resort(e))
        return 1
    try:
        # Output that cannot be written (stdout on a full disk) is a failure, as in runc.
        sys.stdout.flush()
    except BrokenPipeError:
        return 141  # what a Go runtime's SIGPIPE death looks like to a shell
    except OSError as e:
        log.error(f"write /dev/stdout: {_last_resort(e)}")
        return 1
    return code


def _exit(code: int) -> None:
    # Skip interpreter teardown (a few ms of GC and atexit work nobody needs).
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        binding = sys.modules.get("krun.runtime._libcrun")
        if binding is not None:
            binding.lib.krun_flush_stdio()  # libcrun's --log FILE is a C stream
    finally:
        os._exit(code)


CLONED_ENV = "_LIBCONTAINER_CLONED_BINARY"  # libcrun's mark on a re-executed copy


def _guard_first() -> None:
    """libcrun's CVE-2019-5736 guard is the binding's constructor: on a writable
    interpreter it re-executes the whole process from a sealed copy when the binding
    first loads. That must happen before krun has done anything (claimed an id, written
    a record), or the copy would meet the original's work and fail on it. On a read-only
    interpreter (what the installer arranges) the guard does nothing: one statvfs."""
    if CLONED_ENV in os.environ:
        return
    try:
        readonly = os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY
    except OSError:
        readonly = 0
    if not readonly:
        try:
            import krun.runtime._libcrun  # noqa: F401
        except ImportError:
            pass  # reported, as one line, by the command that needs it


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    _guard_first()
    try:
        g, cmd, opts = parse(args)
    except NeedClick:
        from krun.cli_click import run_click

        _exit(run_click(args))
    _exit(dispatch(g, cmd, opts))
