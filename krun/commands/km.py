"""`krun km [OPTIONS] PAYLOAD [ARGS...]`: a payload in a throwaway Kontain container
(krun.toolkit.kmrun). Options are docker run's where they apply; option parsing stops
at PAYLOAD, so the payload's own `-x` flags pass through."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace
    from typing import Any

    import click

HELP = """Run PAYLOAD (a .km file) under KM in a throwaway Kontain container, like
`km PAYLOAD ARGS` but isolated like `docker run --rm`: namespaces, cgroups, KM
read-only, /dev/kvm. krun km streams the payload's output, exits with its status
(128+N for a death by signal N) and removes the container, its bundle, cgroups and
network afterwards, also on Ctrl-C or SIGTERM (a second one kills the container).

\b
  krun km hello.km                              # Hello from Kontain!
  krun km -e GREETING=hi -v $PWD/out:/out -w /out args.km -x y
  krun km --network bridge -p 8080:80 -d --name web server.km
  krun delete -f web                            # removes it and its bundle

\b
PAYLOAD is a host file, copied into an empty rootfs as /NAME (with an empty /tmp);
with --rootfs it is a path (or a name on PATH) in that rootfs; with --image,
PAYLOAD ARGS replace the image's Cmd (docker's rule) and are optional.
-d prints the id and leaves the container running; its output goes to
ROOT/.krun/km/ID/output.log; `krun delete -f ID` removes it all.
Exit status: the payload's; 125 if krun km could not run it, 126 if PAYLOAD is
not a payload, 127 if it does not exist, 2 for a usage error.
"""


def _parsed(parse: Callable[[str], Any]) -> Callable[..., Any]:
    """A click callback that applies a kmrun parser to each value of a (multiple)
    option; its BadOption becomes click's usage error, which names the option."""
    import click

    from krun.toolkit.kmrun import BadOption

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            if isinstance(value, tuple):
                return [parse(v) for v in value]
            return parse(value)
        except BadOption as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None

    return callback


def _command(g: SimpleNamespace) -> click.Command:
    import click

    from krun.toolkit import kmrun

    @click.command(context_settings={"allow_interspersed_args": False,
                                     "help_option_names": ["-h", "--help"],
                                     "max_content_width": 88},
                   help=HELP)
    @click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="PAYLOAD [ARGS]...")
    @click.option("-e", "--env", multiple=True, metavar="K=V",
                  callback=_parsed(kmrun.parse_env),
                  help="set a variable (K alone: its value here)")
    @click.option("--env-file", multiple=True, metavar="FILE",
                  callback=_parsed(kmrun.read_env_file), help="K=V lines (# comments)")
    @click.option("-v", "--volume", multiple=True, metavar="HOST:CTR[:ro]",
                  callback=_parsed(kmrun.parse_volume), help="bind-mount HOST (must exist)")
    @click.option("-w", "--workdir", metavar="DIR", callback=_parsed(kmrun.parse_workdir),
                  help="the working directory (made if missing)")
    @click.option("--network", type=click.Choice(["none", "host", "bridge"]),
                  help="none (default: loopback only), host, or bridge on krun0")
    @click.option("-p", "--publish", multiple=True, metavar="HOST:CTR[/tcp|udp]",
                  callback=_parsed(kmrun.parse_publish),
                  help="publish a port on krun0 (implies --network bridge)")
    @click.option("-t", "--tty", is_flag=True, help="give the payload a terminal")
    @click.option("-i", "--interactive", is_flag=True, help="keep stdin attached")
    @click.option("--name", metavar="ID", callback=_parsed(kmrun.parse_name),
                  help="the container id (default: km-<random>)")
    @click.option("-d", "--detach", is_flag=True, help="print the id and leave it running")
    @click.option("--rm", is_flag=True, help="remove it when it exits (the default; not "
                  "with -d)")
    @click.option("-m", "--memory", metavar="SIZE", callback=_parsed(kmrun.parse_memory),
                  help="memory limit: 64m, 1g")
    @click.option("--cpus", metavar="N", callback=_parsed(kmrun.parse_cpus),
                  help="CPU limit: 1.5 CPUs")
    @click.option("--rootfs", metavar="DIR", type=click.Path(file_okay=False),
                  help="copy DIR as the rootfs (DIR is never changed)")
    @click.option("--image", metavar="FILE.tar", type=click.Path(dir_okay=False),
                  help="unpack an OCI image tar as the rootfs; its Entrypoint/Cmd, Env, "
                       "WorkingDir, User apply")
    @click.option("--entrypoint", metavar="PATH",
                  help="with --image: run PATH instead of its Entrypoint")
    def km(command: tuple[str, ...], env: list[str | None], env_file: list[list[str]],
           volume: list[kmrun.Volume], workdir: str | None, network: str | None,
           publish: list[str], tty: bool, interactive: bool, name: str | None,
           detach: bool, rm: bool, memory: int | None, cpus: int | None,
           rootfs: str | None, image: str | None, entrypoint: str | None) -> int:
        if not command and not image:
            raise click.UsageError("no PAYLOAD given")
        environment = [e for f in env_file for e in f] + [e for e in env if e is not None]
        if publish and network is None:
            network = "bridge"  # docker publishes on its default bridge
        req = kmrun.Request(
            command=list(command), env=environment, volumes=volume, workdir=workdir,
            network=network, publish=publish, tty=tty, interactive=interactive, name=name,
            detach=detach, rm=rm, memory=memory, cpu_quota=cpus, rootfs=rootfs, image=image,
            entrypoint=entrypoint)
        return kmrun.run(g, req)

    return km


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    from krun.toolkit.clickcli import run

    return run(_command(g), o.argv, "krun km")
