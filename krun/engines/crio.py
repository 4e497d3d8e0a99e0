"""CRI-O: a drop-in /etc/crio/crio.conf.d/50-krun.conf with the runtime handler `krun`.

CRI-O merges every file of crio.conf.d over crio.conf, so krun owns a whole file and
never edits the administrator's. CRI-O runs the handler through conmon, as podman does,
with `--root <runtime_root>`; /run/krun is krun's own default, so `krun list` shows the
pods' containers too. Like containerd, a handler takes no runtime arguments: Kontain is
chosen per container by the annotation app.kontain.version = "1" (CRI-O copies a
container's annotations into its OCI config) or by an image's /.kontain marker.
"""

from __future__ import annotations

from krun.engines import Change, Context, Result, read, tomlfile

FILE = "50-krun.conf"
HEADER = '# Written by "krun install"; "krun uninstall" removes this file.\n'


def _path(ctx: Context) -> str:
    return ctx.etc("crio", "crio.conf.d", FILE)


def render(ctx: Context) -> str:
    v = tomlfile.literal
    return (f"{HEADER}"
            "[crio.runtime.runtimes.krun]\n"
            f"runtime_path = {v(ctx.krun_path)}\n"
            'runtime_type = "oci"\n'
            f"runtime_root = {v(ctx.state_root)}\n")


def install(ctx: Context) -> Result:
    path = _path(ctx)
    return Result([Change(path, read(path), render(ctx))],
                  [f"crio: runtime handler krun in {path}; restart crio, then use it with "
                   "runtimeClassName/`crictl runp --runtime krun`"])


def uninstall(ctx: Context) -> Result:
    path = _path(ctx)
    old = read(path)
    if old is None:
        return Result([], [f"crio: {path} does not exist"])
    return Result([Change(path, old, None)], [f"crio: removed {path}"])
