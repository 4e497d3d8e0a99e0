"""Published ports: DNAT rules in krun's own nat chain, added at create and removed at
delete. iptables is the kernel's NAT interface on Debian (iptables-nft); pyroute2 has
no NAT support, so this is the one place krun runs a helper binary."""

from __future__ import annotations

import subprocess

from krun.errors import KrunError

CHAIN = "KRUN-DNAT"
_JUMPS = (("PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL"]),
          ("OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL"]))


def _ipt(*args: str, check: bool = True) -> bool:
    proc = subprocess.run(["iptables", "-w", "-t", "nat", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise KrunError(f"iptables {' '.join(args)}: {proc.stderr.strip()}")
    return proc.returncode == 0


def _rule(container_id: str, ip: str, spec: str) -> list[str]:
    ports, _, proto = spec.partition("/")
    host_port, _, container_port = ports.partition(":")
    return ["-p", proto, "--dport", host_port, "-m", "comment", "--comment",
            f"krun:{container_id}", "-j", "DNAT", "--to-destination", f"{ip}:{container_port}"]


def add(container_id: str, ip: str, publish: list[str]) -> None:
    if not publish:
        return
    from krun.network.ipam import HostLock

    with HostLock():  # the chain is shared: creating it must not race its removal
        _add(container_id, ip, publish)


def _add(container_id: str, ip: str, publish: list[str]) -> None:
    if not _ipt("-L", CHAIN, "-n", check=False):
        _ipt("-N", CHAIN)
    for chain, match in _JUMPS:
        if not _ipt("-C", chain, *match, "-j", CHAIN, check=False):
            _ipt("-A", chain, *match, "-j", CHAIN)
    for spec in publish:
        _ipt("-A", CHAIN, *_rule(container_id, ip, spec))


def remove(container_id: str, ip: str, publish: list[str]) -> None:
    from krun.network.ipam import HostLock

    with HostLock():
        _remove(container_id, ip, publish)


def _remove(container_id: str, ip: str, publish: list[str]) -> None:
    for spec in publish:
        while _ipt("-D", CHAIN, *_rule(container_id, ip, spec), check=False):
            pass
    listing = subprocess.run(["iptables", "-w", "-t", "nat", "-S", CHAIN], capture_output=True,
                             text=True)
    if listing.returncode == 0 and len(listing.stdout.strip().splitlines()) <= 1:
        # The chain is empty: leave no trace of krun in the host's NAT table.
        for chain, match in _JUMPS:
            while _ipt("-D", chain, *match, "-j", CHAIN, check=False):
                pass
        _ipt("-X", CHAIN, check=False)
