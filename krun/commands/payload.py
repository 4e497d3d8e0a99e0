"""`krun payload build|cc`: C sources to Kontain payloads (krun.toolkit.payload)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace



def _group():  # type: ignore[no-untyped-def]
    import click

    @click.group(context_settings={"help_option_names": ["-h", "--help"]},
                 invoke_without_command=True)
    @click.pass_context
    def payload(ctx: click.Context) -> None:
        """Build Kontain payloads (.km): static programs that run only inside the
        Kontain VM, against krun's libc for payloads."""
        if ctx.invoked_subcommand is None:  # one usage line, not the help as an error
            raise click.UsageError("a command is needed: build, cc", ctx)

    @payload.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("sources", nargs=-1, type=click.Path(dir_okay=False))
    @click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                  help="the payload to write (APP.km)")
    @click.option("-I", "include", multiple=True, metavar="DIR", help="a header directory")
    @click.option("-D", "define", multiple=True, metavar="X[=V]", help="a macro")
    @click.option("-O", "optimize", default="2", show_default=True,
                  type=click.Choice(["0", "1", "2", "3", "s", "g"]), help="optimisation")
    @click.option("--static-lib", multiple=True, metavar="LIB.a",
                  type=click.Path(dir_okay=False), help="link this static library too")
    @click.option("--modules", type=click.Path(file_okay=False), metavar="DIR",
                  help="each subdirectory is a module (krun_module.h); link them all")
    @click.option("--sse", is_flag=True, help="the target's guests have SSE: allow "
                  "floating point (this host's nested guests do not)")
    @click.option("--no-cache", is_flag=True, help="compile everything again")
    @click.option("-v", "--verbose", is_flag=True, help="print each compiler command")
    def build(sources: tuple[str, ...], output: str, include: tuple[str, ...],
              define: tuple[str, ...], optimize: str, static_lib: tuple[str, ...],
              modules: str | None, sse: bool, no_cache: bool, verbose: bool) -> int:
        """Compile and link C SOURCES into a payload. Objects and payloads are cached
        by content: an unchanged build only copies.

        \b
        krun payload build hello.c -o hello.km && krun km hello.km
        krun payload build --modules mods/ -o app.km     # app.km --list
        """
        from pathlib import Path

        from krun.toolkit.payload import Build
        from krun.toolkit.payload import build as run_build

        b = Build(sources=[Path(s) for s in sources], output=Path(output),
                  include_dirs=[Path(d) for d in include], defines=list(define),
                  optimize=optimize, static_libs=[Path(p) for p in static_lib],
                  modules=Path(modules) if modules else None, sse=sse, verbose=verbose,
                  cache=not no_cache)
        builder = run_build(b)
        if verbose:
            click.echo(f"{output}: {builder.misses} compiled, {builder.hits} from the cache",
                       err=True)
        return 0

    @payload.command(context_settings={"ignore_unknown_options": True,
                                       "allow_interspersed_args": False,
                                       "help_option_names": []})
    @click.argument("gcc_args", nargs=-1, type=click.UNPROCESSED)
    def cc(gcc_args: tuple[str, ...]) -> int:
        """gcc for payloads (CC="krun payload cc" make): GCC_ARGS pass through, with the
        payload runtime's headers, flags and link line added."""
        from krun.toolkit.payload import cc as run_cc

        return run_cc(list(gcc_args))

    return payload


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    from krun.toolkit.clickcli import run

    return run(_group(), o.argv, "krun payload")
