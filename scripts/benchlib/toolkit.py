"""The toolkit in scripts/bench: `krun km hello.km` against `km hello.km` alone and
against `docker run --runtime krun` of the same payload's image (krun image build), and
a cached `krun payload build` of an unchanged source."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchlib import engines
from benchlib.report import Row
from benchlib.scenarios import KM, Bench, Measure, interleave

TITLE = "toolkit: krun km"
IMAGE = "krun.bench/hello-km:1"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("Hello from Kontain!"); return 0; }\n'


def _docker(b: Bench, payload: Path, docker_host: str | None
            ) -> tuple[engines.Engine | None, str]:
    """docker with IMAGE loaded (by krun image build --load docker), or why not."""
    binaries = {"krun": b.krun().binary}
    probe = engines.probe_docker(docker_host, IMAGE, binaries)
    if isinstance(probe, str) and "not in the daemon" in probe:
        env = dict(os.environ)
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        load = subprocess.run([b.krun().binary, "image", "build", str(payload), "-t", IMAGE,
                               "--load", "docker"], env=env, capture_output=True, text=True,
                              check=False)
        if load.returncode:
            return None, f"krun image build --load docker: {load.stderr.strip()[-200:]}"
        probe = engines.probe_docker(docker_host, IMAGE, binaries)
    if isinstance(probe, str):
        return None, probe
    if "krun" in probe.skipped_runtimes:
        return None, probe.skipped_runtimes["krun"]
    return probe, ""


def toolkit(b: Bench, payload: Path, docker_host: str | None) -> list[Row]:
    missing = [str(p) for p in (KM, payload) if not p.exists()]
    if missing:
        return [Row("toolkit", TITLE, "", skipped=f"{' and '.join(missing)} not built "
                    "(scripts/build-km)")]
    k = b.krun()
    work = b.work / "toolkit"
    work.mkdir(exist_ok=True)
    (work / "hello.c").write_text(HELLO_C)
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    build = [k.binary, "payload", "build", str(work / "hello.c"), "-o", str(work / "hello.km")]
    b.spawner.run(build, env=env)  # fills the cache: the samples are the cached build

    measures: list[tuple[str, Measure | None]] = [
        ("krun km hello.km", lambda: k("km", str(payload)).ms),
        ("km hello.km (no runtime)", lambda: b.spawner.run([str(KM), str(payload)]).ms),
        ("krun payload build (cached)", lambda: b.spawner.run(build, env=env).ms),
    ]
    docker, why = _docker(b, payload, docker_host)
    serial = iter(range(1_000_000))
    if docker is not None:
        def docker_run() -> float:
            name = f"kb{os.getpid()}-toolkit-{next(serial)}"
            docker.leftovers.add(name)
            ms = b.spawner.run([docker.binary, "run", "--rm", "--name", name, "--network",
                                "none", "--runtime", "krun", IMAGE], env=docker.env).ms
            docker.leftovers.discard(name)
            return ms
        measures.append(("docker run --runtime krun (same payload)", docker_run))
    try:
        rows = interleave(b, "toolkit", TITLE, measures, rss_round=False)
    finally:
        if docker is not None:
            docker.cleanup()
            subprocess.run([docker.binary, "rmi", "-f", IMAGE], env=docker.env,
                           capture_output=True, check=False)
    if docker is None:
        rows.append(Row("toolkit", TITLE, "docker run --runtime krun", skipped=why))
    base = rows[1].median
    for row in rows[0], *rows[3:]:
        if row.median is not None and base:
            row.note = f"{row.median / base:.2f}x km hello.km alone"
    return rows
