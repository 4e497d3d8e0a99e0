"""krun's networking as a handler: the config rewrite, the host resources it makes
(each journaled before it is made) and their undo, and the createRuntime hook."""

from __future__ import annotations

import os
import sys

from krun.hostconfig import section
from krun.network.settings import ADDRESS_ANNOTATION, network_request
from krun.runtime.bundle import Bundle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.handlers import CreatePlan, ExecPlan


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


class NetworkHandler:
    name = "network"

    def __init__(self, g: SimpleNamespace) -> None:
        self.g = g

    def prepare_create(self, plan: CreatePlan) -> None:
        """host mode drops the netns; bridge mode leases an address, publishes ports and
        adds the hook that wires the veth, journaling each before making it."""
        bundle, opts = plan.bundle, plan.opts
        apply_flags(bundle, getattr(opts, "network", None), getattr(opts, "ip", None),
                    getattr(opts, "publish", None) or [])
        request = network_request(bundle.config)
        if request is None or request.mode == "none":
            return
        config = bundle.config
        linux = config.setdefault("linux", {})
        bundle.modified = True
        if request.mode == "host":
            linux["namespaces"] = [n for n in linux.get("namespaces", [])
                                   if n.get("type") != "network"]
            plan.journal.facts(network={"mode": "host"})
            return
        from krun.network import ipam, nat
        from krun.network.bridge import veth_name

        namespaces = linux.get("namespaces", [])
        if not any(n.get("type") == "network" and not n.get("path") for n in namespaces):
            linux.setdefault("namespaces", []).append({"type": "network"})
        subnet = section("network").get("subnet", ipam.DEFAULT_SUBNET)
        plan.journal.step("lease", self.name)
        lease = ipam.allocate(self.g.root, plan.id, subnet, request.ip)
        publish = [str(p) for p in request.publish]
        plan.journal.facts(network={"mode": "bridge", "ip": lease.ip, "prefix": lease.prefix,
                                    "gateway": lease.gateway, "publish": publish},
                           annotations={ADDRESS_ANNOTATION: lease.ip})
        if publish:
            plan.journal.step("nat", self.name, ip=lease.ip, publish=publish)
            nat.add(plan.id, lease.ip, publish)
        # The hook makes the veth while libcrun creates the container.
        plan.journal.step("veth", self.name, name=veth_name(plan.id))
        launcher = _launcher()
        hook = {"path": launcher,
                "args": [launcher, "--root", self.g.root, "network-hook", plan.id]}
        config.setdefault("hooks", {}).setdefault("createRuntime", []).insert(0, hook)

    def prepare_exec(self, plan: ExecPlan) -> None:
        return None

    def undo(self, root: str, container_id: str, step: dict[str, Any]) -> None:
        kind = step.get("step")
        if kind == "veth":
            from krun.network import bridge

            bridge.remove_veth(container_id)
        elif kind == "nat":
            from krun.network import nat

            publish = [p for p in step.get("publish", []) if isinstance(p, str)]
            nat.remove(container_id, str(step.get("ip", "")), publish)
        elif kind == "lease":
            from krun.network import bridge, ipam

            if ipam.release(root, container_id) == 0:
                bridge.remove_bridge_if_unused()


def hook(g: SimpleNamespace, container_id: str) -> None:
    """createRuntime hook: the state (with the pid) arrives on stdin."""
    from krun import fastjson as json
    from krun.errors import KrunError
    from krun.network import bridge
    from krun.runtime.records import hook_record

    state = json.loads(sys.stdin.buffer.read(1 << 20))
    record = hook_record(g.root, container_id)
    net = record.get("network")
    if not isinstance(net, dict) or net.get("mode") != "bridge":
        raise KrunError(f"network-hook: no network record for {container_id!r}")
    try:
        bridge.wire(container_id, int(state["pid"]), net["ip"], net["prefix"], net["gateway"])
    except BaseException:
        bridge.remove_veth(container_id)  # a half-wired pair is the hook's to take back
        raise
