"""Kontain mode as a krun handler: KM as every process's launcher.

At create: the host's KM is verified (and pinned) and bind-mounted read-only at
/opt/kontain/bin/km, so an image can neither bring nor replace it; the virtualization
device is given to the container; process.args becomes [km, KM options, payload, ...]
with the payload resolved inside the rootfs and checked to be a KM payload. At exec
the same rewrite applies, except to allow-listed helpers whose sha256 matches.
"""

from __future__ import annotations

import hashlib
import os
import stat

from krun import log
from krun.errors import KrunError
from krun.kontain.extension import extension
from krun.kontain.km import INIT_BINARIES, KM_IN_CONTAINER, verify_km
from krun.kontain.payload import check_payload, find_executable, read_in_root, resolve_in_root
from krun.kontain.settings import km_path, km_pin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.bundle import Bundle

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


def _split_init(args: list[str]) -> tuple[list[str], list[str]]:
    """docker/podman --init: keep the engine's init native and its child under KM.

    The init is the engine's own host binary (like KM, not the image's); it must reap
    and forward signals, which needs fork/exec that a minimal KM lacks. The user's
    program, the payload, still runs only inside the VM.
    """
    if args and args[0] in INIT_BINARIES and "--" in args:
        cut = args.index("--") + 1
        return args[:cut], args[cut:]
    return [], args


class KontainHandler:
    name = "kontain"

    def __init__(self, g: SimpleNamespace) -> None:
        self.debug = bool(getattr(g, "debug", False))

    def _wrap(self, process: dict[str, Any], rootfs: str, options: list[str]) -> dict[str, Any]:
        prefix, args = _split_init(list(process.get("args") or []))
        if not args:
            raise KrunError("Kontain: the process has no payload to run")
        if args[0] == KM_IN_CONTAINER:
            return process
        payload = find_executable(rootfs, args[0], process.get("env", []),
                                  process.get("cwd", "/"))
        check_payload(rootfs, payload)
        process["args"] = [*prefix, KM_IN_CONTAINER, *options, payload, *args[1:]]
        return process

    def prepare_create(self, bundle: Bundle) -> dict[str, Any]:
        config = bundle.config
        ext = extension(config)
        host_km = km_path()
        digest = verify_km(host_km, km_pin())
        devices = _devices(ext.get("device", "auto"))
        options = km_options(ext, self.debug)
        if "process" in config:
            self._wrap(config["process"], bundle.rootfs, options)
        # Appended last so no other mount of the config can cover it.
        config.setdefault("mounts", []).append({
            "destination": KM_IN_CONTAINER, "type": "bind", "source": os.path.realpath(host_km),
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
        return {
            "km_options": options,
            "exec": ext.get("exec", {"policy": "km"}),
            "km_sha256": digest,
            "annotations": {
                "app.kontain.km.path": host_km,
                "app.kontain.km.sha256": digest,
                "app.kontain.device": ",".join(p for p, _ in devices),
                "app.kontain.payload": " ".join(config.get("process", {}).get("args", [])),
            },
        }

    def prepare_exec(self, record: dict[str, Any], process: dict[str, Any],
                     rootfs: str) -> dict[str, Any]:
        digest = verify_km(km_path(), km_pin())
        if record.get("km_sha256") and digest != record["km_sha256"]:
            raise KrunError(f"KM changed since the container was created "
                            f"(sha256 {digest}, was {record['km_sha256']}): refused")
        args = process.get("args") or []
        policy = record.get("exec", {})
        if policy.get("policy") == "allow" and args:
            native = self._allowed(policy.get("allow", []), process, rootfs)
            if native:
                return process
        return self._wrap(process, rootfs, list(record.get("km_options", [])))

    @staticmethod
    def _allowed(allow: list[dict[str, str]], process: dict[str, Any], rootfs: str) -> bool:
        """An allow-listed helper runs natively only when its content hashes exactly."""
        args = process["args"]
        try:
            path = find_executable(rootfs, args[0], process.get("env", []),
                                   process.get("cwd", "/"))
            real = resolve_in_root(rootfs, path)
        except KrunError:
            return False
        for entry in allow:
            if entry["path"] not in (path, real):
                continue
            digest = hashlib.sha256(read_in_root(rootfs, real)).hexdigest()
            if digest == entry["sha256"]:
                return True  # args stay as given: argv[0] matters (busybox applets)
        return False
