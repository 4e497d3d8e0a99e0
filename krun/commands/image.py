"""`krun image build APP.km -t NAME[:TAG] -o FILE.tar`: a payload as a minimal OCI image.

The words after `krun image` are click's to parse (krun/toolkit/clickcli.py turns its
errors into krun's); the work is krun/toolkit/image.py's, imported only here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


def _group() -> click.Group:
    import click

    # Without a command: one usage line, not click's help folded into an error.
    @click.group(name="image", help="Build minimal OCI images around a Kontain payload.",
                 invoke_without_command=True, no_args_is_help=False)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        if ctx.invoked_subcommand is None:
            raise click.UsageError("a command is needed: build", ctx)

    @group.command(name="build", help=(
        "Write an image holding only PAYLOAD (at /<its name>, the default entrypoint), "
        "what --add names, and /.kontain, labelled app.kontain.version=1. Reproducible: "
        "the same inputs give the same digests (timestamps are SOURCE_DATE_EPOCH or 0). "
        "--format oci (the default) is an OCI image layout that docker load, podman "
        "load and ctr images import all accept; docker is the classic docker save "
        "archive."))
    @click.argument("payload", metavar="PAYLOAD.km")
    @click.option("-t", "--tag", "ref", required=True, metavar="NAME[:TAG]",
                  help="the image's name (tag: latest)")
    @click.option("-o", "--output", metavar="FILE.tar",
                  help="where to write it (optional with --load)")
    @click.option("--format", "fmt", type=click.Choice(["oci", "docker"]), default="oci",
                  show_default=True, help="the archive's layout")
    @click.option("--entrypoint", metavar="ARGV",
                  help='the entrypoint: a JSON array or a shell-quoted line ("" for none; '
                       "default: the payload)")
    @click.option("--cmd", metavar="ARGV", help="the command (the entrypoint's arguments)")
    @click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="set a variable")
    @click.option("-w", "--workdir", metavar="DIR", help="the working directory (absolute)")
    @click.option("-u", "--user", metavar="USER[:GROUP]",
                  help="the user to run as (numeric: the image has no /etc/passwd)")
    @click.option("--add", "adds", multiple=True, metavar="SRC:DEST",
                  help="copy a host file or directory into the image at DEST (DEST/ "
                       "keeps a file's name); files are root's, 0755 if executable, "
                       "else 0644")
    @click.option("--load", "load_into", type=click.Choice(["docker", "podman", "containerd"]),
                  help="then load it: docker load / podman load / ctr images import, with "
                       "the CLI's own settings (DOCKER_HOST, CONTAINERS_CONF, "
                       "CONTAINERD_ADDRESS...)")
    @click.option("--namespace", metavar="NS",
                  help="with --load containerd: the namespace (default: "
                       "$CONTAINERD_NAMESPACE, else default)")
    def build(payload: str, ref: str, output: str | None, fmt: str, entrypoint: str | None,
              cmd: str | None, env: tuple[str, ...], workdir: str | None, user: str | None,
              adds: tuple[str, ...], load_into: str | None, namespace: str | None) -> int:
        from pathlib import Path

        from krun.toolkit import image

        spec = image.Spec(
            payload=Path(payload), ref=image.parse_reference(ref), fmt=fmt,
            entrypoint=None if entrypoint is None else image.parse_argv(entrypoint,
                                                                        "--entrypoint"),
            cmd=None if cmd is None else image.parse_argv(cmd, "--cmd"),
            env=image.parse_env(env),
            workdir=None if workdir is None else image.parse_workdir(workdir),
            user=None if user is None else image.parse_user(user),
        )
        if spec.entrypoint == [] and not spec.cmd:
            raise image.UsageError("image build: --entrypoint '' needs a --cmd: the image "
                                   "would have nothing to run")
        for item in adds:
            src, colon, dest = item.rpartition(":")
            if not colon or not src or not dest:
                raise image.UsageError(f"image build: bad --add {item!r}: expected SRC:DEST")
            spec.adds.append((src, dest, f"--add {item}"))
        if namespace and load_into != "containerd":
            raise image.UsageError("image build: --namespace goes with --load containerd")
        return image.main_build(spec, Path(output) if output else None, load_into, namespace)

    return group


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    from krun.toolkit.clickcli import run

    return run(_group(), list(o.argv), "krun image")
