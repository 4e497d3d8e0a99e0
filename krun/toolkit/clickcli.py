"""Run a toolkit command's click parser inside krun's dispatch.

The toolkit's commands (payload, image, km) take their own words and options; click
parses them and words their usage errors. Here its errors become krun's: one line on
stderr, `krun: <words>: ...`, exit 2 for usage, and --help prints and exits 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


def run(command: click.Command, argv: list[str], prog: str) -> int:
    import click

    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as e:  # --help, --version
        return int(e.exit_code or 0)
    except click.UsageError as e:
        from krun.errors import UsageError

        hint = f" (see {prog} --help)" if e.ctx is not None else ""
        # krun's log adds its own "krun: " in front.
        words = prog.removeprefix("krun ")
        raise UsageError(f"{words}: {e.format_message()}{hint}") from None
    except click.Abort:
        return 130
    return int(result or 0)
