"""Direct-use networking: bridge krun0, addresses, published ports, host mode.

Traffic goes only between addresses this machine owns: the host's end of krun0 and
containers on it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, BundleFactory, Krun

ALLOCATIONS = Path("/run/krun/.krun/network.json")


def _address(krun: Krun, cid: str) -> str:
    return krun.state(cid)["annotations"]["org.krun.network.address"]


def _krun_links() -> list[str]:
    out = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in out
            if line.split(":")[0].strip().startswith(("kr", "krun0"))]


def _leases() -> dict:
    return json.loads(ALLOCATIONS.read_text() or "{}").get("leases", {}) \
        if ALLOCATIONS.exists() else {}


@pytest.fixture(autouse=True)
def nothing_left_behind() -> None:
    yield
    deadline = time.monotonic() + 5
    while _krun_links() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _krun_links() == [], "veth or bridge left behind"
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert "KRUN" not in nat, "NAT rules left behind"
    assert _leases() == {}, "address allocations left behind"


def test_two_containers_reach_each_other(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    server = bundle(["sh", "-c", "nc -l -p 7000 > /got; sleep 1000"])
    krun("run", "-d", "--network", "bridge", "--bundle", str(server), cid + "-a")
    ip = _address(krun, cid + "-a")
    table = krun("list").stdout.splitlines()
    assert table[0].split()[-1] == "ADDRESS" and table[1].split()[-1] == ip
    client = bundle(["sh", "-c", f"ip -4 addr show eth0; ip route; echo over-krun0 | nc {ip} 7000"])
    proc = krun("run", "--network=bridge", "--bundle", str(client), cid + "-b")
    assert "inet 10.213.0." in proc.stdout and "default via 10.213.0.1" in proc.stdout
    got = server / "rootfs" / "got"
    deadline = time.monotonic() + 10
    while not (got.exists() and got.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got.read_text() == "over-krun0\n"
    lo = krun("exec", cid + "-a", "sh", "-c", "ip -4 addr show lo | grep -c 127.0.0.1")
    assert lo.stdout.strip() == "1", "loopback is up"
    krun("delete", "--force", cid + "-a")


def test_host_reaches_a_published_port(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    b = bundle(["sh", "-c", "while true; do echo published | nc -l -p 80; done"])
    krun("run", "-d", "--network", "bridge", "--publish", "18080:80/tcp", "--bundle", str(b), cid)
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert f"krun:{cid}" in nat
    data = b""
    deadline = time.monotonic() + 10
    while b"published" not in data and time.monotonic() < deadline:
        try:
            with socket.create_connection(("10.213.0.1", 18080), timeout=2) as s:
                data = s.recv(100)
        except OSError:
            time.sleep(0.1)
    assert data == b"published\n"
    krun("delete", "--force", cid)


def test_static_address_conflict_and_host_mode(krun: Krun, bundle: BundleFactory,
                                               cid: str) -> None:
    b = bundle(["sleep", "1000"])
    krun("create", "--network", "bridge", "--ip", "10.213.0.77", "--bundle", str(b), cid)
    assert _address(krun, cid) == "10.213.0.77"
    proc = krun("create", "--network", "bridge", "--ip", "10.213.0.77", "--bundle", str(b),
                cid + "-x", check=False)
    assert proc.returncode == 1 and "already in use" in proc.stderr
    proc = krun("create", "--network", "bridge", "--ip", "192.0.2.1", "--bundle", str(b),
                cid + "-y", check=False)
    assert proc.returncode == 1 and "not a container address" in proc.stderr
    krun("delete", "--force", cid)
    host = bundle(["sh", "-c", "cat /proc/net/dev"])
    proc = krun("run", "--network", "host", "--bundle", str(host), cid + "-h")
    assert "eth0" in proc.stdout or "ens" in proc.stdout, "host mode shares the host's links"


def test_crashed_create_lease_is_reclaimed(krun: Krun, bundle: BundleFactory, cid: str) -> None:
    ALLOCATIONS.parent.mkdir(parents=True, exist_ok=True)
    ALLOCATIONS.write_text(json.dumps({"leases": {"10.213.0.9": [str(krun.root), "ghost"]}}))
    b = bundle(["sleep", "1000"])
    krun("create", "--network", "bridge", "--ip", "10.213.0.9", "--bundle", str(b), cid)
    assert _address(krun, cid) == "10.213.0.9"
    krun("delete", "--force", cid)


def test_50_concurrent_creates_get_distinct_addresses(krun: Krun, bundle: BundleFactory,
                                                      cid: str, tmp_path: Path) -> None:
    b = bundle(["sleep", "1000"])
    ids = [f"{cid}-{i}" for i in range(50)]
    # stderr to files: each created container keeps krun's stderr open.
    logs = [tmp_path / f"create-{n}.err" for n in range(len(ids))]
    procs = []
    for i, log in zip(ids, logs, strict=True):
        with open(log, "wb") as err:
            procs.append(subprocess.Popen(
                krun.argv("create", "--network", "bridge", "--bundle", str(b), i),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err))
    codes = [p.wait(timeout=240) for p in procs]
    assert codes == [0] * 50, [log.read_text() for log in logs if log.read_text()]
    addresses = {_address(krun, i) for i in ids}
    assert len(addresses) == 50
    for i in ids:
        krun("delete", "--force", i)


@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm on this machine")
def test_kontain_payload_gets_an_address(krun: Krun, tmp_path: Path, cid: str) -> None:
    from pyroute2.iproute.linux import IPRoute

    b = tmp_path / "kb"
    (b / "rootfs").mkdir(parents=True)
    krun("spec", "--kontain", "--payload", "/sleeper.km", "--bundle", str(b))
    config = json.loads((b / "config.json").read_text())
    config["kontain"]["network"] = {"mode": "bridge", "publish": ["18081:80/tcp"]}
    (b / "config.json").write_text(json.dumps(config))
    (b / "rootfs" / "sleeper.km").write_bytes((REPO / "km_payloads" / "sleeper.km").read_bytes())
    krun("run", "-d", "--bundle", str(b), cid)
    state = krun.state(cid)
    address = state["annotations"]["org.krun.network.address"]
    with IPRoute(netns=f"/proc/{state['pid']}/ns/net") as ns:
        eth0 = ns.link_lookup(ifname="eth0")[0]
        addrs = [a.get_attr("IFA_ADDRESS") for a in ns.get_addr(index=eth0)]
    assert address in addrs
    listed = json.loads(krun("list", "--format", "json").stdout)
    assert listed[0]["annotations"]["org.krun.network.address"] == address
    krun("delete", "--force", cid)
