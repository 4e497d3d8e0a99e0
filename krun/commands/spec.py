"""`krun spec`: write a default config.json into the bundle (never over an existing one)."""

from __future__ import annotations

import os

from krun import fastjson as json
from krun.errors import KrunError, UsageError, path_error
from krun.runtime.default_spec import default_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    spec = default_spec(rootless=o.rootless)
    if o.kontain:
        from krun.kontain.spec import add_kontain

        add_kontain(spec, o.payload)
    elif o.payload:
        raise UsageError("--payload goes with --kontain")
    path = os.path.join(o.bundle, "config.json")
    if not os.path.isdir(o.bundle):
        raise KrunError(f"bundle {o.bundle}: no such file or directory")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise KrunError(f"file {path} exists: remove it first") from None
    except OSError as e:
        raise path_error("open", e, path) from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(spec, indent=2))
        f.write("\n")
    return 0
