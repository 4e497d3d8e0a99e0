"""`krun exec`: a process from --process FILE, or built from inline args and the
container's own process settings (env, cwd, user, capabilities), as runc does."""

from __future__ import annotations

from types import SimpleNamespace

from krun import fastjson as json
from krun.errors import UsageError
from krun.runtime import container

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any


def _merge_env(base: list[str], overrides: list[str]) -> list[str]:
    env = {e.split("=", 1)[0]: e for e in base}
    for e in overrides:
        if "=" not in e:
            raise UsageError(f"invalid --env {e!r}: expected KEY=VALUE")
        env[e.split("=", 1)[0]] = e
    return list(env.values())


def _user(spec: str, base: dict[str, Any]) -> dict[str, Any]:
    uid, _, gid = spec.partition(":")
    try:
        user = {"uid": int(uid), "gid": int(gid) if gid else 0}
    except ValueError:
        raise UsageError(f"invalid --user {spec!r}: expected UID[:GID] (numbers)") from None
    if not gid and "gid" in base and base.get("uid") == user["uid"]:
        user["gid"] = base["gid"]
    return user


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


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    st = container.load(g, o.container_id)
    if o.process:
        if o.command:
            raise UsageError("exec: give either --process or a command, not both")
        process = json.read_object(o.process, "process file")
        _apply_flags(process, o)
    else:
        if not o.command:
            raise UsageError("exec: a command is required (or --process FILE)")
        process = build_process(container.container_config(st), o)
    if o.additional_gids:
        try:
            process.setdefault("user", {})["additionalGids"] = [int(x) for x in o.additional_gids]
        except ValueError:
            raise UsageError("invalid --additional-gids: expected numbers") from None
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
    opts = container.ExecOptions(process=process, pid_file=o.pid_file,
                                 console_socket=o.console_socket,
                                 preserve_fds=o.preserve_fds, detach=o.detach)
    return container.exec_process(g, st, opts)
