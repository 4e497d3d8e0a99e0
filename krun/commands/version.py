"""`krun --version` in crun's shape (tools parse it), and crun's `--usage`."""

from __future__ import annotations

from krun import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace


def _commit() -> str:
    """The commit this krun was built from (setup.py records it in the package)."""
    try:
        from krun._build_info import COMMIT
    except ImportError:  # run from a source tree, not an installed build
        return "unknown"
    return COMMIT


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
