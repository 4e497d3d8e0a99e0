"""`krun km PAYLOAD [ARGS...]`: run a payload the way `km` does, isolated the way
`docker run --rm` does, in one line.

Design:

* **One code path with `krun run`.** krun km writes a throwaway bundle and hands it to
  `krun.runtime.container.create` (the function behind `krun run`), so the container
  gets exactly what any Kontain container gets: namespaces, cgroups, KM bind-mounted
  read-only, /dev/kvm, krun-init, krun's networking, the journal.
* **A supervisor and a runner.** The krun km process forks; the child (the runner) is
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
  handler, KmBundleHandler below), so it is removed last, by the same undo that
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

import errno
import os
import stat
from dataclasses import dataclass, field

from krun.errors import KrunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, SimpleNamespace
    from typing import Any

    from krun.runtime.handlers import CreatePlan, ExecPlan

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
        _host_payload(req.command[0])


def _host_payload(path: str) -> os.stat_result:
    """The default mode's PAYLOAD, a host file (like `km PAYLOAD`)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PayloadNotFound(f"payload {path}: no such file or directory") from None
    except OSError as e:
        raise PayloadRefused(f"payload {path}: {os.strerror(e.errno or 0).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        raise PayloadRefused(f"payload {path}: is a directory (permission denied)")
    if not stat.S_ISREG(st.st_mode):
        raise PayloadRefused(f"payload {path}: not a regular file (permission denied)")
    return st


# ---------------------------------------------------------------- the bundle


def bundles_dir(root: str) -> str:
    from krun.runtime.records import RECORDS

    # Absolute, as the create records the bundle (load_bundle): the two are compared.
    return os.path.join(os.path.abspath(root), RECORDS, KM_BUNDLES)


def bundle_dir(root: str, container_id: str) -> str:
    from krun.runtime.ids import validate_id

    return os.path.join(bundles_dir(root), validate_id(container_id))


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _read_marker(path: str) -> dict[str, Any] | None:
    from krun import fastjson as json

    try:
        fd = os.open(os.path.join(path, MARKER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        marker = json.loads(os.read(fd, 4096))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return marker if isinstance(marker, dict) else None


def make_bundle_dir(root: str, container_id: str) -> str:
    """`<root>/.krun/km/<id>`, made here and now (its mkdir is this run's claim on the
    name), with the marker that lets delete and the collector know it is krun km's."""
    from krun import fastjson as json
    from krun.runtime.container import ensure_root
    from krun.runtime.records import records_dir

    ensure_root(root)
    records_dir(root)
    base = bundles_dir(root)
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    path = bundle_dir(root, container_id)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise KmError(f'container "{container_id}" already exists') from None
    except OSError as e:
        from krun.errors import path_error

        raise path_error("mkdir", e, path) from None
    marker = {"id": container_id, "pid": os.getpid(), "start": _start_time(os.getpid())}
    with open(os.path.join(path, MARKER), "x") as f:
        f.write(json.dumps(marker))
    return path


def remove_bundle(root: str, container_id: str) -> None:
    """Remove krun km's bundle of this id, after checking that it is one: a directory of
    ours (no link anywhere in its path) whose marker names this id, with nothing mounted
    at or below it (rmtree would walk into a mount). Anything else is left alone, and
    said so."""
    path = bundle_dir(root, container_id)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise KrunError(f"krun km bundle {path}: not a directory of this user's: left alone")
    real = os.path.realpath(path)
    if real != os.path.join(os.path.realpath(bundles_dir(root)), container_id):
        raise KrunError(f"krun km bundle {path}: resolves elsewhere ({real}): left alone")
    marker = _read_marker(path)
    if marker is None or marker.get("id") != container_id:
        if not os.listdir(path):  # made, then killed before the marker was written
            os.rmdir(path)
            return
        raise KrunError(f"krun km bundle {path}: its marker does not name "
                        f"{container_id!r}: left alone")
    from krun.runtime.cleanup import mounts_below

    mounted = mounts_below(real)
    if mounted:
        raise KrunError(f"krun km bundle {path}: {mounted[0][1]} is still mounted there")
    import shutil

    try:
        shutil.rmtree(path)  # by file descriptor; never follows a link
    except FileNotFoundError:
        pass


def collect_stale(root: str) -> None:
    """Remove bundles whose krun km died before the container's journal existed: no
    record, no state, and their maker is gone. (Later on, the journal owns them.)"""
    base = bundles_dir(root)
    try:
        names = os.listdir(base)
    except OSError:
        return
    import time

    from krun.runtime.ids import validate_id
    from krun.runtime.records import read_record
    from krun.runtime.status import is_alive

    for name in names:
        try:
            validate_id(name)
        except KrunError:
            continue
        if read_record(root, name) is not None or os.path.lexists(os.path.join(root, name)):
            continue
        path = os.path.join(base, name)
        marker = _read_marker(path)
        if marker is None:
            try:
                fresh = time.time() - os.lstat(path).st_mtime < STALE_EMPTY_SECONDS
            except OSError:
                continue
            if fresh:
                continue  # a krun km between its mkdir and its marker
        else:
            pid, start = marker.get("pid"), marker.get("start")
            if isinstance(pid, int) and isinstance(start, int) and is_alive(pid, start):
                continue
        try:
            remove_bundle(root, name)
        except (KrunError, OSError):
            pass


def _copy_file(src: str, dst: str) -> None:
    """copytree's copy for --rootfs: regular files with their metadata, FIFOs made anew
    (opening one to copy it would block), sockets and device nodes skipped (the
    container's /dev is its own)."""
    import shutil

    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst, stat.S_IMODE(st.st_mode))
    else:
        return
    if os.geteuid() == 0:
        os.lchown(dst, st.st_uid, st.st_gid)


def _copy_rootfs(source: str, rootfs: str) -> None:
    """A copy of one file system, like `cp -ax`: a mount point inside DIR is refused
    (DIR=/ would copy /proc, and the copy itself)."""
    import shutil

    real = os.path.realpath(source)
    if real == "/" or os.path.realpath(rootfs).startswith(real.rstrip("/") + "/"):
        raise KmError(f"--rootfs {source}: it holds krun's state root, where the copy "
                      "goes: give the directory of the payload's files")
    device = os.stat(real).st_dev

    def one_file_system(directory: str, names: list[str]) -> list[str]:
        for name in names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_dev != device:
                raise KmError(f"--rootfs {source}: {path} is a mount point (krun km "
                              "copies one file system)")
        return []

    def copy(src: str, dst: str) -> None:
        _copy_file(src, dst)

    try:
        shutil.copytree(source, rootfs, symlinks=True, copy_function=copy,
                        ignore=one_file_system)
    except shutil.Error as e:
        first = e.args[0][0] if e.args and isinstance(e.args[0], list) and e.args[0] else e
        raise KmError(f"--rootfs {source}: copying failed: {first}") from None
    except OSError as e:
        raise KmError(f"--rootfs {source}: copying failed: {e}") from None
    if os.geteuid() == 0:
        st = os.stat(source)
        os.chown(rootfs, st.st_uid, st.st_gid)


def _unpack_image(image: str, rootfs: str) -> dict[str, Any]:
    try:
        from krun.toolkit.image_unpack import unpack
    except ImportError:
        raise KmError("--image needs krun.toolkit.image_unpack, which this krun does not "
                      "have yet") from None
    config = unpack(image, rootfs)
    return config if isinstance(config, dict) else {}


def _image_field(config: dict[str, Any], name: str) -> Any:
    """An image config member: `Entrypoint` as OCI writes it, or `entrypoint`."""
    return config.get(name, config.get(name.lower()))


def _image_user(user: Any) -> dict[str, int] | None:
    """The image's User: numeric uid[:gid] (names need the image's /etc/passwd, which a
    payload image does not have)."""
    if not user or user in ("root", "0", "0:0"):
        return None
    uid, _, gid = str(user).partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise KmError(f"--image: User {user!r}: only numeric uid[:gid] is supported")
    return {"uid": int(uid), "gid": int(gid or uid)}


def _config(req: Request, cid: str, args: list[str], env: list[str], cwd: str,
            user: dict[str, int] | None) -> dict[str, Any]:
    """The bundle's config.json: krun spec --kontain's, with the request applied."""
    from krun.kontain.spec import add_kontain
    from krun.runtime.default_spec import default_spec

    rootless = os.geteuid() != 0
    spec = default_spec(rootless=rootless)
    add_kontain(spec, args[0])
    process = spec["process"]
    process.update(args=args, env=env, cwd=cwd, terminal=req.tty)
    if user:
        process["user"] = user
    if req.tty:
        size = _terminal_size()
        if size:
            process["consoleSize"] = {"height": size[0], "width": size[1]}
    spec["root"] = {"path": "rootfs", "readonly": False}  # a private copy, thrown away
    spec["hostname"] = cid[:63]
    for v in req.volumes:
        spec["mounts"].append({
            "destination": v.destination, "type": "bind", "source": v.source,
            "options": ["rbind", "rprivate", "nosuid", "nodev", *(["ro"] if v.readonly
                                                                   else [])]})
    linux = spec["linux"]
    if rootless and req.network in (None, "none"):
        # krun's rootless spec shares the host's network; `none` is an empty one.
        linux["namespaces"].append({"type": "network"})
    resources = linux.setdefault("resources", {})
    if req.memory is not None:
        resources["memory"] = {"limit": req.memory}
    if req.cpu_quota is not None:
        resources["cpu"] = {"quota": req.cpu_quota, "period": CPU_PERIOD}
    if not resources:
        linux.pop("resources")
    spec.setdefault("annotations", {})["org.krun.km"] = "1"
    return spec


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Later entries win, each name once, in first-seen order (as docker)."""
    merged: dict[str, str] = {}
    for entry in [*base, *extra]:
        merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def build_bundle(req: Request, root: str, cid: str) -> str:
    """Fill the bundle dir: rootfs and config.json. Returns the bundle's path."""
    from krun import fastjson as json
    from krun.kontain.payload import check_payload, find_executable

    path = bundle_dir(root, cid)
    rootfs = os.path.join(path, "rootfs")
    image: dict[str, Any] = {}
    if req.rootfs:
        _copy_rootfs(req.rootfs, rootfs)
        args = list(req.command)
    elif req.image:
        os.mkdir(rootfs, 0o755)
        image = _unpack_image(req.image, rootfs)
        # docker's rules: words after the options replace Cmd; --entrypoint replaces
        # Entrypoint and drops the image's Cmd.
        if req.entrypoint is not None:
            entrypoint = [req.entrypoint] if req.entrypoint else []
            cmd = list(req.command)
        else:
            entrypoint = list(_image_field(image, "Entrypoint") or [])
            cmd = list(req.command) or list(_image_field(image, "Cmd") or [])
        args = [*entrypoint, *cmd]
        if not args:
            raise KmError(f"--image {req.image}: the image has no Entrypoint or Cmd: "
                          "give a PAYLOAD")
    else:
        import shutil

        host = req.command[0]
        name = os.path.basename(os.path.normpath(host))
        os.mkdir(rootfs, 0o755)
        if name != "tmp":  # a payload named tmp is /tmp
            os.mkdir(os.path.join(rootfs, "tmp"), 0o1777)
            os.chmod(os.path.join(rootfs, "tmp"), 0o1777)  # past the umask
        shutil.copy(host, os.path.join(rootfs, name))
        args = ["/" + name, *req.command[1:]]
    env = _merge_env([f"PATH={DEFAULT_PATH}", f"HOSTNAME={cid[:63]}",
                      *(["TERM=xterm"] if req.tty else [])],
                     [*list(_image_field(image, "Env") or []), *req.env])
    cwd = req.workdir or _image_field(image, "WorkingDir") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        cwd = "/"
    user = _image_user(_image_field(image, "User"))
    # The checks the Kontain handler makes at create, made now so that a missing or
    # non-payload file is reported (127, 126) before any container is made.
    try:
        payload = find_executable(rootfs, args[0], env, cwd)
    except KrunError as e:
        missing = "no such file or directory" in e.msg or "not found in $PATH" in e.msg
        raise (PayloadNotFound if missing else PayloadRefused)(e.msg) from None
    try:
        check_payload(rootfs, payload, cwd)
    except KrunError as e:
        raise PayloadRefused(e.msg) from None
    config = _config(req, cid, args, env, cwd, user)
    with open(os.path.join(path, "config.json"), "x") as f:
        f.write(json.dumps(config, indent=2))
    return path


# ---------------------------------------------------------------- the journal's owner


class KmBundleHandler:
    """krun km's part in a create: its bundle, journaled first so that the undo (of a
    failed create, a foreground run's end, `delete`, `delete --force`) removes it last."""

    name = "km"

    def __init__(self, g: SimpleNamespace) -> None:
        self.g = g

    def prepare_create(self, plan: CreatePlan) -> None:
        expected = bundle_dir(plan.g.root, plan.id)
        if os.path.realpath(plan.bundle.path) != os.path.realpath(expected):
            raise KrunError(f"krun km: the bundle {plan.bundle.path} is not {expected}")
        plan.journal.step("bundle", self.name)

    def prepare_exec(self, plan: ExecPlan) -> None:
        return None

    def undo(self, root: str, container_id: str, step: dict[str, Any]) -> None:
        # The path comes from the root and the (validated) id, never from the record.
        remove_bundle(root, container_id)


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


def _terminal_size() -> tuple[int, int] | None:
    import fcntl
    import struct
    import termios

    for fd in (1, 0, 2):
        if os.isatty(fd):
            try:
                rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ,
                                                               b"\0" * 8))[:2]
            except OSError:
                continue
            if rows and cols:
                return rows, cols
    return None


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


def generated_id() -> str:
    import secrets

    return f"km-{secrets.token_hex(6)}"


def run(g: SimpleNamespace, req: Request) -> int:
    """krun km: make, run and remove the container. Returns krun km's exit status."""
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
