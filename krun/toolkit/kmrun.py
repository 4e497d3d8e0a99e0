"""`krun km PAYLOAD [ARGS...]`: run a payload the way `km` does, isolated the way
`docker run --rm` does, in one line.

Design:

* **One code path with `krun run`.** krun km writes a throwaway bundle and hands it to
  `krun.runtime.container.create` (the function behind `krun run`), so the container
  gets exactly what any Kontain container gets: namespaces, cgroups, KM bind-mounted
  read-only, /dev/kvm, krun-init, krun's networking, the journal.
* **A supervisor and a runner** (kmsupervisor). The krun km process forks; the child (the runner) is
  `krun run`: it makes the container through libcrun, waits for it in the foreground
  and undoes its journal when it ends. The parent (the supervisor) relays the terminal
  and stdin, and removes whatever is left if the runner dies (`delete --force` of the
  id, only when the record is this run's: its bundle is ours). It delivers SIGINT,
  SIGTERM, SIGHUP and SIGQUIT itself, to krun-init, once krun-init can take them; not
  through the runner, whose libcrun would pass them at once to an init that may still
  be libcrun's own code, which drops them (pid 1 of a namespace). Before a detached
  container runs, a signal ends the run; a second signal kills the container.
* **The bundle is a host resource like any other.** It lives at
  `<root>/.krun/km/<id>/` (`.krun` is krun's private directory; ids never start with a
  dot) with a marker naming its id, and the create journals it first (the `km`
  handler, kmbundle.KmBundleHandler), so it is removed last, by the same undo that
  removes the cgroup, the state and the network: at the end of a foreground run, by
  `krun delete [-f] ID` after `-d`, and by `delete --force` after a crash. A bundle
  whose creator died before the journal existed is collected by the next krun km.
* **Rootfs.** Default: a fresh directory holding the payload (as /NAME) and an empty
  /tmp. `--rootfs DIR` is copied, not bind-mounted: libcrun creates mount points
  (/proc, /dev, /sys, -v targets, -w) inside a rootfs, which would write into the
  user's directory, and a host mount under the bundle would have to be unmounted
  before the bundle could be removed. The copy is private and writable, like a
  docker container's layer. `--image FILE.tar` is unpacked by krun.toolkit.image_unpack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


KM_BUNDLES = "km"           # <root>/.krun/km/<id>
MARKER = ".krun-km"         # in each bundle: {"id", "pid", "start"} of the krun km that made it
OUTPUT = "output.log"       # a detached container's stdout and stderr
STALE_EMPTY_SECONDS = 60    # an empty bundle dir this old was left by a killed krun km
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000        # docker's --cpus: quota = cpus * period
MIN_MEMORY = 6 << 20        # docker's minimum --memory
# Container paths a volume may not be at, above or below: the container's own /proc,
# /sys and /dev, KM's read-only bind mount and the debug directory. A volume above one
# of them would have libcrun create that mount point in the host directory.
RESERVED = ("/proc", "/sys", "/dev", "/opt/kontain/bin/km", "/run/kontain-debug")


class KmError(KrunError):
    """krun km could not run the container: docker's 125."""

    exit_code = 125


class PayloadNotFound(KrunError):
    """The payload does not exist: docker's 127 ("command not found")."""

    exit_code = 127


class PayloadRefused(KrunError):
    """The payload exists but cannot run under KM: docker's 126."""

    exit_code = 126


class BadOption(ValueError):
    """A malformed option value; the CLI turns it into a usage error naming the option."""


class Interrupted(KeyboardInterrupt):
    """A signal ended krun km before the container ran: it exits as if killed by it.
    Not a KrunError (nor an Exception): no handler on the way may take it for a failure
    of the step it interrupted."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------- option values


def parse_memory(text: str) -> int:
    """docker's --memory: bytes, or a number with b, k, m, g (binary multiples)."""
    from krun.commands.update import parse_size  # runc's and docker's notation, one parser

    value = parse_size(text.strip())
    if value is None:
        raise BadOption(f"{text!r} is not a size (bytes, or a number with b, k, m or g: "
                        "64m, 1g)")
    if value < MIN_MEMORY:
        raise BadOption(f"{text!r} is below the minimum of 6m")
    if value >= 1 << 63:
        raise BadOption(f"{text!r} is too large")
    return value


def parse_cpus(text: str) -> int:
    """docker's --cpus: a number of CPUs (1.5) -> the CFS quota per CPU_PERIOD."""
    from decimal import Decimal, InvalidOperation

    try:
        cpus = Decimal(text.strip())
    except InvalidOperation:
        raise BadOption(f"{text!r} is not a number") from None
    available = os.cpu_count() or 1
    if not cpus.is_finite() or cpus < Decimal("0.01") or cpus > available:
        raise BadOption(f"{text!r}: the range is 0.01 to {available} (the CPUs this host has)")
    return int(cpus * CPU_PERIOD)


def parse_publish(text: str) -> str:
    """-p HOST_PORT:CONTAINER_PORT[/tcp|udp], as krun's networking reads it."""
    from krun.errors import InvalidConfig
    from krun.network.settings import parse_publish as parse_network_publish

    try:
        return str(parse_network_publish(text, "-p"))
    except InvalidConfig as e:
        raise BadOption(e.msg.removeprefix("-p: ")) from None


def _clean_container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise BadOption(f"{what} {path!r} must be an absolute path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadOption(f"{what} {path!r} must not contain `..`")
    if "\0" in path:
        raise BadOption(f"{what} {path!r} contains a NUL byte")
    return "/" + "/".join(parts)


@dataclass
class Volume:
    source: str       # the host path, resolved
    destination: str  # the container path, normalised
    readonly: bool


def parse_volume(text: str) -> Volume:
    """-v HOST:CTR[:ro|rw]. HOST must exist; CTR is absolute, without `..`, and clear of
    the paths the container needs for itself."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise BadOption(f"{text!r}: expected HOST:CONTAINER[:ro]")
    host, ctr = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise BadOption(f"{text!r}: the mode must be ro or rw, not {mode!r}")
    dest = _clean_container_path(ctr, "container path")
    if dest == "/":
        raise BadOption(f"{text!r}: a volume cannot be the container's root")
    for reserved in RESERVED:
        if dest == reserved or dest.startswith(reserved + "/") or \
                reserved.startswith(dest + "/"):
            raise BadOption(f"{text!r}: {dest} is taken by the container's {reserved}")
    try:
        os.stat(host)
    except FileNotFoundError:
        raise BadOption(f"{text!r}: {host}: no such file or directory") from None
    except OSError as e:
        raise BadOption(f"{text!r}: {host}: {os.strerror(e.errno or 0).lower()}") from None
    return Volume(os.path.realpath(host), dest, mode == "ro")


def parse_env(text: str, environ: dict[str, str] | None = None) -> str | None:
    """-e K=V, or -e K (its value on the host; None when the host has none, as docker)."""
    name, eq, _ = text.partition("=")
    if not name:
        raise BadOption(f"{text!r}: the name is empty")
    if "\0" in text:
        raise BadOption(f"{text!r} contains a NUL byte")
    if eq:
        return text
    value = (os.environ if environ is None else environ).get(name)
    return None if value is None else f"{name}={value}"


def read_env_file(path: str) -> list[str]:
    """--env-file: one K=V (or K) a line; blank lines and `#` comments are skipped."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError as e:
        raise BadOption(f"{path}: {os.strerror(e.errno or 0).lower()}") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.strip()  # noqa: PLW2901
        if not line or line.startswith("#"):
            continue
        try:
            entry = parse_env(line)
        except BadOption as e:
            raise BadOption(f"{path}:{number}: {e}") from None
        if entry is not None:
            out.append(entry)
    return out


def parse_name(text: str) -> str:
    """--name: a container id, by krun's rules (it names files and cgroups)."""
    from krun.runtime.ids import validate_id

    try:
        return validate_id(text)
    except KrunError as e:
        raise BadOption(e.msg.removeprefix("invalid container id").lstrip(": ")
                        or e.msg) from None


def parse_workdir(text: str) -> str:
    return _clean_container_path(text, "working directory")


# ---------------------------------------------------------------- the request


@dataclass
class Request:
    """What `krun km` was asked, its option values already parsed."""

    command: list[str]                     # PAYLOAD ARGS... (may be empty with --image)
    env: list[str] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    workdir: str | None = None
    network: str | None = None             # none | host | bridge (None: none)
    publish: list[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    name: str | None = None
    detach: bool = False
    rm: bool = False
    memory: int | None = None
    cpu_quota: int | None = None
    rootfs: str | None = None
    image: str | None = None
    entrypoint: str | None = None          # with --image: replaces its Entrypoint


def check_request(req: Request) -> None:
    """The combinations, before anything is made."""
    if req.rootfs and req.image:
        raise KmError("--rootfs and --image both give the rootfs: use one")
    if req.entrypoint is not None and not req.image:
        raise KmError("--entrypoint goes with --image (elsewhere PAYLOAD is what runs)")
    if not req.command and not req.image:
        raise KmError("no payload given (krun km PAYLOAD [ARGS...])")
    if req.publish and req.network not in (None, "bridge"):
        raise KmError(f"-p publishes ports on krun0: it needs --network bridge, not "
                      f"--network {req.network}")
    if req.detach and req.tty:
        raise KmError("-t with -d: nothing would hold the terminal once krun km returns "
                      "(run it in the foreground, or use an engine)")
    if req.detach and req.rm:
        raise KmError("--rm with -d: there is no daemon to remove the container when it "
                      "exits; remove it with `krun delete -f ID`")
    seen: set[str] = set()
    for v in req.volumes:
        if v.destination in seen:
            raise KmError(f"-v: two volumes at {v.destination}")
        seen.add(v.destination)
    if req.rootfs and not os.path.isdir(req.rootfs):
        what = "no such file or directory" if not os.path.exists(req.rootfs) \
            else "not a directory"
        raise KmError(f"--rootfs {req.rootfs}: {what}")
    if req.image and not os.path.isfile(req.image):
        what = "no such file or directory" if not os.path.exists(req.image) \
            else "not a file"
        raise KmError(f"--image {req.image}: {what}")
    if not (req.rootfs or req.image):
        from krun.toolkit.kmbundle import _host_payload

        _host_payload(req.command[0])


def generated_id() -> str:
    import secrets

    return f"km-{secrets.token_hex(6)}"


def run(g: SimpleNamespace, req: Request) -> int:
    """krun km: make, run and remove the container. Returns krun km's exit status."""
    from krun.toolkit.kmsupervisor import Supervisor

    check_request(req)
    cid = parse_name(req.name) if req.name else generated_id()
    supervisor = Supervisor(g, req, cid)
    supervisor.install()
    try:
        return supervisor.run()
    except Interrupted as e:
        return 128 + e.signum
    finally:
        supervisor.restore()
