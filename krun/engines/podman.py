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

from krun.engines import MARKER, Change, Context, EngineError, Result, read, tomlfile

TABLE = ("engine", "runtimes")


def _path(ctx: Context) -> str:
    return ctx.etc("containers", "containers.conf")


def _remove(text: str) -> str | None:
    """What uninstall makes of the file's text (None: remove the file)."""
    new = tomlfile.remove_key(text, TABLE, "krun", marker=MARKER)
    # A file that install created (it starts with the marker) goes away when only what
    # install wrote was in it; an existing empty file stays (install wrote a blank line
    # before the marker there).
    return None if new == "" and text.startswith(MARKER) else new


def install(ctx: Context) -> Result:
    path = _path(ctx)
    old = read(path)
    want = [ctx.krun_path]
    try:
        current = tomlfile.lookup(tomlfile.load(old or ""), (*TABLE, "krun"))
        new = old if current == want else tomlfile.set_value(old, TABLE, "krun", want,
                                                             marker=MARKER)
        if current is None and new is not None and _remove(new) != old:
            raise tomlfile.TomlEditError("uninstall would not give this file back as it is; "
                                         f"add krun = {tomlfile.literal(want)} by hand")
    except tomlfile.TomlEditError as e:
        raise EngineError(f"{path}: {e}") from None
    return Result([Change(path, old, new)],
                  [f"podman: runtime krun in {path}: podman run --runtime krun ..."])


def uninstall(ctx: Context) -> Result:
    path = _path(ctx)
    old = read(path)
    if old is None:
        return Result([], [f"podman: {path} does not exist"])
    try:
        tomlfile.load(old)
        new = _remove(old)
    except tomlfile.TomlEditError as e:
        raise EngineError(f"{path}: {e}") from None
    return Result([Change(path, old, new)], [f"podman: removed krun from {path}"])
