"""The CRI path, driven by crictl: containerd's CRI plugin and CRI-O, handler `krun`.

The same pod/container sequence for both. Pods use the host network (no CNI plugins
here: namespace_options network = 2, NODE) and give the pod and its containers their
own pid namespace (pid = 1, CONTAINER): CRI-O's infra container cannot run on these
machines (engines.md), so it runs with drop_infra_ctr and needs that.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from conftest import krun_binary

from . import images
from .conftest import CGROUP_PARENT, KONTAIN_WIP, Engine
from .daemons import processes_mentioning, wait_for

pytestmark = pytest.mark.engines

_ids = itertools.count()
NAMESPACES = {"network": 2, "pid": 1}


@pytest.fixture(params=["containerd_cri", "crio"])
def cri(request: pytest.FixtureRequest) -> Engine:
    eng: Engine = request.getfixturevalue(request.param)
    return eng


def krun_list(root: Path) -> list[str]:
    proc = subprocess.run([krun_binary(), "--root", str(root), "list", "-q"],
                          capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.split()


class Pod:
    def __init__(self, cri: Engine, tmp: Path) -> None:
        self.cri, self.tmp = cri, tmp
        n = next(_ids)
        self.name = f"kt-pod-{n}"
        logs = cri.run_dir / "logs" / self.name
        logs.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "pod.json"
        self.config.write_text(json.dumps({
            "metadata": {"name": self.name, "namespace": "krun-tests", "uid": f"uid-{n}",
                         "attempt": 0},
            "log_directory": str(logs),
            "linux": {"cgroup_parent": f"/{CGROUP_PARENT}/{cri.name}",
                      "security_context": {"namespace_options": NAMESPACES}},
        }))
        self.id = cri.out("runp", "--runtime", "krun", str(self.config))

    def container(self, name: str, image: str, command: list[str] | None = None,
                  annotations: dict[str, str] | None = None) -> str:
        config = self.tmp / f"{name}.json"
        spec: dict[str, object] = {
            "metadata": {"name": name}, "image": {"image": image}, "log_path": f"{name}.log",
            "linux": {"security_context": {"namespace_options": NAMESPACES}},
        }
        if command:
            spec["command"] = command
        if annotations:
            spec["annotations"] = annotations
        config.write_text(json.dumps(spec))
        return self.cri.out("create", self.id, str(config), str(self.config))

    def state(self, cid: str) -> str:
        return json.loads(self.cri.out("inspect", cid))["status"]["state"]

    def remove(self) -> None:
        self.cri("stopp", self.id)
        self.cri("rmp", self.id)


def test_pod_and_container_lifecycle(cri: Engine, tmp_path: Path) -> None:
    pod = Pod(cri, tmp_path)
    try:
        cid = pod.container("sleeper", images.BUSYBOX, ["sleep", "600"])
        assert pod.state(cid) == "CONTAINER_CREATED"
        cri("start", cid)
        assert pod.state(cid) == "CONTAINER_RUNNING"
        assert cid in krun_list(cri.extra["krun_root"]), "the container is krun's"

        # exec -s: containerd's shim `exec --detach`; CRI-O's conmon foreground `exec`.
        # (crictl itself adds newlines after the output of a sync exec.)
        proc = cri("exec", "-s", cid, "sh", "-c", "echo synced; exit 0")
        assert proc.stdout.strip() == "synced"
        failed = cri("exec", "-s", cid, "sh", "-c", "exit 3", check=False)
        assert failed.returncode != 0 and "exited with 3" in failed.stderr, failed.stderr
        # A streaming exec, through the engine's stream server on 127.0.0.1.
        assert cri.out("exec", cid, "sh", "-c", "echo streamed; echo $$ > /tmp/pid") \
            == "streamed"
        assert cri.out("exec", cid, "cat", "/proc/1/cmdline").split("\0")[0] == "sleep"

        cri("stop", "-t", "5", cid)
        assert pod.state(cid) == "CONTAINER_EXITED"
        cri("rm", cid)
        assert cid not in krun_list(cri.extra["krun_root"])
    finally:
        pod.remove()
    assert not processes_mentioning(pod.id), "nothing of the pod is left running"
    assert krun_list(cri.extra["krun_root"]) == []


def test_container_exit_code_and_logs(cri: Engine, tmp_path: Path) -> None:
    pod = Pod(cri, tmp_path)
    try:
        cid = pod.container("oneshot", images.BUSYBOX, ["sh", "-c", "echo to the log; exit 4"])
        cri("start", cid)
        wait_for(lambda: pod.state(cid) == "CONTAINER_EXITED", what="exit")
        assert json.loads(cri.out("inspect", cid))["status"]["exitCode"] == 4
        assert cri.out("logs", cid) == "to the log"
        cri("rm", cid)
    finally:
        pod.remove()


def test_kontain_container_in_a_krun_pod(cri: Engine, tmp_path: Path) -> None:
    image = cri.extra.get("kontain_image")
    if not image:
        pytest.skip(KONTAIN_WIP)
    pod = Pod(cri, tmp_path)
    try:
        cid = pod.container("kontain", image)
        cri("start", cid)
        wait_for(lambda: pod.state(cid) == "CONTAINER_EXITED", what="the payload's exit")
        status = json.loads(cri.out("inspect", cid))["status"]
        assert (status["exitCode"], cri.out("logs", cid)) == (0, "Hello from Kontain!"), status
        cri("rm", cid)
    finally:
        pod.remove()


def test_kontain_signal_death_is_the_exit_code(cri: Engine, tmp_path: Path) -> None:
    """The kubelet reads exitCode (restart policies): a payload's SIGILL is 132 at
    once, not KM's 139 after 2 s as pid 1."""
    image = cri.extra.get("kontain_image")
    if not image:
        pytest.skip(KONTAIN_WIP)
    pod = Pod(cri, tmp_path)
    try:
        cid = pod.container("sigill", image, ["/sigill.km"])
        cri("start", cid)
        wait_for(lambda: pod.state(cid) == "CONTAINER_EXITED", what="the payload's exit")
        assert json.loads(cri.out("inspect", cid))["status"]["exitCode"] == 132
        cri("rm", cid)
    finally:
        pod.remove()


def test_kontain_annotation_through_cri(cri: Engine, tmp_path: Path) -> None:
    # No always-Kontain handler on CRI engines: the annotation (passed through by
    # containerd's container_annotations, copied by CRI-O) asks for KM.
    if not images.payload("uname.km"):
        pytest.skip(KONTAIN_WIP)
    pod = Pod(cri, tmp_path)
    try:
        cid = pod.container("uname", images.BUSYBOX, ["/uname.km"],
                            annotations={"app.kontain.version": "1"})
        cri("start", cid)
        wait_for(lambda: pod.state(cid) == "CONTAINER_EXITED", what="the payload's exit")
        assert ".kontain.KVM" in cri.out("logs", cid)
        cri("rm", cid)
    finally:
        pod.remove()
