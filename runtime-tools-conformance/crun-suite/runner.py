"""Run one of crun's test files the way `make check` does, tagging each test.

    python3 runner.py TESTS_DIR/test_NAME.py

The file runs unchanged as __main__, importing crun's tests_utils from its own
directory. The one addition: before each test function runs, its name is put in
the environment as CRUN_SUITE_TEST (the runtime wrapper logs it with every runtime
command, so a failure can be traced to the command that failed) and announced on
stderr as a `## crun-suite: test NAME` line (so the test's stderr can be split per
test). The TAP lines on stdout are tests_utils' own.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable

MARKER = "## crun-suite: test "


def tagged(name: str, fn: Callable[[], int]) -> Callable[[], int]:
    def run() -> int:
        os.environ["CRUN_SUITE_TEST"] = name
        sys.stdout.flush()
        sys.stderr.write(f"{MARKER}{name}\n")
        sys.stderr.flush()
        return fn()

    return run


def main() -> None:
    path = os.path.abspath(sys.argv[1])
    # The test file's directory replaces this one on the path, as if it ran directly.
    sys.path[0] = os.path.dirname(path)
    import tests_utils  # crun's, from that directory

    original = tests_utils.tests_main

    def tests_main(all_tests: dict[str, Callable[[], int]]) -> None:
        original({name: tagged(name, fn) for name, fn in all_tests.items()})

    tests_utils.tests_main = tests_main
    sys.argv = [path, *sys.argv[2:]]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
