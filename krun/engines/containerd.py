"""containerd: a CRI runtime handler `krun` in /etc/containerd/config.toml.

The handler uses containerd's own runc shim (io.containerd.runc.v2) with krun as its
BinaryName. The shim's options carry no runtime arguments, so there is no always-Kontain
handler here (a wrapper script could add one, at the price of a second program start on
every runtime call, and would be one more file to keep in step with krun). Kontain is
chosen per pod or container instead: the handler passes the `app.kontain.*` annotations
through to the OCI config (pod_annotations / container_annotations), and krun runs a
container carrying app.kontain.version = "1", or an image with the /.kontain marker,
under KM. `ctr run --runc-binary KRUN` needs no configuration at all.

Uninstall removes the whole handler `krun` (its table and [krun.options]), also one that
was there before install, which only updated it.
"""

from __future__ import annotations

from typing import Any

from krun.engines import (
    KONTAIN_ANNOTATION,
    MARKER,
    Change,
    Context,
    EngineError,
    Result,
    read,
    tomlfile,
)

_PATTERNS = ["app.kontain.*"]
assert KONTAIN_ANNOTATION.startswith(_PATTERNS[0].rstrip("*"))


def _version_block(nl: str) -> str:
    """What install puts in a file without settings: containerd 1.x reads a file without
    `version` as the old version 1."""
    return f"{MARKER}{nl}version = 2{nl}"


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


def _remove(text: str) -> str | None:
    """What uninstall makes of the file's text (None: remove the file)."""
    base = (*_cri_runtimes(tomlfile.load(text)), "krun")
    new = tomlfile.remove_table(text, (*base, "options"), marker=MARKER)
    new = tomlfile.remove_table(new, base, marker=MARKER)
    nl = tomlfile.newline(new)
    block = _version_block(nl)
    if new.endswith(block) and not tomlfile.load(new[:-len(block)]):
        # The version line install added, in a file that has nothing else now.
        if len(new) == len(block):
            return None  # the file install created (an existing one had a line before)
        new = new[:-len(block) - len(nl)] if new[:-len(block)].endswith(nl) else new
    return new


def install(ctx: Context) -> Result:
    path = ctx.etc("containerd", "config.toml")
    old = read(path)
    try:
        doc = tomlfile.load(old or "")
        text = old or ""
        if not doc:  # no settings: say which schema the file uses, under the marker
            nl = tomlfile.newline(text)
            text = ("" if old is None else text + nl) + _version_block(nl)
            doc = tomlfile.load(text)
        base = (*_cri_runtimes(doc), "krun")
        fresh = tomlfile.lookup(doc, base) is None
        for sub, key, value in _settings(ctx):
            text = tomlfile.set_value(text, base + sub, key, value, marker=MARKER)
        new = old if old is not None and text == old else text
        if fresh and new is not None and _remove(new) != old:
            raise tomlfile.TomlEditError("uninstall would not give this file back as it "
                                         "is; add the krun handler by hand")
    except tomlfile.TomlEditError as e:
        raise EngineError(f"{path}: {e}") from None
    return Result([Change(path, old, new)],
                  [f"containerd: CRI runtime handler krun in {path}; restart containerd, "
                   "then use it with runtimeClassName/`crictl runp --runtime krun`"])


def uninstall(ctx: Context) -> Result:
    path = ctx.etc("containerd", "config.toml")
    old = read(path)
    if old is None:
        return Result([], [f"containerd: {path} does not exist"])
    try:
        new = _remove(old)
    except tomlfile.TomlEditError as e:
        raise EngineError(f"{path}: {e}") from None
    return Result([Change(path, old, new)], [f"containerd: removed the krun handler from {path}"])
