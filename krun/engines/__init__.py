"""Registering krun with container engines: `krun install` and `krun uninstall`.

Each engine module computes, from the files it finds, the text each file should have
(`Change`); nothing is written until every engine asked for has planned without error,
so a refused edit leaves all files alone. Edits only add or remove krun's own entries:
other runtimes and settings, and the files' layout, stay as they were, and running the
same command twice changes nothing the second time.

No import beyond `os` at the top: `krun` loads this package only for these two commands,
and tomlkit (tomlfile, for the TOML files) only inside the functions that edit them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ENGINES = ("docker", "podman", "containerd", "crio", "kubernetes")
# Marks what krun wrote into a shared file, so that uninstall removes exactly that.
MARKER = '# Added by "krun install"; "krun uninstall" removes it.'
KONTAIN_ANNOTATION = "app.kontain.version"


class EngineError(Exception):
    """An engine's configuration that krun will not edit (the message says why)."""


class Context:
    __slots__ = ("config_root", "krun_path", "output", "state_root")

    def __init__(self, krun_path: str, config_root: str = "/", state_root: str = "/run/krun",
                 output: str | None = None) -> None:
        self.krun_path, self.config_root = krun_path, config_root
        self.state_root, self.output = state_root, output

    def etc(self, *parts: str) -> str:
        """An absolute path under the config root (`/etc/...` by default)."""
        return os.path.join(self.config_root, "etc", *parts)


class Change:
    """One file's text before and after (None: the file does not exist)."""

    __slots__ = ("new", "old", "path")

    def __init__(self, path: str, old: str | None, new: str | None) -> None:
        self.path, self.old, self.new = path, old, new

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self) -> str:
        import difflib

        a = (self.old or "").splitlines(keepends=True)
        b = (self.new or "").splitlines(keepends=True)
        lines = difflib.unified_diff(a, b, "/dev/null" if self.old is None else self.path,
                                     "/dev/null" if self.new is None else self.path)
        out = []
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(out)

    def apply(self) -> None:
        if not self.changed:
            return
        if self.new is None:
            os.unlink(self.path)
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        mode = os.stat(self.path).st_mode & 0o7777 if self.old is not None else 0o644
        # Write a sibling and rename it over the file: a crash leaves the old file or the
        # new one, never half of each, for a daemon that reads it at start.
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.krun-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.write(fd, self.new.encode())
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)


class Result:
    """What one engine's install or uninstall does: file changes, text for stdout, notes."""

    __slots__ = ("changes", "notes", "stdout")

    def __init__(self, changes: list[Change] | None = None, notes: list[str] | None = None,
                 stdout: str = "") -> None:
        self.changes = changes or []
        self.notes = notes or []
        self.stdout = stdout


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise EngineError(f"{path}: not UTF-8 text (byte {e.start}); fix it first") from None


_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _have(*programs: str) -> bool:
    import shutil

    path = os.environ.get("PATH", "") + ":" + _SBIN_PATH
    return any(shutil.which(p, path=path) for p in programs)


def installed(config_root: str) -> list[str]:
    """The engines present: by their programs on this machine, or (for another config
    root, such as an image being built) by their configuration directories."""
    dirs = {"docker": "docker", "podman": "containers", "containerd": "containerd",
            "crio": "crio", "kubernetes": "kubernetes"}
    programs = {"docker": ("dockerd",), "podman": ("podman",), "containerd": ("containerd",),
                "crio": ("crio",), "kubernetes": ("kubelet", "kubectl")}
    found = []
    for engine in ENGINES:
        if os.path.realpath(config_root) == "/":
            present = _have(*programs[engine])
        else:
            present = os.path.isdir(os.path.join(config_root, "etc", dirs[engine]))
        if present:
            found.append(engine)
    return found


def plan(engine: str, ctx: Context, install: bool) -> Result:
    module = __import__(f"krun.engines.{engine}", fromlist=["install", "uninstall"])
    fn: Callable[[Context], Result] = module.install if install else module.uninstall
    return fn(ctx)
