"""`krun --version` in crun's shape (tools parse it), and crun's `--usage`."""

from __future__ import annotations

import os
from types import SimpleNamespace

from krun import OCI_VERSION, __version__


def _commit() -> str:
    """The git commit krun runs from, read from .git without running git (cheap)."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    git = os.path.join(top, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read(200).strip()
        if head.startswith("ref: "):
            ref = head[5:]
            try:
                with open(os.path.join(git, ref)) as f:
                    return f.read(100).strip()
            except FileNotFoundError:
                with open(os.path.join(git, "packed-refs")) as f:
                    for line in f:
                        if line.rstrip().endswith(" " + ref):
                            return line.split()[0]
                return "unknown"
        return head
    except OSError:
        return "unknown"


def main(g: SimpleNamespace, o: SimpleNamespace) -> int:
    from krun.runtime._libcrun import ffi, lib

    features = ffi.string(lib.krun_build_features()).decode()
    print(f"krun version {__version__}\ncommit: {_commit()}\nrundir: {g.root}\n"
          f"spec: {OCI_VERSION}\n{features} +KONTAIN\nlibcrun: 1.8.1 (linked in-process)")
    return 0


def usage() -> int:
    from krun.cli import COMMANDS

    names = " ".join(c.name for c in COMMANDS if not c.help.startswith("internal:"))
    print("Usage: krun [--root DIR] [--log FILE] [--log-format text|json] [--debug] "
          "[--cgroup-manager MANAGER] [--rootless VALUE] [--systemd-cgroup] [--kontain MODE] "
          f"[-v] COMMAND [OPTION...]\nCOMMAND: {names}")
    return 0
