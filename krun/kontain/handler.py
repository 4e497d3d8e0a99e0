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

from krun import log
from krun.errors import KrunError
from krun.kontain.extension import extension
from krun.kontain.km import KM_IN_CONTAINER, open_km
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
    return found


def km_options(ext: dict[str, Any], debug: bool) -> list[str]:
    km = ext.get("km", {})
    opts = []
    if km.get("verbose") or debug:
        opts.append("--verbose")
    if km.get("log"):
        opts.append(f"--km-log-to={km['log']}")
    env = km.get("env", {})
    if env.get("policy") == "put":
        for var in env.get("vars", []):
            opts += ["--putenv", var]
    return opts


def _bind_mount_of(config: dict[str, Any], destination: str) -> dict[str, Any] | None:
    """The mount that ends up at `destination` (the last one wins), if it is a bind."""
    found = None
    for m in config.get("mounts") or []:
        if isinstance(m, dict) and isinstance(m.get("destination"), str) and \
                os.path.normpath(m["destination"]) == destination:
            found = m
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
    st = root_owned_chain(real, "init")
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise KrunError(f"init {source}: permission denied (not an executable file)")
    fd = private_ro_fd(real, "init", st)
    try:
        require_static_elf(fd, "init", source)
    except BaseException:
        os.close(fd)
        raise
    return fd, args.index("--", 1) + 1


class KontainHandler:
    name = "kontain"

    def __init__(self, g: SimpleNamespace) -> None:
        self.g = g
        self.debug = bool(getattr(g, "debug", False))

    @staticmethod
    def _wrap(process: dict[str, Any], root: str, options: list[str]) -> None:
        """process.args under KM: [km, options, payload resolved in `root`, args...]."""
        args = list(process.get("args") or [])
        if not args:
            raise KrunError("Kontain: the process has no payload to run")
        if args[0] == KM_IN_CONTAINER:
            return  # already KM (executed from the verified descriptor all the same)
        payload = find_executable(root, args[0], process.get("env", []),
                                  process.get("cwd", "/"))
        check_payload(root, payload)
        process["args"] = [KM_IN_CONTAINER, *options, payload, *args[1:]]

    def prepare_create(self, plan: CreatePlan) -> None:
        bundle = plan.bundle
        config = bundle.config
        ext = extension(config, plan.g.root)
        km = open_km(km_path(), km_pin())
        plan.exec_pin = (km.dev, km.ino)
        devices = _devices(ext.get("device", "auto"))
        options = km_options(ext, self.debug)
        native_init = None
        process = config.get("process")
        if isinstance(process, dict):
            args = list(process.get("args") or [])
            init = host_init(args, config, bundle.rootfs)
            if init is None:
                self._wrap(process, bundle.rootfs, options)
            else:
                init_fd, cut = init
                process["args"] = args[cut:]
                self._wrap(process, bundle.rootfs, options)
                process["args"] = [*args[:cut], *process["args"]]
                native_init = args[0]
                plan.exec_pin = None  # the init starts KM, by path
                plan.exec_fd = init_fd
        # Appended last so no other mount of the config can cover it.
        config.setdefault("mounts", []).append({
            "destination": KM_IN_CONTAINER, "type": "bind", "source": km.real,
            "options": ["rbind", "rprivate", "ro", "nosuid", "nodev"]})
        linux = config.setdefault("linux", {})
        resources = linux.setdefault("resources", {})
        for path, st in devices:
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            linux.setdefault("devices", []).append({
                "path": path, "type": "c", "major": major, "minor": minor,
                "fileMode": 0o666, "uid": 0, "gid": 0})
            resources.setdefault("devices", []).append({
                "allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
        bundle.modified = True
        if self.debug:
            where = ext.get("km", {}).get("log") or "the container's stderr"
            log.debug(f"Kontain: KM runs with --verbose; its log goes to {where}")
        plan.journal.facts(
            km_options=options, exec=ext.get("exec", {"policy": "km"}), km_sha256=km.digest,
            km_file=[km.dev, km.ino], native_init=native_init,
            annotations={
                "app.kontain.km.path": km.path,
                "app.kontain.km.sha256": km.digest,
                "app.kontain.device": ",".join(p for p, _ in devices),
                "app.kontain.payload": " ".join(config.get("process", {}).get("args", [])),
            })

    def prepare_exec(self, plan: ExecPlan) -> None:
        record, process = plan.record, plan.process
        if plan.status == "created" and record.get("native_init"):
            # Its init would start KM by path once released; nothing may run in the
            # container before that.
            raise KrunError(f'cannot exec in the created container "{plan.id}": its init '
                            "has not started KM yet; start it first")
        km = open_km(km_path(), km_pin())
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
        options = [o for o in record.get("km_options") or [] if isinstance(o, str)]
        self._wrap(process, plan.view, options)
        plan.exec_pin = (pinned[0], pinned[1])

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
