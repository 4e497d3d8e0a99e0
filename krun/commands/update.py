"""`krun update`: resources from --resources FILE (`-` for stdin) and/or runc's flags."""

from __future__ import annotations

from types import SimpleNamespace

from krun import fastjson as json
from krun.errors import UsageError
from krun.runtime import container

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    pass


# flag -> (section, key): the linux.resources paths runc's update flags set.
_FLAGS = {
    "memory": ("memory", "limit"), "memory_swap": ("memory", "swap"),
    "cpu_shares": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
    "cpu_period": ("cpu", "period"), "cpuset_cpus": ("cpu", "cpus"),
    "cpuset_mems": ("cpu", "mems"), "pids_limit": ("pids", "limit"),
}
_STRING_KEYS = {"cpus", "mems"}


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    resources = json.read_object(o.resources, "resources JSON") if o.resources else {}
    for flag, (section, key) in _FLAGS.items():
        value = getattr(o, flag)
        if value is None:
            continue
        if key not in _STRING_KEYS:
            try:
                value = int(value)
            except ValueError:
                raise UsageError(f"invalid --{flag.replace('_', '-')} {value!r}: "
                                 "expected an integer") from None
        resources.setdefault(section, {})[key] = value
    if not resources:
        raise UsageError("update: nothing to change (give --resources or a limit flag)")
    container.update(g, o.container_id, resources)
    return 0
