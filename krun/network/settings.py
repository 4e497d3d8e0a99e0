"""A container's network request, from annotations or the Kontain extension.

Plain containers use annotations, the OCI way to extend a config without a schema
change (crun reads `run.oci.*` the same way), which engines can pass too:
  run.krun.network = none | host | bridge
  run.krun.network.ip = 10.213.0.7                (optional static address)
  run.krun.network.publish = 8080:80/tcp,5353:53/udp
Kontain containers may say the same in config.json: "kontain": {"network": {"mode":
"bridge", "ip": "...", "publish": ["8080:80/tcp"]}}. `krun create/run --network`,
`--ip` and `--publish` write these annotations for people typing commands.
"""

from __future__ import annotations

from krun.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MODES = ("none", "host", "bridge")
ADDRESS_ANNOTATION = "org.krun.network.address"  # in `state`, from krun's record


class Publish:
    def __init__(self, host_port: int, container_port: int, proto: str) -> None:
        self.host_port, self.container_port, self.proto = host_port, container_port, proto

    def __str__(self) -> str:
        return f"{self.host_port}:{self.container_port}/{self.proto}"


class NetworkRequest:
    def __init__(self, mode: str, ip: str | None, publish: list[Publish]) -> None:
        self.mode, self.ip, self.publish = mode, ip, publish


def parse_publish(text: str, where: str) -> Publish:
    spec, _, proto = text.strip().partition("/")
    proto = proto or "tcp"
    host, sep, cont = spec.partition(":")
    if not sep or proto not in ("tcp", "udp"):
        raise InvalidConfig(f"{where}: {text!r}: expected HOST_PORT:CONTAINER_PORT[/tcp|udp]")
    try:
        ports = int(host), int(cont)
    except ValueError:
        raise InvalidConfig(f"{where}: {text!r}: ports must be numbers") from None
    if not all(0 < p < 65536 for p in ports):
        raise InvalidConfig(f"{where}: {text!r}: ports must be 1-65535")
    return Publish(ports[0], ports[1], proto)


def network_request(config: dict[str, Any]) -> NetworkRequest | None:
    kontain = config.get("kontain")
    if isinstance(kontain, dict) and isinstance(kontain.get("network"), dict):
        net, where = kontain["network"], "$.kontain.network"
        mode, ip, publish = net.get("mode", "none"), net.get("ip"), net.get("publish", [])
        if not isinstance(publish, list):
            raise InvalidConfig(f"{where}.publish: must be an array of strings")
    else:
        annotations = config.get("annotations") or {}
        if "run.krun.network" not in annotations:
            return None
        where = "$.annotations[run.krun.network]"
        mode = annotations["run.krun.network"]
        ip = annotations.get("run.krun.network.ip")
        publish = [p for p in annotations.get("run.krun.network.publish", "").split(",") if p]
    if mode not in MODES:
        raise InvalidConfig(f"{where}: mode {mode!r} is not one of {list(MODES)}")
    ports = [parse_publish(str(p), where) for p in publish]
    if mode != "bridge" and (ip or ports):
        raise InvalidConfig(f"{where}: an address or published ports need mode bridge")
    return NetworkRequest(mode, ip, ports)


def network_requested(config: dict[str, Any], opts: Any) -> bool:
    """Whether krun's networking takes part in creating this container."""
    if getattr(opts, "network", None) or getattr(opts, "ip", None) or \
            getattr(opts, "publish", None):
        return True
    return network_request(config) is not None
