"""`krun --version`."""

from __future__ import annotations

from types import SimpleNamespace

from krun import OCI_VERSION, __version__


def main(g: SimpleNamespace, o: SimpleNamespace) -> int:
    print(f"krun version {__version__}\nspec: {OCI_VERSION}\nlibcrun: 1.8.1 (linked in-process)")
    return 0
