"""`docker run` and `podman run` with each runtime, when those engines can be reached."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from benchlib.proc import CommandFailed
from benchlib.report import Row
from benchlib.scenarios import Bench, Measure, interleave

DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker is a client with no daemon of its own


@dataclass
class Engine:
    name: str
    binary: str
    env: dict[str, str]
    runtime_flag: dict[str, str]  # runtime name -> value of --runtime
    skipped_runtimes: dict[str, str] = field(default_factory=dict)
    leftovers: set[str] = field(default_factory=set)

    def run_argv(self, runtime: str, image: str, name: str) -> list[str]:
        # --network none: the bench must never create bridges or touch iptables.
        return [self.binary, "run", "--rm", "--name", name, "--network", "none",
                "--runtime", self.runtime_flag[runtime], image, "true"]

    def cleanup(self) -> None:
        for name in sorted(self.leftovers):
            subprocess.run([self.binary, "rm", "--force", name], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        self.leftovers.clear()


def _query(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a probe; returns (exit code, stdout or the last stderr line)."""
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return 124, "timed out after 30 s"
    if p.returncode == 0:
        return 0, p.stdout.strip()
    return p.returncode, (p.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]


def probe_docker(docker_host: str | None, image: str,
                 binaries: dict[str, str]) -> Engine | str:
    """The docker engine, or why it is skipped."""
    if not os.access(DOCKER, os.X_OK):
        return f"{DOCKER} not installed (scripts/install-engines)"
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    where = env.get("DOCKER_HOST", "the default socket")
    code, out = _query([DOCKER, "version", "--format", "{{.Server.Version}}"], env)
    if code:
        return f"no docker daemon at {where}: {out}"
    code, out = _query([DOCKER, "image", "inspect", "--format", "{{.Id}}", image], env)
    if code:
        return f"image {image} not in the daemon at {where} (docker import it)"
    code, out = _query([DOCKER, "info", "--format", "{{range $k, $v := .Runtimes}}{{$k}} "
                        "{{end}}"], env)
    registered = set(out.split()) if code == 0 else set()
    engine = Engine("docker", DOCKER, env, {r: r for r in binaries})
    for r in binaries:
        if r not in registered:
            engine.skipped_runtimes[r] = f"runtime {r} not registered in daemon.json"
    return engine


def probe_podman(image: str, binaries: dict[str, str]) -> Engine | str:
    podman = shutil.which("podman")
    if not podman:
        return "podman not installed (scripts/install-engines)"
    env = dict(os.environ)
    code, out = _query([podman, "info", "--format", "{{.Host.OCIRuntime.Name}}"], env)
    if code:
        return f"podman info failed: {out}"
    code, out = _query([podman, "image", "exists", image], env)
    if code:
        return f"image {image} not in podman's store (podman import it)"
    # Absolute paths: they work whether or not containers.conf names the runtime.
    return Engine("podman", podman, env, dict(binaries))


def engine_rows(b: Bench, engine: Engine | str, scenario: str, title: str,
                image: str) -> list[Row]:
    if isinstance(engine, str):
        return [Row(scenario, title, "", skipped=engine)]
    serial = iter(range(1_000_000))

    def measure(runtime: str) -> Measure:
        def sample() -> float:
            name = f"kb{os.getpid()}-{engine.name}-{runtime}-{next(serial)}"
            engine.leftovers.add(name)
            ms = b.spawner.run(engine.run_argv(runtime, image, name), env=engine.env).ms
            engine.leftovers.discard(name)
            return ms
        return sample

    measures: list[tuple[str, Measure | None]] = []
    failed: dict[str, str] = {}
    for rt in b.runtimes:
        if rt.name in engine.skipped_runtimes:
            continue
        try:
            measure(rt.name)()  # a probe, untimed: a broken runtime gets a clear error row
            measures.append((rt.name, measure(rt.name)))
        except CommandFailed as e:
            measures.append((rt.name, None))
            b.log(f"  {engine.name} --runtime {rt.name}: {e}")
            failed[rt.name] = f"probe: {e}"
    try:
        rows = interleave(b, scenario, title, measures, rss_round=False)
    finally:
        engine.cleanup()
    by_name = {r.runtime: r for r in rows}
    out: list[Row] = []
    for rt in b.runtimes:
        if rt.name in by_name:
            row = by_name[rt.name]
            row.error = failed.get(rt.name, row.error)
            out.append(row)
        else:
            out.append(Row(scenario, title, rt.name, skipped=engine.skipped_runtimes[rt.name]))
    return out
