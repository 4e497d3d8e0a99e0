"""containerd: a CRI runtime handler `krun` in /etc/containerd/config.toml.

The handler uses containerd's own runc shim (io.containerd.runc.v2) with krun as its
BinaryName. The shim's options carry no runtime arguments, so there is no always-Kontain
handler here (a wrapper script could add one, at the price of a second program start on
every runtime call, and would be one more file to keep in step with krun). Kontain is
chosen per pod or container instead: the handler passes the `app.kontain.*` annotations
through to the OCI config (pod_annotations / container_annotations), and krun runs a
container carrying app.kontain.version = "1", or an image with the /.kontain marker,
under KM. `ctr run --runc-binary KRUN` needs no configuration at all.
"""

from __future__ import annotations

import tomllib
from typing import Any

from krun.engines import (
    KONTAIN_ANNOTATION,
    MARKER,
    Change,
    Context,
    EngineError,
    Result,
    read,
    tomledit,
)

_PATTERNS = ["app.kontain.*"]
_NEW_FILE = f"{MARKER}\nversion = 2\n"
assert KONTAIN_ANNOTATION.startswith(_PATTERNS[0].rstrip("*"))


def _cri_runtimes(doc: dict[str, Any]) -> tuple[str, ...]:
    """Where the CRI plugin's runtimes live, by the config file's schema version."""
    version = doc.get("version", 1 if doc else 2)
    if version == 3:  # containerd 2.x
        return ("plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes")
    if version == 2:
        return ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")
    return ("plugins", "cri", "containerd", "runtimes")  # version 1: short plugin ids


def _settings(ctx: Context) -> list[tuple[tuple[str, ...], str, Any]]:
    return [((), "runtime_type", "io.containerd.runc.v2"),
            ((), "pod_annotations", _PATTERNS),
            ((), "container_annotations", _PATTERNS),
            (("options",), "BinaryName", ctx.krun_path)]


def install(ctx: Context) -> Result:
    path = ctx.etc("containerd", "config.toml")
    old = read(path)
    # A new file says which schema it uses (containerd 1.x reads a file without `version`
    # as the old version 1), under a marker that lets uninstall remove the file again.
    text = old if old and old.strip() else (old or "") + _NEW_FILE
    try:
        base = (*_cri_runtimes(tomllib.loads(text)), "krun")
        for sub, key, value in _settings(ctx):
            table = base + sub
            if tomledit.lookup(tomllib.loads(text), (*table, key)) != value:
                text = tomledit.set_key(text, table, key, tomledit.value(value), value,
                                        marker=MARKER)
    except (tomledit.TomlEditError, tomllib.TOMLDecodeError) as e:
        raise EngineError(f"{path}: {e}") from None
    new = old if old is not None and text == old else text
    return Result([Change(path, old, new)],
                  [f"containerd: CRI runtime handler krun in {path}; restart containerd, "
                   "then use it with runtimeClassName/`crictl runp --runtime krun`"])


def uninstall(ctx: Context) -> Result:
    path = ctx.etc("containerd", "config.toml")
    old = read(path)
    if old is None:
        return Result([], [f"containerd: {path} does not exist"])
    try:
        base = (*_cri_runtimes(tomllib.loads(old)), "krun")
        text = tomledit.remove_table(old, (*base, "options"), marker=MARKER)
        text = tomledit.remove_table(text, base, marker=MARKER)
    except (tomledit.TomlEditError, tomllib.TOMLDecodeError) as e:
        raise EngineError(f"{path}: {e}") from None
    new = None if text in ("", _NEW_FILE) else text  # a file install created goes away
    return Result([Change(path, old, new)], [f"containerd: removed the krun handler from {path}"])
