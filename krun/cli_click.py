"""The click front end, built from `krun.cli`'s table: --help, and usage errors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click

from krun import __version__
from krun.cli import COMMANDS, FLAG, GLOBAL_OPTS, INT, MULTI, Cmd, Opt, dispatch


def _option(opt: Opt) -> click.Option:
    names = [opt.long] + ([opt.short] if opt.short else [])
    kw: dict[str, Any] = {"help": opt.help,
                          "show_default": opt.kind != FLAG and opt.default is not None}
    if opt.kind == FLAG:
        kw["is_flag"] = True
        kw["default"] = False
    elif opt.kind == MULTI:
        kw["multiple"] = True
    else:
        kw["default"] = opt.default
        if opt.kind == INT:
            kw["type"] = int
        elif opt.choices:
            kw["type"] = click.Choice(opt.choices)
    return click.Option(names, **kw)


def _command(cmd: Cmd) -> click.Command:
    params: list[click.Parameter] = [_option(o) for o in cmd.opts]
    params += [click.Argument([a.name], required=a.required) for a in cmd.args]
    if cmd.rest:
        params.append(click.Argument([cmd.rest], nargs=-1))

    @click.pass_obj
    def callback(g: SimpleNamespace, **values: Any) -> None:
        for o in cmd.opts:
            if o.kind == MULTI:
                values[o.dest] = list(values[o.dest])
        if cmd.rest:
            values[cmd.rest] = list(values[cmd.rest])
        raise SystemExit(dispatch(g, cmd, SimpleNamespace(**values)))

    settings = {"allow_interspersed_args": cmd.rest is None, "help_option_names": ["-h", "--help"]}
    return click.Command(cmd.name, params=params, callback=callback, help=cmd.help,
                         hidden=cmd.help.startswith("internal:"),
                         context_settings=settings)


def _group() -> click.Group:
    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> None:
        if values["version"]:
            raise SystemExit(dispatch(SimpleNamespace(**values), Cmd("version", "", args=()),
                                      SimpleNamespace()))
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
            raise SystemExit(0)
        ctx.obj = SimpleNamespace(**values)

    group = click.Group("krun", params=[_option(o) for o in GLOBAL_OPTS], callback=callback,
                        invoke_without_command=True,
                        help=f"krun {__version__}: an OCI runtime on libcrun, with Kontain VMs.",
                        context_settings={"help_option_names": ["-h", "--help"]})
    for cmd in COMMANDS:
        group.add_command(_command(cmd))
    return group


def run_click(argv: list[str]) -> int:
    try:
        _group().main(args=argv, prog_name="krun", standalone_mode=True)
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
