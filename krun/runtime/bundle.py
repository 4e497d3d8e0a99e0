"""Reading and checking a bundle's config.json before libcrun sees it.

libcrun validates the rest; these checks exist so the common mistakes end in one line
naming the JSON path, and so krun refuses what the spec says MUST fail (an unknown
capability) where libcrun 1.8.1 silently accepts it.
"""

from __future__ import annotations

import os

from krun import fastjson as json
from krun.errors import InvalidConfig, KrunError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import


if TYPE_CHECKING:
    from typing import Any

# Linux capability names, index = number (linux/capability.h).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Bundle:
    """A bundle's config.json, read once. A plain container reaches libcrun as the file
    itself, byte for byte; a handler that rewrites `config` sets `modified`."""

    def __init__(self, path: str, config_path: str, config: dict[str, Any], rootfs: str) -> None:
        self.path, self.config_path, self.config = path, config_path, config
        self.rootfs = rootfs
        self.modified = False

    def config_json(self) -> str:
        return json.dumps(self.config)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def check_capabilities(caps: Any, where: str) -> None:
    if caps is None:
        return
    if not isinstance(caps, dict):
        raise InvalidConfig(f"{where}: must be an object")
    last = _last_cap()
    for set_name in CAP_SETS:
        names = caps.get(set_name)
        if names is None:
            continue
        if not isinstance(names, list):
            raise InvalidConfig(f"{where}.{set_name}: must be an array of strings")
        for name in names:
            short = name[4:] if isinstance(name, str) and name.startswith("CAP_") else None
            if short not in CAPABILITIES or CAPABILITIES.index(short) > last:
                raise InvalidConfig(f"{where}.{set_name}: unknown capability {name!r}")


def _expect(cond: bool, path: str, rule: str) -> None:
    if not cond:
        raise InvalidConfig(f"config.json: {path}: {rule}")


def check_process(process: Any, path: str) -> None:
    _expect(isinstance(process, dict), path, "must be an object")
    args = process.get("args")
    _expect(isinstance(args, list) and len(args) > 0 and all(isinstance(a, str) for a in args),
            f"{path}.args", "must be a non-empty array of strings")
    cwd = process.get("cwd", "/")
    _expect(isinstance(cwd, str) and cwd.startswith("/"), f"{path}.cwd", "must be an absolute path")
    env = process.get("env", [])
    _expect(isinstance(env, list) and all(isinstance(e, str) for e in env), f"{path}.env",
            "must be an array of strings")
    check_capabilities(process.get("capabilities"), f"{path}.capabilities")


def load_bundle(bundle: str) -> Bundle:
    path = os.path.abspath(bundle)
    if not os.path.isdir(path):
        raise KrunError(f"bundle {path}: no such file or directory"
                        if not os.path.exists(path) else f"bundle {path}: not a directory")
    config_path = os.path.join(path, "config.json")
    config = json.read_object(config_path, "config.json")
    version = config.get("ociVersion")
    _expect(isinstance(version, str), "$.ociVersion", "is required (a string)")
    _expect(version.startswith("1."), "$.ociVersion", f"{version!r} is not a runtime-spec 1.x")
    root = config.get("root")
    _expect(isinstance(root, dict) and isinstance(root.get("path"), str) and root["path"] != "",
            "$.root.path", "is required (a string)")
    if "process" in config:
        check_process(config["process"], "$.process")
    for key, kind in (("mounts", list), ("linux", dict), ("hooks", dict), ("annotations", dict)):
        if key in config:
            _expect(isinstance(config[key], kind), f"$.{key}",
                    f"must be {'an array' if kind is list else 'an object'}")
    rootfs = os.path.join(path, root["path"])
    if not os.path.isdir(rootfs):
        raise KrunError(f"rootfs {rootfs}: no such file or directory")
    return Bundle(path=path, config_path=config_path, config=config, rootfs=rootfs)
