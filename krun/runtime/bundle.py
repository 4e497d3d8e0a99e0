"""Reading and checking a bundle's config.json before libcrun sees it.

Every member krun or libcrun reads is type-checked against the runtime-spec's types
(tables(), walked by krun.runtime.resources), so a wrong type ends in one line naming
the JSON path instead of a Python exception, and krun refuses what runc refuses (an
environment entry without `=`, a uid that is not a uint32) and what the spec says MUST
fail (an unknown capability) where libcrun 1.8.1 silently accepts it. libcrun validates
the rest.
"""

from __future__ import annotations

import os
import stat

from krun import fastjson as json
from krun.errors import InvalidConfig, KrunError, path_error

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


_last_cap_cache: list[int] = []


def is_known_capability(name: str) -> bool:
    """`CAP_NAME`, known to krun and to this kernel."""
    if not _last_cap_cache:
        _last_cap_cache.append(_last_cap())
    short = name[4:] if name.startswith("CAP_") else None
    return short in CAPABILITIES and CAPABILITIES.index(short) <= _last_cap_cache[0]


def _bad(rule: str) -> Exception:
    from krun.runtime.resources import Bad

    return Bad(rule)


def _show(value: Any) -> str:
    from krun.runtime.resources import show

    return show(value)


def _known_cap(name: str) -> None:
    if not is_known_capability(name):
        raise _bad(f"unknown capability {_show(name)}")


def _env_entry(entry: str) -> None:
    # runc's rules (libcontainer's populateProcessEnvironment); libcrun passes anything.
    name, eq, _ = entry.partition("=")
    if not eq:
        raise _bad(f"invalid environment variable {_show(entry)}: missing '='")
    if not name:
        raise _bad(f"invalid environment variable {_show(entry)}: name cannot be empty")


def _absolute(path: str) -> None:
    if not path.startswith("/"):
        raise _bad(f"{_show(path)} must be an absolute path")


def _nonempty(text: str) -> None:
    if not text:
        raise _bad("must not be empty")


def _spec_1x(version: str) -> None:
    if not version.startswith("1."):
        raise _bad(f"{_show(version)} is not a runtime-spec 1.x")


_TABLES: dict[str, Any] = {}


def tables() -> dict[str, Any]:
    """The type tables of config.json ("config"), of a process ("process") and of
    process.capabilities ("caps"). Built on first use: `kill`, `start` and `delete`
    import this module and never check a config."""
    if _TABLES:
        return _TABLES
    from krun.runtime.resources import I32, I64, RESOURCES, U32, U64, Arr, Check, Int, Map, Obj

    # The members of config.json that krun or libcrun read, with the runtime-spec's types
    # (specs-go: uint32 ids, int64 device numbers...). What is not here, libcrun checks.
    caps = Obj({s: Arr(Check(_known_cap, then=str)) for s in CAP_SETS})
    id_mapping = Obj({"containerID": U32, "hostID": U32, "size": U32})
    process = Obj({
        "terminal": bool,
        "consoleSize": Obj({"height": U32, "width": U32}),
        "user": Obj({"uid": U32, "gid": U32, "umask": U32, "additionalGids": Arr(U32),
                     "username": str}),
        "args": Arr(str, nonempty=True),
        "commandLine": str,
        "env": Arr(Check(_env_entry, then=str)),
        "cwd": Check(_absolute, then=str),
        "capabilities": caps,
        "rlimits": Arr(Obj({"type": str, "soft": U64, "hard": U64}, required=("type",))),
        "noNewPrivileges": bool,
        "apparmorProfile": str,
        "oomScoreAdj": I32,
        "selinuxLabel": str,
        "ioPriority": Obj({"class": str, "priority": I32}),
        "scheduler": Obj({"policy": str, "nice": I32, "priority": I32, "flags": Arr(str),
                          "runtime": U64, "deadline": U64, "period": U64}),
    }, required=("args", "cwd"))
    hook = Obj({"path": str, "args": Arr(str), "env": Arr(str),
                "timeout": Int(1, (1 << 31) - 1)}, required=("path",))
    config = Obj({
        "ociVersion": Check(_spec_1x, then=str),
        "root": Obj({"path": Check(_nonempty, then=str), "readonly": bool},
                    required=("path",)),
        "process": process,
        "hostname": str,
        "domainname": str,
        "mounts": Arr(Obj({"destination": str, "source": str, "type": str,
                           "options": Arr(str), "uidMappings": Arr(id_mapping),
                           "gidMappings": Arr(id_mapping)}, required=("destination",))),
        "hooks": Obj({name: Arr(hook) for name in (
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop")}),
        "annotations": Map(str),
        "linux": Obj({
            "namespaces": Arr(Obj({"type": str, "path": str}, required=("type",))),
            "uidMappings": Arr(id_mapping),
            "gidMappings": Arr(id_mapping),
            "devices": Arr(Obj({"type": str, "path": str, "major": I64, "minor": I64,
                                "fileMode": U32, "uid": U32, "gid": U32},
                               required=("type", "path"))),
            "cgroupsPath": str,
            "resources": RESOURCES,
            "sysctl": Map(str),
            "rootfsPropagation": str,
            "maskedPaths": Arr(str),
            "readonlyPaths": Arr(str),
            "mountLabel": str,
        }),
    }, required=("ociVersion", "root"))
    _TABLES.update(caps=caps, process=process, config=config)
    return _TABLES


def _check(value: Any, table: str, where: str, root: str) -> None:
    from krun.runtime.resources import check

    check(value, tables()[table], where, root)


def check_capabilities(caps: Any, where: str) -> None:
    if caps is not None:
        _check(caps, "caps", where, "")


def check_process(process: Any, path: str, where: str = "config.json") -> None:
    """A process object (config.json's, or exec's with path `$`) against its table."""
    _check(process, "process", where, path)


def check_config(config: Any, where: str = "config.json") -> None:
    _check(config, "config", where, "$")
    # runc's rule, which libcrun applies only after it has mounted /proc, /dev and /sys:
    # without a mount namespace those mounts are the host's, and a failed create would
    # leave them all behind.
    namespaces = {ns["type"] for ns in config.get("linux", {}).get("namespaces", [])}
    for key in ("hostname", "domainname"):
        if config.get(key) and "uts" not in namespaces:
            raise InvalidConfig(f"{where}: $.{key}: unable to set {key} without a private "
                                "UTS namespace")


def load_bundle(bundle: str, config_file: str | None = None) -> Bundle:
    """The bundle at `bundle`, with its config.json or (crun's --config) `config_file`,
    which is relative to the bundle as in crun."""
    path = os.path.abspath(bundle)
    _require_dir(path, "bundle")
    config_path = os.path.join(path, config_file or "config.json")
    label = os.path.basename(config_path) if config_file else "config.json"
    config = json.read_object(config_path, label)
    check_config(config, label)
    rootfs = os.path.join(path, config["root"]["path"])
    _require_dir(rootfs, "rootfs")
    return Bundle(path=path, config_path=config_path, config=config, rootfs=rootfs)


def _require_dir(path: str, what: str) -> None:
    """A directory this process can enter. Unprivileged, one it may not search would
    fail deep in libcrun (as "cannot open `proc`"): it is named here instead."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KrunError(f"{what} {path}: no such file or directory") from None
    except NotADirectoryError:
        raise KrunError(f"{what} {path}: not a directory") from None
    except OSError as e:
        raise path_error("stat", e, path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise KrunError(f"{what} {path}: not a directory")
    try:
        os.stat(os.path.join(path, "."))
    except OSError as e:
        raise path_error("open", e, path) from None
