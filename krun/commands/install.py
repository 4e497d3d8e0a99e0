"""`krun install` / `krun uninstall`: register krun with container engines (or undo it).

Every engine asked for is planned before any file is written, so one refused edit (a
file krun cannot change safely) leaves every file as it was. --dry-run prints the
planned changes as unified diffs. Notes go to stderr, so that
`krun install --engine kubernetes | kubectl apply -f -` gets only the manifest.
"""

from __future__ import annotations

import os
import sys

from krun.engines import ENGINES, Context, EngineError, Result, installed, plan
from krun.errors import KrunError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace

DEFAULT_PATH = "/usr/local/bin/krun"


def running_krun() -> str:
    """The krun binary running now: engines must call this same entry point."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) != "__main__.py" and os.access(argv0, os.X_OK):
        return os.path.abspath(argv0)
    return DEFAULT_PATH


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    do_install = name == "install"
    config_root = o.config_root or "/"
    path = getattr(o, "path", None) or running_krun()
    if not os.path.isabs(path):
        raise UsageError(f"--path must be absolute (engines run it from their own cwd): {path}")
    if o.engine in (None, "all"):
        engines = installed(config_root)
        if not engines:
            raise KrunError("no container engine found; name one with --engine "
                            + "|".join(ENGINES))
    else:
        engines = [o.engine]
    ctx = Context(path, config_root, g.root or "/run/krun",
                  os.path.abspath(o.output) if o.output else None)

    results: list[Result] = []
    for engine in engines:
        try:
            results.append(plan(engine, ctx, do_install))
        except EngineError as e:
            raise KrunError(f"{engine}: {e}; nothing was changed") from None

    for result in results:
        if result.stdout:
            sys.stdout.write(result.stdout)
        for change in result.changes:
            if not change.changed:
                continue
            if o.dry_run:
                sys.stdout.write(change.diff())
            else:
                change.apply()
    sys.stdout.flush()
    for result in results:
        unchanged = all(not c.changed for c in result.changes)
        for note in result.notes:
            prefix = "(dry run) " if o.dry_run else ""
            suffix = " (already so)" if unchanged and result.changes else ""
            sys.stderr.write(f"{prefix}{note}{suffix}\n")
    return 0
