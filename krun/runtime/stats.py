"""A container's cgroup statistics and OOM notifications, as runc 1.1.5's `events` has them.

`read_stats` returns the `data` of a stats event: runc's `types.Stats` as Go's
encoding/json writes it (field order, `omitempty`; structs are never omitted, maps come
out sorted). Each controller is read where libcrun put the container: in its cgroup v1
hierarchy (`/sys/fs/cgroup/<controller>/<path>`) when the controller is mounted there,
else in the unified hierarchy when the container's cgroup has it (`cgroup.controllers`).
That covers legacy, hybrid (this VM: every controller on v1, the unified tree holds no
controller) and pure cgroup v2 hosts with one reader. Values follow runc's readers
(libcontainer/cgroups/fs and fs2): v1 cpuacct.stat ticks become nanoseconds at 100 Hz,
v2 microseconds become nanoseconds, v2 swap is reported as memory+swap like v1's memsw,
`max` reads as 2^64-1 except for pids.max (0: no limit). A file that cannot be read counts
as absent (zero), so a container going away mid-read yields zeros, not an error.

`OomWatch` tells about OOM kills: on v1 through an eventfd registered on
memory.oom_control (cgroup.event_control), as runc does; otherwise (v2, or when the
registration is refused) by polling the oom_kill counter of memory.oom_control or
memory.events.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
UINT64_MAX = (1 << 64) - 1
CLOCK_TICKS = 100  # USER_HZ, as runc hard-codes it for cpuacct.stat
NS_PER_SEC = 1_000_000_000


class Cgroups:
    """Where each controller of one container's cgroup is read."""

    def __init__(self, cgroup_path: str, root: str = CGROUP_ROOT) -> None:
        parts = [p for p in cgroup_path.split("/") if p and p != "."]
        if ".." in parts:
            parts = []  # a status file krun did not write: read nothing rather than elsewhere
        self.rel = "/".join(parts)
        self.root = root
        if os.path.exists(f"{root}/cgroup.controllers"):
            self.legacy = False  # pure cgroup v2: /sys/fs/cgroup is the unified tree
            unified: str | None = root
        else:
            self.legacy = True
            unified = f"{root}/unified" if os.path.exists(
                f"{root}/unified/cgroup.controllers") else None
        self.unified = (f"{unified}/{self.rel}" if self.rel else unified) if unified else None
        text = _read(self.unified, "cgroup.controllers") if self.unified and parts else None
        self.v2_controllers = set(text.split()) if text else set()

    def v1(self, controller: str) -> str | None:
        """The container's directory in the v1 hierarchy of `controller`, if there is one."""
        if not self.legacy or not self.rel:
            return None
        path = f"{self.root}/{controller}/{self.rel}"
        # `tasks` exists only in v1 cgroups: a v2 directory of the same name is not one.
        return path if os.path.exists(f"{path}/tasks") else None

    def v2(self, controller: str) -> str | None:
        """The container's unified directory, if `controller` is enabled for it."""
        return self.unified if controller in self.v2_controllers else None

    def memory(self) -> tuple[str | None, int]:
        """(directory, cgroup version) of the memory controller; (None, 0) without one."""
        d = self.v1("memory")
        if d:
            return d, 1
        d = self.v2("memory")
        return (d, 2) if d else (None, 0)


# --- file readers ----------------------------------------------------------------------

def _read(d: str | None, name: str) -> str | None:
    if not d:
        return None
    try:
        with open(f"{d}/{name}") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _parse_uint(text: str) -> int | None:
    """fscommon.ParseUint: `max` is 2^64-1, a negative number 0, junk None."""
    text = text.strip()
    if text == "max":
        return UINT64_MAX
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return 0 if value < 0 else min(value, UINT64_MAX)


def _uint(d: str | None, name: str) -> int:
    text = _read(d, name)
    value = _parse_uint(text) if text is not None else None
    return value or 0


def _int(d: str | None, name: str) -> int:
    text = _read(d, name)
    try:
        return int(text.strip()) if text is not None else 0
    except ValueError:
        return 0


def _keyed(d: str | None, name: str) -> dict[str, int]:
    """A flat keyed file (`key value` lines): memory.stat, cpu.stat, memory.events."""
    out: dict[str, int] = {}
    for line in (_read(d, name) or "").splitlines():
        fields = line.split()
        if len(fields) == 2:
            value = _parse_uint(fields[1])
            if value is not None:
                out[fields[0]] = value
    return out


def _uints(text: str | None) -> list[int]:
    out = []
    for field in (text or "").split():
        value = _parse_uint(field)
        if value is None:
            return []
        out.append(value)
    return out


def _cpu_list(text: str | None) -> list[int]:
    """cpuset.cpus / cpuset.mems ("0-3,8") as the list of numbers runc reports."""
    out: list[int] = []
    for item in (text or "").strip().split(","):
        if not item:
            continue
        low, _, high = item.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            return []
        if first > last or last > 0xFFFF:
            return []
        out.extend(range(first, last + 1))
    return out


# --- controllers -----------------------------------------------------------------------

def _cpu(cg: Cgroups) -> dict[str, Any]:
    total = kernel = user = periods = throttled = throttled_time = 0
    percpu: list[int] = []
    percpu_kernel: list[int] = []
    percpu_user: list[int] = []
    acct = cg.v1("cpuacct")
    if acct:
        fields = (_read(acct, "cpuacct.stat") or "").split()
        if len(fields) >= 4 and fields[0] == "user" and fields[2] == "system":
            user = (_parse_uint(fields[1]) or 0) * NS_PER_SEC // CLOCK_TICKS
            kernel = (_parse_uint(fields[3]) or 0) * NS_PER_SEC // CLOCK_TICKS
        total = _uint(acct, "cpuacct.usage")
        percpu = _uints(_read(acct, "cpuacct.usage_percpu"))
        for line in (_read(acct, "cpuacct.usage_all") or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) == 3 and cols[1].isdigit() and cols[2].isdigit():
                percpu_user.append(int(cols[1]))
                percpu_kernel.append(int(cols[2]))
    cpu = cg.v1("cpu")
    if cpu:
        stat = _keyed(cpu, "cpu.stat")
        periods, throttled = stat.get("nr_periods", 0), stat.get("nr_throttled", 0)
        throttled_time = stat.get("throttled_time", 0)
    if not acct and not cpu and cg.unified:
        # cgroup v2: cpu.stat is there even without the cpu controller (usage only).
        stat = _keyed(cg.unified, "cpu.stat")
        total = stat.get("usage_usec", 0) * 1000
        user = stat.get("user_usec", 0) * 1000
        kernel = stat.get("system_usec", 0) * 1000
        periods, throttled = stat.get("nr_periods", 0), stat.get("nr_throttled", 0)
        throttled_time = stat.get("throttled_usec", 0) * 1000
    usage: dict[str, Any] = {}
    if total:
        usage["total"] = total
    for key, values in (("percpu", percpu), ("percpu_kernel", percpu_kernel),
                        ("percpu_user", percpu_user)):
        if values:
            usage[key] = values
    usage["kernel"] = kernel
    usage["user"] = user
    throttling = {k: v for k, v in (("periods", periods), ("throttledPeriods", throttled),
                                    ("throttledTime", throttled_time)) if v}
    return {"usage": usage, "throttling": throttling}


def _cpuset(cg: Cgroups) -> dict[str, Any]:
    d = cg.v1("cpuset")  # runc 1.1 reads no cpuset stats on cgroup v2
    out: dict[str, Any] = {}
    cpus = _cpu_list(_read(d, "cpuset.cpus"))
    if cpus:
        out["cpus"] = cpus
    out["cpu_exclusive"] = _uint(d, "cpuset.cpu_exclusive")
    mems = _cpu_list(_read(d, "cpuset.mems"))
    if mems:
        out["mems"] = mems
    for key in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
                "memory_spread_slab", "memory_pressure", "sched_load_balance"):
        out[key] = _uint(d, f"cpuset.{key}")
    out["sched_relax_domain_level"] = _int(d, "cpuset.sched_relax_domain_level")
    return out


def _memory_entry(usage: int = 0, max_usage: int = 0, failcnt: int = 0,
                  limit: int = 0) -> dict[str, int]:
    entry = {"limit": limit}
    if usage:
        entry["usage"] = usage
    if max_usage:
        entry["max"] = max_usage
    entry["failcnt"] = failcnt
    return entry


def _memory_v1(d: str, module: str) -> dict[str, int]:
    prefix = f"memory.{module}." if module else "memory."
    if module and not os.path.exists(f"{d}/{prefix}usage_in_bytes"):
        return _memory_entry()  # no swap or kmem accounting in this kernel
    return _memory_entry(_uint(d, prefix + "usage_in_bytes"),
                         _uint(d, prefix + "max_usage_in_bytes"),
                         _uint(d, prefix + "failcnt"), _uint(d, prefix + "limit_in_bytes"))


def _memory(cg: Cgroups) -> dict[str, Any]:
    d, version = cg.memory()
    raw = _keyed(d, "memory.stat") if d else {}
    out: dict[str, Any] = {}
    if version == 1 and d:
        cache = raw.get("cache", 0)
        usage, swap = _memory_v1(d, ""), _memory_v1(d, "memsw")
        kernel, kernel_tcp = _memory_v1(d, "kmem"), _memory_v1(d, "kmem.tcp")
    elif version == 2 and d:
        cache = raw.get("file", 0)
        mem_usage, mem_limit = _uint(d, "memory.current"), _uint(d, "memory.max")
        usage = _memory_entry(usage=mem_usage, limit=mem_limit)
        if os.path.exists(f"{d}/memory.swap.current"):
            # v1 reports memory+swap: so does runc on v2.
            swap_limit = _uint(d, "memory.swap.max")
            if swap_limit != UINT64_MAX:
                swap_limit = min(swap_limit + mem_limit, UINT64_MAX)
            swap = _memory_entry(usage=_uint(d, "memory.swap.current") + mem_usage,
                                 limit=swap_limit)
        else:
            swap = _memory_entry()
        kernel = kernel_tcp = _memory_entry()
    else:
        cache = 0
        usage = swap = kernel = kernel_tcp = _memory_entry()
    if cache:
        out["cache"] = cache
    out.update(usage=usage, swap=swap, kernel=kernel, kernelTCP=kernel_tcp)
    if raw:
        out["raw"] = dict(sorted(raw.items()))
    return out


def _pids(cg: Cgroups) -> dict[str, int]:
    d = cg.v1("pids") or cg.v2("pids")
    current = _uint(d, "pids.current")
    text = (_read(d, "pids.max") or "").strip()
    limit = 0 if text == "max" else (_parse_uint(text) or 0) if text else 0
    return {k: v for k, v in (("current", current), ("limit", limit)) if v}


def _blkio_entries(text: str | None) -> list[dict[str, Any]] | None:
    """`MAJ:MIN [Op] value` lines; None for an empty or unreadable file."""
    entries: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 3:
            continue  # `Total N`
        try:
            major, minor = int(fields[0]), int(fields[1])
            op, value = (fields[2], int(fields[3])) if len(fields) >= 4 else ("", int(fields[2]))
        except ValueError:
            continue
        entry: dict[str, Any] = {}
        for key, v in (("major", major), ("minor", minor), ("op", op), ("value", value)):
            if v:
                entry[key] = v
        entries.append(entry)
    return entries or None


# runc's order of preference among the v1 blkio files: the first group whose first file
# has entries is used. (key in types.Blkio, file)
_BLKIO_GROUPS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("sectorsRecursive", "blkio.bfq.sectors_recursive"),
     ("ioServiceTimeRecursive", "blkio.bfq.io_service_time_recursive"),
     ("ioWaitTimeRecursive", "blkio.bfq.io_wait_time_recursive"),
     ("ioMergedRecursive", "blkio.bfq.io_merged_recursive"),
     ("ioQueueRecursive", "blkio.bfq.io_queued_recursive"),
     ("ioTimeRecursive", "blkio.bfq.time_recursive"),
     ("ioServicedRecursive", "blkio.bfq.io_serviced_recursive"),
     ("ioServiceBytesRecursive", "blkio.bfq.io_service_bytes_recursive")),
    (("ioServicedRecursive", "blkio.bfq.io_serviced_recursive"),
     ("ioServiceBytesRecursive", "blkio.bfq.io_service_bytes_recursive")),
    (("sectorsRecursive", "blkio.sectors_recursive"),
     ("ioServiceTimeRecursive", "blkio.io_service_time_recursive"),
     ("ioWaitTimeRecursive", "blkio.io_wait_time_recursive"),
     ("ioMergedRecursive", "blkio.io_merged_recursive"),
     ("ioQueueRecursive", "blkio.io_queued_recursive"),
     ("ioTimeRecursive", "blkio.time_recursive"),
     ("ioServicedRecursive", "blkio.io_serviced_recursive"),
     ("ioServiceBytesRecursive", "blkio.io_service_bytes_recursive")),
    (("ioServicedRecursive", "blkio.throttle.io_serviced_recursive"),
     ("ioServiceBytesRecursive", "blkio.throttle.io_service_bytes_recursive")),
    (("ioServicedRecursive", "blkio.throttle.io_serviced"),
     ("ioServiceBytesRecursive", "blkio.throttle.io_service_bytes")),
)
_BLKIO_ORDER = ("ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive",
                "ioServiceTimeRecursive", "ioWaitTimeRecursive", "ioMergedRecursive",
                "ioTimeRecursive", "sectorsRecursive")


def _blkio(cg: Cgroups) -> dict[str, Any]:
    found: dict[str, list[dict[str, Any]]] = {}
    d = cg.v1("blkio")
    if d:
        for group in _BLKIO_GROUPS:
            for key, name in group:
                entries = _blkio_entries(_read(d, name))
                if entries is None:
                    break
                found[key] = entries
            if found:
                break
    else:
        d = cg.v2("io")
        for line in (_read(d, "io.stat") or "").splitlines():
            fields = line.split()
            major, _, minor = fields[0].partition(":") if fields else ("", "", "")
            if not (major.isdigit() and minor.isdigit()):
                continue
            for item in fields[1:]:
                name, _, text = item.partition("=")
                target = {"rbytes": ("ioServiceBytesRecursive", "Read"),
                          "wbytes": ("ioServiceBytesRecursive", "Write"),
                          "rios": ("ioServicedRecursive", "Read"),
                          "wios": ("ioServicedRecursive", "Write")}.get(name)
                if target is None or not text.isdigit():
                    continue
                entry: dict[str, Any] = {}
                for key, v in (("major", int(major)), ("minor", int(minor)),
                               ("op", target[1]), ("value", int(text))):
                    if v:
                        entry[key] = v
                found.setdefault(target[0], []).append(entry)
    return {key: found[key] for key in _BLKIO_ORDER if key in found}


def _hugetlb(cg: Cgroups) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    d = cg.v1("hugetlb")
    version = 1
    if not d:
        d, version = cg.v2("hugetlb"), 2
    if not d:
        return out
    try:
        names = os.listdir(d)
    except OSError:
        return out
    suffix = ".usage_in_bytes" if version == 1 else ".current"
    sizes = sorted(n[len("hugetlb."):-len(suffix)] for n in names
                   if n.startswith("hugetlb.") and n.endswith(suffix) and ".rsvd." not in n)
    for size in sizes:
        if version == 1:
            usage = _uint(d, f"hugetlb.{size}.usage_in_bytes")
            max_usage = _uint(d, f"hugetlb.{size}.max_usage_in_bytes")
            failcnt = _uint(d, f"hugetlb.{size}.failcnt")
        else:
            usage, max_usage = _uint(d, f"hugetlb.{size}.current"), 0
            failcnt = _keyed(d, f"hugetlb.{size}.events").get("max", 0)
        entry = {k: v for k, v in (("usage", usage), ("max", max_usage)) if v}
        entry["failcnt"] = failcnt
        out[size] = entry
    return out


def read_stats(cg: Cgroups) -> dict[str, Any]:
    """The `data` of a runc stats event."""
    return {
        "cpu": _cpu(cg),
        "cpuset": _cpuset(cg),
        "memory": _memory(cg),
        "pids": _pids(cg),
        "blkio": _blkio(cg),
        "hugetlb": _hugetlb(cg),
        "intel_rdt": {},
        "network_interfaces": None,
    }


# --- OOM -------------------------------------------------------------------------------

class OomWatch:
    """OOM notifications for one container. `fd` is an fd to poll for readability (the
    v1 eventfd), or None: then call `check` at least once per interval.

    The eventfd is only a wake-up: the kernel signals it more than once per OOM (and
    when the cgroup is removed), so what counts is the oom_kill counter, and on v1 the
    start of an `under_oom` episode (an OOM with the killer disabled). The counter may
    move just after the wake-up, so it is polled for a moment after each one."""

    SETTLE = 1.0  # seconds of polling after an eventfd wake-up

    def __init__(self, cg: Cgroups) -> None:
        self.fd: int | None = None
        self._control_fd: int | None = None
        self.dir, self.version = cg.memory()
        self._file = "memory.oom_control" if self.version == 1 else "memory.events"
        self._kills, self._under = self._read()
        self._settle_until = 0.0
        if self.version == 1 and self.dir:
            self._register()

    def _register(self) -> None:
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            self._control_fd = os.open(f"{self.dir}/memory.oom_control",
                                       os.O_RDONLY | os.O_CLOEXEC)
            with open(f"{self.dir}/cgroup.event_control", "w") as f:
                f.write(f"{efd} {self._control_fd}")
        except OSError:
            os.close(efd)
            if self._control_fd is not None:
                os.close(self._control_fd)
                self._control_fd = None
            return  # the counter, polled, will do
        self.fd = efd

    def _read(self) -> tuple[int, bool]:
        values = _keyed(self.dir, self._file) if self.dir else {}
        return values.get("oom_kill", 0), values.get("under_oom", 0) == 1

    def polling(self) -> bool:
        """Whether `check` must be called often (≤ 0.1 s) rather than on `fd` alone."""
        import time

        return self.fd is None or time.monotonic() < self._settle_until

    def check(self) -> bool:
        """Whether the container met the OOM killer since the last check."""
        if self.fd is not None:
            import time

            try:
                os.eventfd_read(self.fd)
                self._settle_until = time.monotonic() + self.SETTLE
            except BlockingIOError:
                if time.monotonic() >= self._settle_until:
                    return False
        kills, under = self._read()
        fired = kills > self._kills or (under and not self._under)
        self._kills, self._under = max(kills, self._kills), under
        return fired

    def close(self) -> None:
        for fd in (self.fd, self._control_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self._control_fd = None
