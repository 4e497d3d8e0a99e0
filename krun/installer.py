"""What installing krun does to the host, for the interpreter that runs this module.

    python3 -I -m krun.installer launcher DEST    # write DEST, the `krun` command
    python3 -I -m krun.installer protect          # the interpreter's directory read-only
    python3 -I -m krun.installer unprotect        # before pip writes there again
    python3 -I -m krun.installer pin CONFIG KM SHA256   # [kontain] km, km_sha256
    python3 -I -m krun.installer unpin CONFIG     # remove what pin set

scripts/install-krun (a checkout) and the release's install.sh/uninstall.sh all call
this, so each of these exists once.

The launcher is not pip's console script, which runs `site` (~4 ms of .pth processing on
every call, paid 3-4 times per `docker run`): it starts the interpreter with -I -S and
names the one directory krun is imported from, the venv's root-owned site-packages,
after the standard library so nothing there can shadow it. No source checkout, no
PYTHON* variable and no user directory is ever on sys.path.

The guard: libcrun protects against CVE-2019-5736 (a container overwriting the runtime
binary through /proc/self/exe) by re-executing a binary that is not on a read-only mount
from a sealed copy. For krun that binary is the interpreter, so the re-exec would pay its
start twice per call. The venv's interpreter is a private copy (venv --copies) on a
read-only bind mount instead: the same protection without the second start. A mount does
not survive a reboot; until `protect` runs again libcrun falls back to its re-exec, and
`krun check` says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile


def _interpreter_dir() -> str:
    return os.path.dirname(os.path.abspath(sys.executable))


def launcher_text() -> str:
    paths = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in paths:
            paths.append(path)
    return (f"#!{os.path.abspath(sys.executable)} -IS\n"
            "# krun's entry point, written by `python3 -I -m krun.installer launcher`.\n"
            "# -I -S: no site, no user paths, no PYTHON* variables; krun is imported from\n"
            "# the venv's root-owned site-packages only.\n"
            "import sys\n"
            f"sys.path.extend({paths!r})\n"
            "from krun.cli import main\n"
            "main()\n")


def _replace(path: str, text: str, mode: int) -> None:
    """Write `path` whole or not at all: a reader (or a running krun, for the launcher)
    sees the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_launcher(dest: str) -> None:
    _replace(dest, launcher_text(), 0o755)


def _is_mountpoint(path: str) -> bool:
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def protect() -> None:
    directory = _interpreter_dir()
    if not _is_mountpoint(directory):
        subprocess.run(["mount", "--bind", directory, directory], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", directory], check=True)


def unprotect() -> None:
    directory = _interpreter_dir()
    # Lazy: a running krun may hold the mount; it keeps its binary, new ones see the dir.
    while _is_mountpoint(directory):
        subprocess.run(["umount", "-l", directory], check=True)


PIN_MARKER = "# krun: the KM krun's install.sh installed, pinned by its sha256"


def pin(config: str, km: str, sha256: str) -> None:
    """Point krun.toml at the installed KM and pin it. Through tomlfile, so every other
    setting in an existing file stays byte for byte."""
    from krun.engines import tomlfile

    try:
        with open(config) as f:
            text: str | None = f.read()
    except FileNotFoundError:
        text = None
    new = tomlfile.set_value(text, ("kontain",), "km", km, PIN_MARKER)
    new = tomlfile.set_value(new, ("kontain",), "km_sha256", sha256, PIN_MARKER)
    _replace(config, new, 0o644)


def unpin(config: str) -> None:
    from krun.engines import tomlfile

    with open(config) as f:
        text = f.read()
    new = tomlfile.remove_key(text, ("kontain",), "km_sha256", PIN_MARKER)
    new = tomlfile.remove_key(new, ("kontain",), "km", PIN_MARKER)
    _replace(config, new, 0o644)


def main(argv: list[str]) -> int:
    if argv[:1] == ["launcher"] and len(argv) == 2:
        write_launcher(argv[1])
    elif argv[:1] == ["pin"] and len(argv) == 4:
        pin(*argv[1:])
    elif argv[:1] == ["unpin"] and len(argv) == 2:
        unpin(argv[1])
    elif argv == ["protect"]:
        protect()
    elif argv == ["unprotect"]:
        unprotect()
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
