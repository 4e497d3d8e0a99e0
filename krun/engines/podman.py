"""podman: `krun = ["KRUN"]` in containers.conf's [engine.runtimes].

That table maps a runtime name to candidate paths of its binary and nothing else, so
podman cannot pass `--kontain=always` the way dockerd's runtimeArgs do, and krun
registers no `krun-kontain` here. Kontain is chosen per container instead:
`podman run --runtime krun --annotation app.kontain.version=1 ...` (podman copies
annotations into the OCI config), or by an image carrying the `/.kontain` marker.

podman's built-in defaults already name a runtime "krun" (crun's libkrun flavour) in
runtime_supports_json/_kvm/_nocgroups: all three fit krun, and the KVM one only picks
an SELinux label.
"""

from __future__ import annotations

import tomllib

from krun.engines import MARKER, Change, Context, EngineError, Result, read, tomledit

TABLE = ("engine", "runtimes")


def _path(ctx: Context) -> str:
    return ctx.etc("containers", "containers.conf")


def install(ctx: Context) -> Result:
    path = _path(ctx)
    old = read(path)
    text = old or ""
    want = [ctx.krun_path]
    try:
        current = tomledit.lookup(tomllib.loads(text), (*TABLE, "krun"))
        new = text if current == want else tomledit.set_key(
            text, TABLE, "krun", tomledit.value(want), want, marker=MARKER)
    except (tomledit.TomlEditError, tomllib.TOMLDecodeError) as e:
        raise EngineError(f"{path}: {e}") from None
    return Result([Change(path, old, new if old is not None or new else None)],
                  [f"podman: runtime krun in {path}: podman run --runtime krun ..."])


def uninstall(ctx: Context) -> Result:
    path = _path(ctx)
    old = read(path)
    if old is None:
        return Result([], [f"podman: {path} does not exist"])
    try:
        new = tomledit.remove_key(old, TABLE, "krun", marker=MARKER)
    except (tomledit.TomlEditError, tomllib.TOMLDecodeError) as e:
        raise EngineError(f"{path}: {e}") from None
    # A file that held only what install wrote goes away as install found it: absent.
    return Result([Change(path, old, new or None)], [f"podman: removed krun from {path}"])
