"""The protections krun promises: its interpreter cannot be overwritten from a container
(CVE-2019-5736), and paths resolved in a rootfs never lead out of it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import Krun

from krun.errors import KrunError
from krun.kontain.payload import find_executable, resolve_in_root


def _interpreter(krun: Krun) -> str:
    with open(krun.binary) as f:
        return f.readline()[2:].split()[0]


def test_krun_interpreter_is_read_only(krun: Krun) -> None:
    """libcrun skips its sealed-memfd re-exec only for a binary on a read-only mount;
    krun's interpreter must be one, so writing to it fails whatever the caller."""
    interpreter = os.path.realpath(_interpreter(krun))
    assert os.statvfs(interpreter).f_flag & os.ST_RDONLY
    with pytest.raises(OSError) as info:
        os.open(interpreter, os.O_WRONLY)
    assert info.value.errno in (errno.EROFS, errno.ETXTBSY)


def successful_execs(argv: list[str], tmp_path: Path) -> list[str]:
    """The execve/execveat calls (libcrun's re-exec is an fexecve) that `argv` makes."""
    import re
    import shutil
    import subprocess

    if shutil.which("strace") is None:
        pytest.fail("strace is missing: scripts/setup installs it")
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,execveat", "-o",
                           str(trace), *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [line for line in trace.read_text().splitlines()
            if re.search(r"\bexecve(at)?\(", line) and line.rstrip().endswith("= 0")]


def test_krun_runs_once_not_reexecuted(krun: Krun, tmp_path: Path) -> None:
    """With the read-only interpreter, loading libcrun does not re-execute krun: a
    command that loads it (`--version`: the guard is the binding's constructor) starts
    one interpreter, not two."""
    execs = successful_execs([krun.binary, "--version"], tmp_path)
    assert len(execs) == 1, execs
    assert _interpreter(krun) not in execs[0] or krun.binary in execs[0]


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "real").write_text("x")
    (root / "bin" / "real").chmod(0o755)
    return root


def test_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("host secret")
    outside.chmod(0o755)
    (root / "bin" / "abs").symlink_to("/bin/real")
    (root / "bin" / "escape").symlink_to("../../../../outside")
    (root / "bin" / "hostabs").symlink_to(str(outside))
    (root / "bin" / "dirlink").symlink_to("/../..")
    assert resolve_in_root(str(root), "/bin/abs") == "/bin/real"
    # `..` stops at the rootfs and an absolute target restarts there: the host file next
    # to the rootfs is never reached.
    for link in ("/bin/escape", "/bin/hostabs", "/bin/dirlink/outside"):
        with pytest.raises(KrunError, match="no such file"):
            resolve_in_root(str(root), link)
        with pytest.raises(KrunError, match="no such file"):
            find_executable(str(root), link, [], "/")
    assert resolve_in_root(str(root), "/bin/dirlink") == "/"


def test_symlink_loops_are_refused(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    (root / "bin" / "a").symlink_to("b")
    (root / "bin" / "b").symlink_to("a")
    with pytest.raises(KrunError, match="too many levels"):
        resolve_in_root(str(root), "/bin/a")


def test_path_search_stays_in_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    assert find_executable(str(root), "real", ["PATH=/bin"], "/") == "/bin/real"
    with pytest.raises(KrunError, match="executable file not found"):
        find_executable(str(root), "sh", ["PATH=/bin"], "/")
