"""Test images without a registry: built in Python from the busybox rootfs tarball.

Three images, as layer tarballs that `docker import` / `podman import` take as they are,
or wrapped into an OCI image layout for `ctr image import`:
  busybox  the busybox-static rootfs (scripts/build-rootfs), plus /uname.km when built
  kontain  ONLY payloads (/hello.km runs) and the /.kontain marker: no shell, no libc, no KM
  pause    busybox whose entrypoint waits for a signal: the CRI pod sandbox (infra)
           image, which containerd's CRI needs and no registry can provide here
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KRUN_CACHE = Path(os.environ.get("KRUN_CACHE", "/var/cache/krun"))
BUSYBOX_TAR = KRUN_CACHE / "rootfs" / "busybox.tar.gz"
PAYLOADS = REPO / "km_payloads"

BUSYBOX = "krun.test/busybox:1"
KONTAIN = "krun.test/kontain-hello:1"
PAUSE = "krun.test/pause:1"
# The pause image's process: pid 1 of the sandbox; exits on the signals that stop it.
PAUSE_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]


def payload(name: str) -> Path | None:
    """A built Kontain payload (scripts/build-km makes them), or None."""
    p = PAYLOADS / name
    return p if p.is_file() else None


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def busybox_layer(extra: dict[str, bytes] | None = None) -> bytes:
    """The busybox rootfs as an uncompressed layer tar, with extra files at the root."""
    out = io.BytesIO()
    with tarfile.open(BUSYBOX_TAR, "r:gz") as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, data)
        for name, data in (extra or {}).items():
            _add(dst, f"./{name}", data)
    return out.getvalue()


def kontain_layer(payload_path: Path) -> bytes:
    """Just payloads and the marker: whatever runs them can only be KM. The image's
    command runs `payload_path`; the other payloads km_payloads builds (signal deaths,
    a SIGTERM handler, the loader...) are there for tests to name instead."""
    out = io.BytesIO()
    others = [*PAYLOADS.glob("*.km"), *PAYLOADS.glob("*.so"), *PAYLOADS.glob("*.sh")]
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in dict.fromkeys([payload_path, *sorted(others)]):
            _add(tar, f"./{path.name}", path.read_bytes())
        _add(tar, "./.kontain", b"", 0o644)
    return out.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def oci_archive(layer: bytes, ref: str, cmd: list[str], entrypoint: list[str] | None = None
                ) -> bytes:
    """An OCI image layout (as a tar) holding one single-layer linux/amd64 image."""
    blobs: dict[str, bytes] = {}
    compressed = gzip.compress(layer, mtime=0)
    layer_desc = _blob(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": cmd, **({"Entrypoint": entrypoint} if entrypoint else {}),
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created_by": "krun tests/engines/images.py"}],
    }
    config_desc = _blob(blobs, json.dumps(config).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, json.dumps(manifest).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    # ctr names the image from io.containerd.image.name; other tools read ref.name.
    manifest_desc["annotations"] = {"io.containerd.image.name": ref,
                                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        _add(tar, "index.json", json.dumps(index).encode(), 0o644)
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", data, 0o644)
    return out.getvalue()


def import_changes(cmd: list[str], entrypoint: list[str] | None = None) -> list[str]:
    """`--change` arguments for docker/podman import (their Dockerfile syntax)."""
    changes = ["--change", f"CMD {json.dumps(cmd)}",
               "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    if entrypoint:
        changes += ["--change", f"ENTRYPOINT {json.dumps(entrypoint)}"]
    return changes
