"""`krun exec`: a process from --process FILE, or built from inline args and the
container's own process settings (env, cwd, user, capabilities), as runc does.

A process file is type-checked like config.json's process (krun.runtime.bundle), and
every flag is checked as runc checks it, so bad input ends in one line that names the
file's JSON path or the flag.
"""

from __future__ import annotations

from krun import fastjson as json
from krun.errors import KrunError, UsageError
from krun.runtime import container
from krun.runtime.bundle import check_process, is_known_capability
from krun.runtime.resources import U32

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any


def _id_number(text: str) -> int | None:
    """A uid or gid as runc takes it: decimal digits, a uint32. None if it is not one."""
    # int() alone would also take " 1", "+1" and "1_000".
    if not (0 < len(text) <= 10 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= U32.hi else None


def _merge_env(base: list[str], overrides: list[str]) -> list[str]:
    env = {e.split("=", 1)[0]: e for e in base}
    for e in overrides:
        name, eq, _ = e.partition("=")
        if not eq or not name:
            raise UsageError(f"invalid --env {e!r}: expected KEY=VALUE")
        env[name] = e
    return list(env.values())


def _user(spec: str, base: dict[str, Any]) -> dict[str, Any]:
    uid_text, sep, gid_text = spec.partition(":")
    uid = _id_number(uid_text)
    gid = _id_number(gid_text) if sep else 0
    if uid is None or gid is None:
        raise UsageError(f"invalid --user {spec!r}: expected UID[:GID], numbers from 0 to "
                         f"{U32.hi}")
    user = {"uid": uid, "gid": gid}
    if not sep and "gid" in base and base.get("uid") == uid:
        user["gid"] = base["gid"]
    return user


def _check_sub_cgroup(path: str) -> None:
    """exec --cgroup names a cgroup below the container's: libcrun appends it to the
    container's path, so `..` would move the process into any cgroup of the host."""
    if ":" in path:
        raise UsageError(f"invalid --cgroup {path!r}: per-controller sub-cgroups "
                         "(CONTROLLER:PATH) are not supported; give one PATH for all")
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(p in ("", ".", "..") for p in parts) or "\0" in path:
        raise UsageError(f"invalid --cgroup {path!r}: must be a path below the "
                         "container's cgroup, without `.` or `..`")


def _check_flags(o: SimpleNamespace) -> None:
    """The flags, before they touch the process: each error names its flag."""
    if o.cwd and not o.cwd.startswith("/"):
        raise UsageError(f"invalid --cwd {o.cwd!r}: must be an absolute path")
    for gid in o.additional_gids:
        if _id_number(gid) is None:
            raise UsageError(f"invalid --additional-gids {gid!r}: expected a number from 0 "
                             f"to {U32.hi}")
    if o.cgroup is not None:
        _check_sub_cgroup(o.cgroup)
    for cap in o.cap:
        if not is_known_capability(cap):
            raise UsageError(f"invalid --cap {cap!r}: unknown capability")


def _apply_flags(process: dict[str, Any], o: SimpleNamespace) -> None:
    """--tty, --cwd, --env and --user override the process, as in runc."""
    if o.tty:
        process["terminal"] = True
    if o.cwd:
        process["cwd"] = o.cwd
    if o.env:
        process["env"] = _merge_env(process.get("env", []), o.env)
    if o.user:
        process["user"] = _user(o.user, process.get("user", {}))


def build_process(config: dict[str, Any], o: SimpleNamespace) -> dict[str, Any]:
    """The process for `exec ID CMD...`: the container's settings, overridden by flags."""
    base = config.get("process") or {}
    process: dict[str, Any] = {
        "terminal": False,
        "args": list(o.command),
        "env": list(base.get("env", [])),
        "cwd": base.get("cwd", "/"),
        "user": base.get("user", {"uid": 0, "gid": 0}),
    }
    for key in ("capabilities", "apparmorProfile", "selinuxLabel", "noNewPrivileges"):
        if key in base:
            process[key] = base[key]
    _apply_flags(process, o)
    return process


EXEC_FAILED = 255  # runc's status when exec fails before the process runs


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    _check_flags(o)
    try:
        return _exec(g, o)
    except UsageError:
        raise
    except KrunError as e:
        # runc's convention, which engines rely on: 255 says the process never ran,
        # any other status is the process's own.
        e.exit_code = EXEC_FAILED
        raise


def _exec(g: SimpleNamespace, o: SimpleNamespace) -> int:
    st = container.load(g, o.container_id)
    if o.process:
        if o.command:
            raise UsageError("exec: give either --process or a command, not both")
        process = json.read_object(o.process, "process file")
        check_process(process, "$", f"process file {o.process}")
        _apply_flags(process, o)
    else:
        if not o.command:
            raise UsageError("exec: a command is required (or --process FILE)")
        process = build_process(container.container_config(st), o)
    if o.additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(x) for x in o.additional_gids]
    if o.cap:
        caps = process.setdefault("capabilities", {})
        for set_name in ("bounding", "effective", "permitted"):
            caps[set_name] = list(dict.fromkeys(caps.get(set_name, []) + o.cap))
    if o.no_new_privs:
        process["noNewPrivileges"] = True
    if o.process_label:
        process["selinuxLabel"] = o.process_label
    if o.apparmor:
        process["apparmorProfile"] = o.apparmor
    # The flags were checked one by one; this catches what they met in the process.
    check_process(process, "$", "exec: the process")
    opts = container.ExecOptions(process=process, pid_file=o.pid_file,
                                 console_socket=o.console_socket,
                                 preserve_fds=o.preserve_fds, detach=o.detach,
                                 cgroup=o.cgroup, ignore_paused=o.ignore_paused)
    return container.exec_process(g, st, opts)
