"""The krun0 bridge and a container's veth, with pyroute2 (never the `ip` binary).

Runs as an OCI createRuntime hook: the container's namespaces exist and its process
has not started, so eth0, its address, loopback and the default route are all in place
before the user's program runs.
"""

from __future__ import annotations

import errno

BRIDGE = "krun0"


def veth_name(container_id: str) -> str:
    try:
        from _sha256 import sha256  # builtin: hashlib would load OpenSSL (~4 ms)
    except ImportError:  # CPython >= 3.12 names it _sha2
        from hashlib import sha256
    return "kr" + sha256(container_id.encode()).hexdigest()[:12]


def _ensure_bridge(ip: object, gateway: str, prefix: int) -> int:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ip.link("add", ifname=BRIDGE, kind="bridge")  # type: ignore[attr-defined]
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    index = ip.link_lookup(ifname=BRIDGE)[0]  # type: ignore[attr-defined]
    try:
        ip.addr("add", index=index, address=gateway, prefixlen=prefix)  # type: ignore[attr-defined]
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    ip.link("set", index=index, state="up")  # type: ignore[attr-defined]
    return index


def wire(container_id: str, pid: int, address: str, prefix: int, gateway: str) -> None:
    from pyroute2.iproute.linux import IPRoute

    host_if = veth_name(container_id)
    peer = host_if + "p"
    with IPRoute() as ip:
        bridge = _ensure_bridge(ip, gateway, prefix)
        ip.link("add", ifname=host_if, kind="veth", peer={"ifname": peer})
        host_index = ip.link_lookup(ifname=host_if)[0]
        peer_index = ip.link_lookup(ifname=peer)[0]
        ip.link("set", index=peer_index, net_ns_fd=f"/proc/{pid}/ns/net")
        ip.link("set", index=host_index, master=bridge, state="up")
    with IPRoute(netns=f"/proc/{pid}/ns/net") as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        index = ns.link_lookup(ifname=peer)[0]
        ns.link("set", index=index, ifname="eth0")
        ns.addr("add", index=index, address=address, prefixlen=prefix)
        ns.link("set", index=index, state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def _delete_link(ip: object, index: int) -> None:
    """Delete a link that may go away by itself meanwhile: a veth dies with its
    container's netns, and a concurrent delete may remove the bridge first."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ip.link("del", index=index)  # type: ignore[attr-defined]
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise


def remove_bridge_if_unused() -> None:
    from pyroute2.iproute.linux import IPRoute

    with IPRoute() as ip:
        found = ip.link_lookup(ifname=BRIDGE)
        if not found:
            return
        ports = [link for link in ip.get_links() if link.get_attr("IFLA_MASTER") == found[0]]
        if not ports:
            _delete_link(ip, found[0])


def remove_veth(container_id: str) -> None:
    """The host end, if the container's netns did not take it down already."""
    from pyroute2.iproute.linux import IPRoute

    with IPRoute() as ip:
        found = ip.link_lookup(ifname=veth_name(container_id))
        if found:
            _delete_link(ip, found[0])
