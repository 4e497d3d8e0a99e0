"""Network set-up and teardown around a container's lifecycle."""

from __future__ import annotations

import os
import sys

from krun.hostconfig import section
from krun.network import ipam, nat
from krun.network.settings import ADDRESS_ANNOTATION, NetworkRequest
from krun.runtime.bundle import Bundle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any


def apply_flags(bundle: Bundle, mode: str | None, ip: str | None, publish: list[str]) -> None:
    """`--network/--ip/--publish` become the annotations a config could carry itself."""
    if not (mode or ip or publish):
        return
    annotations = bundle.config.setdefault("annotations", {})
    annotations["run.krun.network"] = mode or "bridge"
    if ip:
        annotations["run.krun.network.ip"] = ip
    if publish:
        annotations["run.krun.network.publish"] = ",".join(publish)
    bundle.modified = True


def _launcher() -> str:
    argv0 = sys.argv[0]
    if os.path.isabs(argv0) and os.access(argv0, os.X_OK):
        return argv0
    import shutil

    return shutil.which("krun") or "/usr/local/bin/krun"


def prepare(g: SimpleNamespace, bundle: Bundle, container_id: str, request: NetworkRequest,
            record: dict[str, Any]) -> None:
    """Before libcrun: host mode drops the netns; bridge mode leases an address, adds the
    hook that wires it, and publishes ports. Writes what it did into the record."""
    if request.mode == "none":
        return
    config = bundle.config
    linux = config.setdefault("linux", {})
    if request.mode == "host":
        linux["namespaces"] = [n for n in linux.get("namespaces", [])
                               if n.get("type") != "network"]
        bundle.modified = True
        record["network"] = {"mode": "host"}
        return
    namespaces = linux.get("namespaces", [])
    if not any(n.get("type") == "network" and not n.get("path") for n in namespaces):
        linux.setdefault("namespaces", []).append({"type": "network"})
    subnet = section("network").get("subnet", ipam.DEFAULT_SUBNET)
    lease = ipam.allocate(g.root, container_id, subnet, request.ip)
    publish = [str(p) for p in request.publish]
    record["network"] = {"mode": "bridge", "ip": lease.ip, "prefix": lease.prefix,
                         "gateway": lease.gateway, "publish": publish}
    record.setdefault("annotations", {})[ADDRESS_ANNOTATION] = lease.ip
    launcher = _launcher()
    hook = {"path": launcher, "args": [launcher, "--root", g.root, "network-hook", container_id]}
    config.setdefault("hooks", {}).setdefault("createRuntime", []).insert(0, hook)
    bundle.modified = True
    nat.add(container_id, lease.ip, publish)


def teardown(root: str, container_id: str, record: dict[str, Any] | None) -> None:
    """Undo prepare(); safe to call twice and for containers without networking."""
    net = (record or {}).get("network")
    if not net or net.get("mode") != "bridge":
        return
    nat.remove(container_id, net["ip"], net.get("publish", []))
    remaining = ipam.release(root, container_id)
    from krun.network import bridge

    bridge.remove_veth(container_id)
    if remaining == 0:
        bridge.remove_bridge_if_unused()


def hook(g: SimpleNamespace, container_id: str) -> None:
    """createRuntime hook: the state (with the pid) arrives on stdin."""
    from krun import fastjson as json
    from krun.errors import KrunError
    from krun.network import bridge
    from krun.runtime.records import read_record

    state = json.loads(sys.stdin.buffer.read())
    record = read_record(g.root, container_id) or {}
    net = record.get("network")
    if not net:
        raise KrunError(f"network-hook: no network record for {container_id!r}")
    bridge.wire(container_id, int(state["pid"]), net["ip"], net["prefix"], net["gateway"])
