"""`krun image build --load` into the engine tests' docker, podman and containerd, and
what they then run with krun: the image holds only hello.km and /.kontain, so whatever
runs it is KM.

Each engine CLI is reached the way a user's is, through its own settings in the
environment (DOCKER_HOST; CONTAINERS_CONF and CONTAINERS_STORAGE_CONF; CONTAINERD_ADDRESS).
Every test removes the images it loaded.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import krun_binary

from krun.toolkit.image_unpack import unpack

from . import images
from .conftest import KONTAIN_WIP, Engine
from .test_containerd import ctr_run

pytestmark = pytest.mark.engines

REF = "krun.test/image-build:1"
REF_DOCKER_FORMAT = "krun.test/image-build:docker-format"
LABEL = '{{index .Config.Labels "app.kontain.version"}}'


def build(env: dict[str, str] | None, *args: str) -> str:
    hello = images.payload("hello.km")
    if hello is None:
        pytest.skip(KONTAIN_WIP)
    proc = subprocess.run([krun_binary(), "image", "build", str(hello), *args], env=env,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_docker_loads_and_runs_it(docker: Engine, tmp_path: Path) -> None:
    argv = docker.cli.argv
    env = {**(docker.cli.env or os.environ), "DOCKER_HOST": argv[argv.index("-H") + 1]}
    try:
        said = build(env, "-t", REF, "--load", "docker")
        assert f"Loaded image: {REF}" in said
        proc = docker("run", "--rm", "--runtime", "krun", REF, check=False)
        assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr
        assert docker.out("image", "inspect", "-f", LABEL, REF) == "1"
        # The classic docker save archive: the same image.
        archive = tmp_path / "d.tar"
        build(env, "-t", REF_DOCKER_FORMAT, "--format", "docker", "-o", str(archive))
        docker("load", "-i", str(archive))
        ids = {docker.out("image", "inspect", "-f", "{{.Id}}", r) for r in
               (REF, REF_DOCKER_FORMAT)}
        assert len(ids) == 1, ids
        # unpack reads what docker save writes: a real rootfs, symlinks and all.
        saved = tmp_path / "busybox.tar"
        docker("save", "-o", str(saved), images.BUSYBOX)
        config = unpack(saved, tmp_path / "rootfs")
        assert config["Cmd"] == ["sh"]
        assert (tmp_path / "rootfs" / "bin" / "busybox").is_file()
    finally:
        docker("rmi", "-f", REF, REF_DOCKER_FORMAT, check=False)


def test_podman_loads_and_runs_it(podman: Engine, tmp_path: Path) -> None:
    try:
        build(podman.cli.env, "-t", REF, "--load", "podman")
        proc = podman("run", "--rm", "--runtime", "krun", REF, check=False)
        assert (proc.returncode, proc.stdout) == (0, "Hello from Kontain!\n"), proc.stderr
        assert podman.out("image", "inspect", "-f", LABEL, REF) == "1"
        annotation = '{{index .Annotations "app.kontain.version"}}'
        assert podman.out("image", "inspect", "-f", annotation, REF) == "1"
        archive = tmp_path / "d.tar"
        build(podman.cli.env, "-t", REF_DOCKER_FORMAT, "--format", "docker", "-o",
              str(archive))
        podman("load", "-i", str(archive))
        ids = {podman.out("image", "inspect", "-f", "{{.Id}}", r) for r in
               (REF, REF_DOCKER_FORMAT)}
        assert len(ids) == 1, ids
        # unpack reads what podman save writes as an OCI archive.
        saved = tmp_path / "saved.tar"
        podman("save", "--format", "oci-archive", "-o", str(saved), REF)
        config = unpack(saved, tmp_path / "rootfs")
        assert config["Entrypoint"] == ["/hello.km"]
        assert sorted(p.name for p in (tmp_path / "rootfs").iterdir()) == [".kontain",
                                                                            "hello.km"]
    finally:
        podman("rmi", "-f", REF, REF_DOCKER_FORMAT, check=False)


def test_ctr_imports_and_runs_it(containerd: Engine, tmp_path: Path) -> None:
    env = {**(containerd.cli.env or os.environ),
           "CONTAINERD_ADDRESS": str(containerd.extra["socket"])}
    ns = ("-n", "krun")
    try:
        build(env, "-t", REF, "--load", "containerd", "--namespace", "krun")
        assert REF in containerd.out(*ns, "images", "ls", "-q").split()
        rc, out, err = ctr_run(containerd, REF)
        assert (rc, out) == (0, "Hello from Kontain!\n"), err
        archive = tmp_path / "d.tar"
        build(env, "-t", REF_DOCKER_FORMAT, "--format", "docker", "-o", str(archive))
        containerd(*ns, "images", "import", str(archive))
        assert REF_DOCKER_FORMAT in containerd.out(*ns, "images", "ls", "-q").split()
    finally:
        containerd(*ns, "images", "rm", REF, REF_DOCKER_FORMAT, check=False)
