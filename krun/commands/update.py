"""`krun update`: resources from --resources FILE (`-` for stdin) and/or runc's flags.

The resources object is type-checked against the runtime-spec's linux.resources
(krun.runtime.resources) before the flags are merged into it, and each flag against the
type of the member it sets, so a wrong type is one line naming its JSON path or flag.
"""

from __future__ import annotations

from types import SimpleNamespace

from krun import fastjson as json
from krun.errors import UsageError
from krun.runtime import container
from krun.runtime.resources import RESOURCES, check_resources

MAX_RESOURCES_BYTES = 1 << 20  # a resources object is a few hundred bytes

# flag -> (section, key): the linux.resources paths runc's update flags set.
_FLAGS = {
    "memory": ("memory", "limit"), "memory_swap": ("memory", "swap"),
    "cpu_shares": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
    "cpu_period": ("cpu", "period"), "cpuset_cpus": ("cpu", "cpus"),
    "cpuset_mems": ("cpu", "mems"), "pids_limit": ("pids", "limit"),
}


def _flag_value(flag: str, text: str, section: str, key: str) -> int | str:
    kind = RESOURCES.fields[section].fields[key]
    if kind is str:
        return text
    digits = text[1:] if text[:1] == "-" else text
    # int() alone would also take " 1", "+1" and "1_000".
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"invalid --{flag} {text!r}: expected an integer")
    # More than 20 digits is out of any 64-bit range (and int() has a digit limit).
    value = int(text) if len(digits) <= 20 else kind.hi + 1
    if not kind.lo <= value <= kind.hi:
        raise UsageError(f"invalid --{flag} {text!r}: {kind.rule}")
    return value


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    resources = {}
    if o.resources:
        resources = json.read_object(o.resources, "resources JSON", MAX_RESOURCES_BYTES)
        check_resources(resources, f"resources JSON {o.resources}")
    for flag, (section, key) in _FLAGS.items():
        value = getattr(o, flag)
        if value is None:
            continue
        resources.setdefault(section, {})[key] = _flag_value(flag.replace("_", "-"), value,
                                                              section, key)
    if not resources:
        raise UsageError("update: nothing to change (give --resources or a limit flag)")
    container.update(g, o.container_id, resources)
    return 0
