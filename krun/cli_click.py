"""The click front end, built from `krun.cli`'s table: --help, and usage errors.

A usage error is one line on stderr with exit code 2, as runc's are (click's own is a
Usage block and an `Error:` line): engines log the first line of a failed call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import click

from krun import __version__
from krun.cli import COMMANDS, FLAG, GLOBAL_OPTS, INT, MULTI, Cmd, Opt, dispatch

Invoke = Callable[[SimpleNamespace, Cmd, SimpleNamespace], int]


class _Int(click.ParamType):
    """An INT option: decimal digits, within the bounds `Opt.int_error` states."""

    name = "integer"

    def __init__(self, opt: Opt) -> None:
        self.opt = opt

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value)
        digits = text[1:] if text[:1] == "-" else text
        if not (digits and digits.isascii() and digits.isdigit()):
            self.fail(f"{text!r} is not an integer", param, ctx)
        # Beyond 18 digits only the sign matters (and int() has a digit limit).
        value = int(text) if len(digits) <= 18 else (-1 if text[0] == "-" else 10 ** 18)
        error = self.opt.int_error(value, text)
        if error:
            self.fail(error, param, ctx)
        return value


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
            kw["type"] = _Int(opt)
        elif opt.choices:
            kw["type"] = click.Choice(opt.choices)
    return click.Option(names, **kw)


def _command(cmd: Cmd, invoke: Invoke) -> click.Command:
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
        raise SystemExit(invoke(g, cmd, SimpleNamespace(**values)))

    settings: dict[str, Any] = {"allow_interspersed_args": cmd.rest is None,
                                "help_option_names": ["-h", "--help"]}
    if cmd.rest and not cmd.args:
        # The toolkit's commands (payload, image, km) parse every word themselves, their
        # --help and options included, as the fast parser passes them on.
        settings.update(help_option_names=[], ignore_unknown_options=True)
    return click.Command(cmd.name, params=params, callback=callback, help=cmd.help,
                         hidden=cmd.help.startswith("internal:"),
                         context_settings=settings)


def _group(invoke: Invoke) -> click.Group:
    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> None:
        if values["version"] or values["usage"]:
            name = "version" if values["version"] else "usage"
            raise SystemExit(invoke(SimpleNamespace(**values), Cmd(name, "", args=()),
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
        group.add_command(_command(cmd, invoke))
    return group


def usage_line(e: click.ClickException) -> str:
    """`krun create: Missing argument 'CONTAINER_ID'.`: the command, then click's words."""
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None and ctx.command_path else "krun"
    from krun.log import one_line  # argv is echoed back: it may hold a newline

    return one_line(f"{where}: {e.format_message()}")


def run_click(argv: list[str], invoke: Invoke | None = None) -> int:
    """Parse argv with click: --help, a usage error (one line, exit 2), or `invoke`
    (dispatch unless given: the fuzzer passes one that runs nothing)."""
    group = _group(invoke or dispatch)
    try:
        code = group.main(args=argv, prog_name="krun", standalone_mode=False)
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except click.ClickException as e:
        sys.stderr.write(usage_line(e) + "\n")
        sys.stderr.flush()
        return e.exit_code
    except click.exceptions.Abort:  # ^C or EOF at a prompt; krun has none, but click may
        sys.stderr.write("krun: aborted\n")
        return 1
    return code if isinstance(code, int) else 0
