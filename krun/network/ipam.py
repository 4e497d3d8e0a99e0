"""Addresses on krun0, allocated from a file under krun's root with a lock.

There is one krun0 per host, so there is one allocation file, under the default root
(`/run/krun/.krun/network.json`) whatever --root a container uses; each lease names its
container's root and id. Leases of containers that no longer exist and are not being
created (their record is not locked) are reclaimed, which also frees the address of a
krun that crashed mid-create.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os

from krun import fastjson as json
from krun.errors import KrunError
from krun.runtime import records

DEFAULT_SUBNET = "10.213.0.0/24"
ALLOCATIONS = "/run/krun/.krun/network.json"
# One lock for krun's whole host network state: the allocation file, and krun's NAT
# chain, which one create may be adding while another's delete removes it.
LOCK = "/run/krun/.krun/network.lock"


class Lease:
    def __init__(self, ip: str, prefix: int, gateway: str) -> None:
        self.ip, self.prefix, self.gateway = ip, prefix, gateway


class HostLock:
    """Exclusive use of krun's host network state (a context manager)."""

    def __enter__(self) -> HostLock:
        os.makedirs(os.path.dirname(LOCK), mode=0o700, exist_ok=True)
        self.fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class _Locked:
    """The allocation file under the host lock. It is replaced (written aside, then
    renamed), never rewritten in place: a krun killed mid-write loses no lease."""

    def __init__(self) -> None:
        self.lock = HostLock().__enter__()
        try:
            with open(ALLOCATIONS, "rb") as f:
                data = f.read(1 << 20)
        except FileNotFoundError:
            data = b""
        try:
            # ip -> [root, container id]
            leases = json.loads(data).get("leases", {}) if data.strip() else {}
        except (ValueError, AttributeError):
            leases = {}  # not krun's writing: start over rather than fail every create
        self.leases: dict[str, list[str]] = leases if isinstance(leases, dict) else {}

    def save(self) -> None:
        tmp = ALLOCATIONS + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = json.dumps({"leases": self.leases}).encode()
            if os.write(fd, data) != len(data):
                raise OSError(28, os.strerror(28))
        finally:
            os.close(fd)
        os.replace(tmp, ALLOCATIONS)

    def close(self) -> None:
        self.lock.__exit__()


def _stale(owner: list[str]) -> bool:
    root, container_id = owner
    return not os.path.exists(os.path.join(root, container_id)) and \
        not records.is_claimed(root, container_id)


def allocate(root: str, container_id: str, subnet: str, static: str | None) -> Lease:
    net = ipaddress.ip_network(subnet)
    hosts = list(net.hosts())
    gateway = hosts[0]
    me = [os.path.abspath(root), container_id]
    locked = _Locked()
    try:
        for ip, owner in list(locked.leases.items()):
            if owner != me and _stale(owner):
                del locked.leases[ip]
        if static:
            try:
                wanted = ipaddress.ip_address(static)
            except ValueError:
                raise KrunError(f"invalid address {static!r}") from None
            if wanted not in net or wanted in (gateway, net.broadcast_address):
                raise KrunError(f"address {static} is not a container address of {subnet}")
            owner = locked.leases.get(str(wanted))
            if owner and owner != me:
                raise KrunError(f"address {static} is already in use by container "
                                f"{owner[1]!r}")
            chosen = wanted
        else:
            free = (h for h in hosts[1:] if str(h) not in locked.leases)
            chosen = next(free, None)
            if chosen is None:
                raise KrunError(f"no free address left in {subnet}")
        locked.leases[str(chosen)] = me
        locked.save()
    finally:
        locked.close()
    return Lease(str(chosen), net.prefixlen, str(gateway))


def release(root: str, container_id: str) -> int:
    """Drop the container's lease; returns how many leases remain."""
    if not os.path.exists(ALLOCATIONS):
        return 0
    me = [os.path.abspath(root), container_id]
    locked = _Locked()
    try:
        locked.leases = {ip: c for ip, c in locked.leases.items() if c != me}
        locked.save()
        return len(locked.leases)
    finally:
        locked.close()
