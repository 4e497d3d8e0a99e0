"""Kontain mode as a krun handler: KM as every process's launcher.

At create: the host's KM is verified (and pinned) and bind-mounted read-only at
/opt/kontain/bin/km, so an image can neither bring nor replace it; the virtualization
device is given to the container; process.args becomes [km, KM options, payload, ...]
with the payload resolved inside the rootfs and checked to be a KM payload. At exec the
same rewrite applies, resolved in the running container's own view, except for helpers
the allow-list names whose bytes hash exactly.

Nothing native is started by a path the container could have changed (see
krun.kontain.native): libcrun executes the very file krun verified — KM from its
read-only bind mount, only if it is the inode krun hashed; an engine's host init or a
sealed copy of an allow-listed helper from a descriptor. An init stays native only at
create, and only when it is a host binary the config bind-mounts (docker's docker-init,
podman's catatonit); any other `init -- payload` runs under KM like everything else.
"""

from __future__ import annotations

import os
import stat

from krun import fastjson as json
from krun import log
from krun.errors import KrunError, path_error, strerror
from krun.kontain.extension import extension
from krun.kontain.km import KM_IN_CONTAINER, MGT_IN_CONTAINER, SNAPSHOT_IN_CONTAINER, open_km
from krun.kontain.native import (
    private_ro_fd,
    require_static_elf,
    root_owned_chain,
    sealed_copy,
    sha256_fd,
)
from krun.kontain.payload import check_payload, find_executable, open_in_root
from krun.kontain.settings import km_path, km_pin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.handlers import CreatePlan, ExecPlan

DEVICES = ("/dev/kvm", "/dev/kkm")


def _devices(choice: str) -> list[tuple[str, os.stat_result]]:
    wanted = DEVICES if choice == "auto" else (choice,)
    found = []
    for path in wanted:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISCHR(st.st_mode):
            found.append((path, st))
    if not found:
        raise KrunError(f"no usable virtualization device for Kontain: {', '.join(wanted)}: "
                        "no such file or directory (KVM is required: load kvm_intel/kvm_amd "
                        "or Kontain's kkm module)")
    # KM opens the device with this process's credentials (a rootless container keeps
    # the user's groups), so a device it cannot open fails here, in one line, rather
    # than as KM's error after the container is made. KM takes any one of them.
    usable, refused = [], []
    for path, st in found:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY))
        except OSError as e:
            refused.append((path, st, e))
            continue
        usable.append((path, st))
    if not usable:
        path, st, e = refused[0]
        raise KrunError(f"open {path}: {strerror(e.errno or 0)}"
                        + (f" ({_device_hint(path, st)})" if isinstance(e, PermissionError)
                           else ""))
    return usable


def _device_hint(path: str, st: os.stat_result) -> str:
    """How the user gets access to the device: the group that may open it, or how root
    makes one (the wording of `krun check`)."""
    import grp

    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    # Root of a user namespace is some user of the host: "the user" then.
    user = _user_name(os.geteuid()) if os.geteuid() else "the user"
    if st.st_gid != 0 and st.st_mode & 0o060 == 0o060:
        return f"add {user} to group {group}, which may open it, then log in again"
    return (f"it is {stat.filemode(st.st_mode)} {_user_name(st.st_uid)}:{group}: as root, "
            f"chgrp kvm {path} && chmod 0660 {path}, then add {user} to group kvm")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _keep_groups(config: dict[str, Any]) -> None:
    """Keep the user's groups in the container (podman's `--group-add keep-groups`),
    for KM to open a device through one of them. With subordinate ids mapped (by
    newgidmap) libcrun would set the process's groups to additionalGids and drop the
    user's; a config that names additionalGids has chosen its groups, and keeps them."""
    user = config.get("process", {}).get("user", {})
    if user.get("additionalGids"):
        return
    annotations = config.setdefault("annotations", {})
    annotations.setdefault("run.oci.keep_original_groups", "1")


def _can_make_devices() -> bool:
    """Whether libcrun can create device nodes for a user-namespaced container: it makes
    them in a private mount namespace of its own, which needs CAP_SYS_ADMIN; without it
    (an unprivileged user) libcrun 1.8.1 fails at `unshare CLONE_NEWNS`."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> 21 & 1)  # CAP_SYS_ADMIN
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


DEBUG_IN_CONTAINER = "/run/kontain-debug"  # the host's debug dir, bind-mounted there


def km_options(km: dict[str, Any], debug: bool, tag: str) -> list[str]:
    """KM's options from the extension's `km` object. KM's messages go to the
    container's stderr unless asked otherwise: KM's own default off a terminal is
    /tmp/km_<pid>.log inside the container, lost with it (or never written, with no
    /tmp). In debug mode its verbose log and core file go to the host's debug dir."""
    opts = []
    if km.get("verbose") or debug:
        opts.append("--verbose")
    if debug:
        opts += [f"--km-log-to={DEBUG_IN_CONTAINER}/km-{tag}.log",
                 f"--coredump={DEBUG_IN_CONTAINER}/kmcore-{tag}"]
    else:
        opts.append(f"--km-log-to={km.get('log') or 'stderr'}")
    env = km.get("env", {})
    if env.get("policy") == "put":
        for var in env.get("vars", []):
            opts += ["--putenv", var]
    return opts


def _debug_dir(container_id: str) -> str:
    """A fresh host directory for one container's debug artefacts; it outlives the
    container (delete leaves it), which is its point."""
    import time

    from krun.hostconfig import config_path
    from krun.kontain.settings import debug_dir

    base = debug_dir()
    stem = os.path.join(base, f"{container_id}-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        for path in (stem, *(f"{stem}.{n}" for n in range(1, 100))):
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise KrunError(f"Kontain debug: {path_error('mkdir', e).msg} (set debug_dir under "
                        f"[kontain] in {config_path()} to a directory krun may write)") from None
    raise KrunError(f"Kontain debug: cannot make a directory under {base}")


def _krun_init() -> int:
    """An executable fd for krun-init (native/init), verified like any host binary that
    runs natively."""
    from krun.kontain.settings import init_path

    path = init_path()
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise KrunError(f"krun-init {path}: no such file or directory (reinstall krun: "
                        "its package carries it)") from None
    return host_binary_fd(path, "krun-init")


def host_binary_fd(path: str, what: str) -> int:
    """An executable fd for a host binary that will run natively: root's (with every
    directory above it), a static ELF, opened on a private read-only mount."""
    real = os.path.realpath(path)
    st = root_owned_chain(real, what)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise KrunError(f"{what} {path}: permission denied (not an executable file)")
    fd = private_ro_fd(real, what, st)
    try:
        require_static_elf(fd, what, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _last_mount_at(config: dict[str, Any], destination: str) -> dict[str, Any] | None:
    """The mount that ends up at `destination`: the last one the config lists there."""
    found = None
    for m in config.get("mounts") or []:
        if isinstance(m, dict) and isinstance(m.get("destination"), str) and \
                os.path.normpath(m["destination"]) == destination:
            found = m
    return found


def _bind_mount_of(config: dict[str, Any], destination: str) -> dict[str, Any] | None:
    """The mount that ends up at `destination`, if it is a bind."""
    found = _last_mount_at(config, destination)
    if found is None:
        return None
    options = found.get("options") if isinstance(found.get("options"), list) else []
    if found.get("type") != "bind" and "bind" not in options and "rbind" not in options:
        return None
    return found


def host_init(args: list[str], config: dict[str, Any], rootfs: str) -> tuple[int, int] | None:
    """docker/podman --init (`[init, ..., --, cmd...]`): (fd of the init, index after
    `--`) when args[0] is a host binary the config bind-mounts there; None otherwise.

    That init is the engine's own (like KM, not the image's); it has to fork and reap,
    which it does natively, while what it starts is still KM. A bind mount whose source
    lies in the image's rootfs is the image's file, not the engine's.
    """
    if len(args) < 3 or "--" not in args[1:] or not args[0].startswith("/"):
        return None
    mount = _bind_mount_of(config, os.path.normpath(args[0]))
    source = mount.get("source") if mount else None
    if not isinstance(source, str) or not source.startswith("/"):
        return None
    real = os.path.realpath(source)
    image = os.path.realpath(rootfs)
    if real == image or real.startswith(image + "/"):
        return None
    return host_binary_fd(source, "init"), args.index("--", 1) + 1


class KontainHandler:
    name = "kontain"

    def __init__(self, g: SimpleNamespace) -> None:
        self.g = g
        self.debug = bool(getattr(g, "debug", False))

    @staticmethod
    def _wrap(process: dict[str, Any], root: str, options: list[str],
              resume: str | None = None) -> list[str]:
        """process.args under KM: [km, options, payload resolved in `root`, args...]
        (or, to `resume` a snapshot, [km, options, the snapshot]). Returns the
        payload's own argv, as KM will start it."""
        args = list(process.get("args") or [])
        if not args:
            raise KrunError("Kontain: the process has no payload to run")
        if resume is not None:
            # restore: KM resumes the snapshot mounted there, whatever the config's args
            # (the process the checkpoint stopped, possibly spelled as a km command).
            process["args"] = [KM_IN_CONTAINER, *options, SNAPSHOT_IN_CONTAINER]
            return [SNAPSHOT_IN_CONTAINER]
        if args[0] == KM_IN_CONTAINER:
            # Already KM (and libcrun runs the verified KM all the same), with the
            # config's own options; only the management socket is added (KM's options
            # end at the payload, so right after km is always among them).
            mgt = [o for o in options if o.startswith("--mgtpipe=")]
            if mgt and not any(a.startswith(("--mgtpipe", "--mgt-fd")) for a in args[1:]):
                process["args"] = [args[0], *mgt, *args[1:]]
            return args
        cwd = process.get("cwd", "/")
        payload = find_executable(root, args[0], process.get("env", []), cwd)
        if check_payload(root, payload, cwd) and len(args) > 1:
            raise KrunError(f"payload {payload}: a KM snapshot resumes where it stopped and "
                            f"takes no arguments ({len(args) - 1} given)")
        process["args"] = [KM_IN_CONTAINER, *options, payload, *args[1:]]
        return [payload, *args[1:]]

    def prepare_create(self, plan: CreatePlan) -> None:
        bundle = plan.bundle
        config = bundle.config
        ext = extension(config, plan.g.root)
        km = open_km(km_path(), km_pin(), self.g.root)
        devices = _devices(ext.get("device", "auto"))
        debug = self.debug or bool(ext.get("debug"))
        host_debug = _debug_dir(plan.id) if debug else None
        # The init's KM serves `krun checkpoint` on its management socket, in the
        # container's own /dev tmpfs (engines and `krun spec` all mount one): elsewhere
        # KM would write into the rootfs, or fail to start on a read-only one.
        options = km_options(ext.get("km", {}), debug, "init")
        if (_last_mount_at(config, "/dev") or {}).get("type") == "tmpfs":
            options.append(f"--mgtpipe={MGT_IN_CONTAINER}")
        resume = getattr(plan.opts, "restore_snapshot", None)
        native_init = None
        payload: list[str] = []
        process = config.get("process")
        if isinstance(process, dict):
            args = list(process.get("args") or [])
            init = host_init(args, config, bundle.rootfs)
            if init is None:
                # krun-init is pid 1, KM its child: a payload's signal death then
                # reaches the container's status at once (as pid 1, KM's re-raise of
                # the signal is ignored, and it aborts after 2 s).
                payload = self._wrap(process, bundle.rootfs, options, resume)
                prefix = ["krun-init", f"--km={km.dev}:{km.ino}"]
                if host_debug:
                    prefix += [f"--report={DEBUG_IN_CONTAINER}/report.txt",
                               f"--report-where={host_debug}"]
                process["args"] = [*prefix, "--", *process["args"]]
                plan.exec_fd = _krun_init()
            else:
                # The engine's init is pid 1 already; it starts KM (by path).
                init_fd, cut = init
                process["args"] = args[cut:]
                payload = self._wrap(process, bundle.rootfs, options, resume)
                process["args"] = [*args[:cut], *process["args"]]
                native_init = args[0]
                plan.exec_fd = init_fd
        if host_debug:
            config.setdefault("mounts", []).append({
                "destination": DEBUG_IN_CONTAINER, "type": "bind", "source": host_debug,
                "options": ["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"]})
        linux = config.setdefault("linux", {})
        resources = linux.setdefault("resources", {})
        make_nodes = _can_make_devices()
        for path, st in devices:
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            if make_nodes:
                linux.setdefault("devices", []).append({
                    "path": path, "type": "c", "major": major, "minor": minor,
                    "fileMode": 0o666, "uid": 0, "gid": 0})
            else:
                # The host's node itself, as podman does for a rootless --device: the
                # user opens it through its own group, as on the host.
                config.setdefault("mounts", []).append({
                    "destination": path, "type": "bind", "source": path,
                    "options": ["bind", "rprivate", "nosuid", "noexec"]})
                if st.st_mode & 0o006 != 0o006:
                    _keep_groups(config)
            resources.setdefault("devices", []).append({
                "allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
        if resume:
            config.setdefault("mounts", []).append({
                "destination": SNAPSHOT_IN_CONTAINER, "type": "bind", "source": resume,
                "options": ["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"]})
        # Appended last so no other mount of the config can cover it.
        config.setdefault("mounts", []).append({
            "destination": KM_IN_CONTAINER, "type": "bind", "source": km.real,
            "options": ["rbind", "rprivate", "ro", "nosuid", "nodev"]})
        bundle.modified = True
        if host_debug:
            log.warning(f"Kontain debug: KM's verbose log and core files, and a report if "
                        f"the payload fails, go to {host_debug}")
        annotations = {
            "app.kontain.km.path": km.path,
            "app.kontain.km.sha256": km.digest,
            "app.kontain.device": ",".join(p for p, _ in devices),
            "app.kontain.payload": json.dumps(payload),
        }
        if host_debug:
            annotations["app.kontain.debug.dir"] = host_debug
        plan.journal.facts(
            km_ext=ext.get("km", {}), exec=ext.get("exec", {"policy": "km"}),
            km_sha256=km.digest, km_file=[km.dev, km.ino], native_init=native_init,
            debug_dir=host_debug, annotations=annotations,
            **({"restored_from": os.path.dirname(resume)} if resume else {}))

    def prepare_exec(self, plan: ExecPlan) -> None:
        record, process = plan.record, plan.process
        if plan.status == "created" and record.get("native_init"):
            # Its init would start KM by path once released; nothing may run in the
            # container before that.
            raise KrunError(f'cannot exec in the created container "{plan.id}": its init '
                            "has not started KM yet; start it first")
        km = open_km(km_path(), km_pin(), self.g.root)
        if record.get("km_sha256") and km.digest != record["km_sha256"]:
            raise KrunError(f"KM changed since the container was created "
                            f"(sha256 {km.digest}, was {record['km_sha256']}): refused")
        pinned = record.get("km_file")
        if not (isinstance(pinned, list) and len(pinned) == 2 and
                all(isinstance(n, int) for n in pinned)):
            pinned = [km.dev, km.ino]
        elif pinned != [km.dev, km.ino]:
            # Same bytes in a new file: the container's bind mount still holds the old
            # one, deleted on the host, which KM cannot find again through
            # /proc/self/exe to re-execute itself.
            raise KrunError(f"KM {km.path} was replaced since the container was created; "
                            "the container still has the old file: recreate the container")
        policy = record.get("exec") if isinstance(record.get("exec"), dict) else {}
        if policy.get("policy") == "allow" and process.get("args"):
            helper = self._allowed(policy.get("allow") or [], process, plan.view)
            if helper is not None:
                plan.exec_fd = helper  # args stay as given: argv[0] matters (applets)
                return
        # At exec no init stays native: it would start KM by path in a container
        # whose files its payloads may have rearranged.
        host_debug = record.get("debug_dir") if isinstance(record.get("debug_dir"), str) \
            else None
        km_ext = record.get("km_ext") if isinstance(record.get("km_ext"), dict) else {}
        import time

        tag = f"exec-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        payload = self._wrap(process, plan.view, km_options(km_ext, bool(host_debug), tag))
        plan.exec_pin = (pinned[0], pinned[1])
        if host_debug:
            plan.failure_note = (f"Kontain debug: {json.dumps(payload)} failed ({{status}}); "
                                 f"KM's log and core: {host_debug}/km-{tag}.log, "
                                 f"kmcore-{tag}")

    @staticmethod
    def _allowed(allow: list[Any], process: dict[str, Any], view: str) -> int | None:
        """A sealed copy of the allow-listed helper args[0] names, as the container sees
        it, when the copy's sha256 is the listed one; None runs it under KM instead."""
        args = process["args"]
        try:
            path = find_executable(view, args[0], process.get("env", []),
                                   process.get("cwd", "/"))
            target = open_in_root(view, path, os.O_RDONLY | os.O_NONBLOCK)
        except (KrunError, OSError):
            return None
        try:
            st = os.fstat(target)
            if not stat.S_ISREG(st.st_mode):
                return None
            for entry in allow:
                if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                    continue
                try:
                    listed = open_in_root(view, entry["path"], os.O_PATH)
                except OSError:
                    continue
                try:
                    lst = os.fstat(listed)
                finally:
                    os.close(listed)
                if (lst.st_dev, lst.st_ino) != (st.st_dev, st.st_ino):
                    continue
                copy = sealed_copy(target, "allowed helper", path)
                if sha256_fd(copy) == entry.get("sha256"):
                    try:
                        require_static_elf(copy, "allowed helper", path)
                    except BaseException:
                        os.close(copy)
                        raise
                    return copy
                os.close(copy)
            return None
        finally:
            os.close(target)

    def undo(self, root: str, container_id: str, step: dict[str, Any]) -> None:
        return None  # Kontain rewrites the config only: it makes nothing on the host
