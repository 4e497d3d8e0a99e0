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


class Lease:
    def __init__(self, ip: str, prefix: int, gateway: str) -> None:
        self.ip, self.prefix, self.gateway = ip, prefix, gateway


class _Locked:
    def __init__(self) -> None:
        os.makedirs(os.path.dirname(ALLOCATIONS), mode=0o700, exist_ok=True)
        self.fd = os.open(ALLOCATIONS, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        data = os.pread(self.fd, 1 << 20, 0)
        # ip -> [root, container id]
        self.leases: dict[str, list[str]] = json.loads(data).get("leases", {}) if data else {}

    def save(self) -> None:
        data = json.dumps({"leases": self.leases}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        os.close(self.fd)


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
