"""`krun update`: resources from --resources FILE (`-` for stdin) and/or runc's flags.

The resources object is type-checked against the runtime-spec's linux.resources
(krun.runtime.resources) before the flags are merged into it, and each flag against the
type of the member it sets, so a wrong type is one line naming its JSON path or flag.
"""

from __future__ import annotations

from krun import fastjson as json
from krun.errors import UsageError
from krun.runtime import container
from krun.runtime.resources import RESOURCES, check_resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace

MAX_RESOURCES_BYTES = 1 << 20  # a resources object is a few hundred bytes

# flag -> (section, key): the linux.resources paths runc's (and crun's) update flags set.
_FLAGS = {
    "memory": ("memory", "limit"), "memory_reservation": ("memory", "reservation"),
    "memory_swap": ("memory", "swap"), "kernel_memory": ("memory", "kernel"),
    "kernel_memory_tcp": ("memory", "kernelTCP"),
    "cpu_share": ("cpu", "shares"), "cpu_shares": ("cpu", "shares"),
    "cpu_quota": ("cpu", "quota"), "cpu_period": ("cpu", "period"),
    "cpu_rt_period": ("cpu", "realtimePeriod"), "cpu_rt_runtime": ("cpu", "realtimeRuntime"),
    "cpuset_cpus": ("cpu", "cpus"), "cpuset_mems": ("cpu", "mems"),
    "blkio_weight": ("blockIO", "weight"), "pids_limit": ("pids", "limit"),
}
# Sizes in runc's notation (go-units RAMInBytes): 512, 50M, 1.5g, 2GiB; binary multiples.
_SIZED = {"memory", "memory_reservation", "memory_swap", "kernel_memory", "kernel_memory_tcp"}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int | None:
    """A size as runc reads it, or None if it is not one."""
    import re

    m = re.fullmatch(r"(\d{1,20}(?:\.\d{1,20})?) ?([kKmMgGtTpP]?)(?:[iI]?[bB])?", text)
    if m is None:
        return None
    number, unit = m.groups()
    from decimal import Decimal

    return int(Decimal(number) * _UNITS[unit.lower()])


def _flag_value(dest: str, text: str, section: str, key: str) -> int | str:
    flag = dest.replace("_", "-")
    kind = RESOURCES.fields[section].fields[key]
    if kind is str:
        return text
    if dest in _SIZED and text != "-1":
        value = parse_size(text)
        if value is None:
            raise UsageError(f"invalid --{flag} {text!r}: expected bytes or a size "
                             "such as 512k, 50M or 1g")
    else:
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
        resources.setdefault(section, {})[key] = _flag_value(flag, value, section, key)
    if not resources:
        raise UsageError("update: nothing to change (give --resources or a limit flag)")
    container.update(g, o.container_id, resources)
    return 0
