"""krun km's throwaway bundle: made under the state root with a marker naming its id,
journaled first by the `km` handler so the one undo path removes it last, and removed
only after checking it is krun km's own (see krun.toolkit.kmrun's design notes)."""

from __future__ import annotations

import os
import stat

from krun.errors import KrunError
from krun.toolkit.kmrun import (
    CPU_PERIOD,
    DEFAULT_PATH,
    KM_BUNDLES,
    MARKER,
    STALE_EMPTY_SECONDS,
    KmError,
    PayloadNotFound,
    PayloadRefused,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.handlers import CreatePlan, ExecPlan
    from krun.toolkit.kmrun import Request



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
