"""`krun image build` and `krun.toolkit.image_unpack.unpack`, without engines.

The archives are read back here with nothing but tarfile, json and hashlib, and checked
against the OCI image spec: every blob named by its sha256, the descriptors' sizes, the
config's fields, and a layer holding only the payload, /.kontain and what --add names.
The engines' own loaders are in tests/engines/test_image_engines.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, krun_binary

from krun.errors import KrunError
from krun.toolkit.image_unpack import unpack

HELLO = REPO / "km_payloads" / "hello.km"
DYN = REPO / "km_payloads" / "dyn.km"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
# The image of `elf()` below, built with no options as t/elf:1 at epoch 0. It may change
# only on purpose: it is what "the same inputs give the same image on any machine" means.
GOLDEN_MANIFEST = "sha256:db2583a2c6a4bb4e6ec6fe053311e2f1822dacdd2e8e3f2324efbe3c4fbc5a11"
GOLDEN_ARCHIVES = {  # the whole tar, per --format
    "oci": "sha256:929b79a6795620711ac56996de4d8d16b4fe4212f632411f93e47951e41a5b20",
    "docker": "sha256:29c1017a682005414fb4a82f4f4d863ac6b0b03282ccf9f8f1d3c40b8abbaf57",
}


def elf(vaddr: int = 0x400000, machine: int = 62, cls: int = 2, interp: bytes | None = None,
        etype: int = 2) -> bytes:
    """A minimal ELF executable: one PT_LOAD at vaddr (and a PT_INTERP if asked)."""
    phnum = 1 + (interp is not None)
    data_at = 64 + 56 * phnum
    header = struct.pack("<4sBBBB8xHHIQQQIHHHHHH", b"\x7fELF", cls, 1, 1, 0, etype,
                         machine, 1, vaddr, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    code = b"\xf4" * 16  # hlt: never run, only checked
    phdrs = struct.pack("<IIQQQQQQ", 1, 5, 0, vaddr, vaddr, data_at + 16, data_at + 16,
                        0x1000)
    tail = code
    if interp is not None:
        phdrs += struct.pack("<IIQQQQQQ", 3, 4, data_at + 16, 0, 0, len(interp) + 1,
                             len(interp) + 1, 1)
        tail += interp + b"\0"
    return header + phdrs + tail


def build(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([krun_binary(), "image", "build", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def files(path: Path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Oci:
    """An OCI archive read back, every digest and size checked on the way."""

    def __init__(self, path: Path) -> None:
        self.files = files(path)
        for name, data in self.files.items():
            if name.startswith("blobs/sha256/"):
                assert name == f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", name
        assert json.loads(self.files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
        self.index = json.loads(self.files["index.json"])
        assert len(self.index["manifests"]) == 1
        self.descriptor = self.index["manifests"][0]
        self.manifest = json.loads(self.blob(self.descriptor))
        self.config = json.loads(self.blob(self.manifest["config"]))
        self.layer = self.blob(self.manifest["layers"][0])

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        data = self.files["blobs/sha256/" + descriptor["digest"].split(":")[1]]
        assert len(data) == descriptor["size"]
        assert sha(data) == descriptor["digest"]
        return data


def layer_entries(layer: bytes) -> list[tuple[str, str, int, bytes | str]]:
    """(name, kind, mode, content or link target) per entry, in archive order, after
    checking the header fields that must not vary."""
    out: list[tuple[str, str, int, bytes | str]] = []
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for m in tar.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), m.name
            assert m.mtime == int(os.environ.get("SOURCE_DATE_EPOCH", "0")), m.name
            if m.isdir():
                out.append((m.name, "dir", m.mode, b""))
            elif m.issym():
                out.append((m.name, "symlink", m.mode, m.linkname))
            else:
                assert m.isreg(), m.name
                f = tar.extractfile(m)
                assert f is not None
                out.append((m.name, "file", m.mode, f.read()))
    return out


# Building -----------------------------------------------------------------------------

def test_default_image_is_the_payload_and_the_marker(tmp_path: Path) -> None:
    out = tmp_path / "hello.tar"
    proc = build(str(HELLO), "-t", "krun.test/hello:1", "-o", str(out))
    img = Oci(out)
    assert set(img.files) == {"oci-layout", "index.json", "manifest.json", "repositories",
                              *(f"blobs/sha256/{d['digest'].split(':')[1]}" for d in (
                                  img.descriptor, img.manifest["config"],
                                  img.manifest["layers"][0]))}
    assert set(members(out)) == {*img.files, "blobs", "blobs/sha256"}
    assert img.index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert img.descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": "krun.test/hello:1",
        "io.containerd.image.name": "krun.test/hello:1"}
    assert img.descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
    assert img.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert img.manifest["annotations"] == {"app.kontain.version": "1"}
    assert img.manifest["layers"][0]["mediaType"] == OCI_LAYER  # uncompressed
    assert img.manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert img.config["config"] == {"Entrypoint": ["/hello.km"],
                                    "Labels": {"app.kontain.version": "1"}}
    assert (img.config["architecture"], img.config["os"]) == ("amd64", "linux")
    assert img.config["created"] == "1970-01-01T00:00:00Z"
    assert img.config["rootfs"] == {"type": "layers", "diff_ids": [sha(img.layer)]}
    assert layer_entries(img.layer) == [(".kontain", "file", 0o644, b""),
                                        ("hello.km", "file", 0o755, HELLO.read_bytes())]
    # docker load's view of the same blobs.
    [entry] = json.loads(img.files["manifest.json"])
    assert entry == {"Config": f"blobs/sha256/{img.manifest['config']['digest'][7:]}",
                     "RepoTags": ["krun.test/hello:1"],
                     "Layers": [f"blobs/sha256/{sha(img.layer)[7:]}"]}
    assert json.loads(img.files["repositories"]) == {
        "krun.test/hello": {"1": sha(img.layer)[7:]}}
    # Stable JSON: what is written is the one sorted, whitespace-free serialisation.
    for name in ("index.json", "manifest.json", "repositories"):
        data = img.files[name]
        assert data == json.dumps(json.loads(data), sort_keys=True,
                                  separators=(",", ":")).encode()
    assert proc.stdout == (f"{out}: krun.test/hello:1, image id "
                           f"{img.manifest['config']['digest']}, manifest "
                           f"{img.descriptor['digest']}\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_short_name_gets_latest_and_containerd_gets_the_qualified_name(tmp_path: Path) -> None:
    out = tmp_path / "i.tar"
    build(str(HELLO), "-t", "hello", "-o", str(out))
    img = Oci(out)
    assert img.descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": "hello:latest",
        "io.containerd.image.name": "docker.io/library/hello:latest"}
    assert json.loads(img.files["manifest.json"])[0]["RepoTags"] == ["hello:latest"]
    build(str(HELLO), "-t", "me/hello:2", "-o", str(out))
    assert Oci(out).descriptor["annotations"]["io.containerd.image.name"] == \
        "docker.io/me/hello:2"


def _tree(root: Path) -> Path:
    """A directory for --add: an executable, a plain file, a subdirectory, symlinks."""
    (root / "sub").mkdir(parents=True)
    (root / "run.sh").write_text("#!/hello.km\n")
    (root / "run.sh").chmod(0o700)
    (root / "data.txt").write_text("data\n")
    (root / "data.txt").chmod(0o600)
    (root / "sub" / "deep.bin").write_bytes(b"\0\1\2")
    (root / "rel").symlink_to("sub/deep.bin")
    (root / "abs").symlink_to("/etc/hostname")
    return root


def test_options_reach_the_config_and_adds_the_layer(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    conf = tmp_path / "app.conf"
    conf.write_text("x=1\n")
    tool = tmp_path / "tool"
    tool.write_bytes(b"tool")
    tool.chmod(0o751)
    out = tmp_path / "i.tar"
    build(str(HELLO), "-t", "krun.test/opts:1", "-o", str(out),
          "--entrypoint", '["/hello.km", "--flag"]', "--cmd", "a 'b c'",
          "-e", "A=1", "--env", "B=two words", "-e", "A=3", "-e", "EMPTY=",
          "--workdir", "/app/./sub/", "--user", "1000:1000",
          "--add", f"{tree}:/app", "--add", f"{conf}:/etc/app.conf",
          "--add", f"{tool}:/usr/bin/")
    img = Oci(out)
    assert img.config["config"] == {
        "Entrypoint": ["/hello.km", "--flag"], "Cmd": ["a", "b c"],
        "Env": ["A=3", "B=two words", "EMPTY="], "WorkingDir": "/app/sub",
        "User": "1000:1000", "Labels": {"app.kontain.version": "1"}}
    assert layer_entries(img.layer) == [
        (".kontain", "file", 0o644, b""),
        ("app", "dir", 0o755, b""),
        ("app/abs", "symlink", 0o777, "/etc/hostname"),
        ("app/data.txt", "file", 0o644, b"data\n"),
        ("app/rel", "symlink", 0o777, "sub/deep.bin"),
        ("app/run.sh", "file", 0o755, b"#!/hello.km\n"),
        ("app/sub", "dir", 0o755, b""),
        ("app/sub/deep.bin", "file", 0o644, b"\0\1\2"),
        ("etc", "dir", 0o755, b""),
        ("etc/app.conf", "file", 0o644, b"x=1\n"),
        ("hello.km", "file", 0o755, HELLO.read_bytes()),
        ("usr", "dir", 0o755, b""),
        ("usr/bin", "dir", 0o755, b""),
        ("usr/bin/tool", "file", 0o755, b"tool"),
    ]


def test_entrypoint_shell_words_and_none(tmp_path: Path) -> None:
    out = tmp_path / "i.tar"
    build(str(HELLO), "-t", "t/e:1", "-o", str(out), "--entrypoint", "/hello.km -v")
    assert Oci(out).config["config"]["Entrypoint"] == ["/hello.km", "-v"]
    build(str(HELLO), "-t", "t/e:1", "-o", str(out), "--entrypoint", "", "--cmd",
          '["/hello.km"]')
    cfg = Oci(out).config["config"]
    assert "Entrypoint" not in cfg and cfg["Cmd"] == ["/hello.km"]


def test_docker_format_is_a_docker_save_archive(tmp_path: Path) -> None:
    out = tmp_path / "d.tar"
    build(str(HELLO), "-t", "krun.test/hello:1", "-o", str(out), "--format", "docker")
    got = files(out)
    [entry] = json.loads(got["manifest.json"])
    config_name, [layer_name] = entry["Config"], entry["Layers"]
    layer = got[layer_name]
    layer_id = hashlib.sha256(layer).hexdigest()
    assert set(got) == {"manifest.json", "repositories", config_name, layer_name,
                        f"{layer_id}/VERSION", f"{layer_id}/json"}
    assert layer_name == f"{layer_id}/layer.tar"
    assert config_name == hashlib.sha256(got[config_name]).hexdigest() + ".json"
    assert entry["RepoTags"] == ["krun.test/hello:1"]
    assert json.loads(got["repositories"]) == {"krun.test/hello": {"1": layer_id}}
    config = json.loads(got[config_name])
    assert config["rootfs"]["diff_ids"] == [sha(layer)]
    assert config["config"]["Labels"] == {"app.kontain.version": "1"}
    assert [e[0] for e in layer_entries(layer)] == [".kontain", "hello.km"]
    assert "index.json" not in got and "oci-layout" not in got
    # The same image as the oci format's: one config, one layer.
    build(str(HELLO), "-t", "krun.test/hello:1", "-o", str(tmp_path / "o.tar"))
    oci = Oci(tmp_path / "o.tar")
    assert oci.files["blobs/sha256/" + config_name.removesuffix(".json")] == got[config_name]
    assert oci.layer == layer


# Reproducibility ----------------------------------------------------------------------

def _digest(path: Path) -> str:
    return sha(path.read_bytes())


def test_same_inputs_same_bytes_whatever_their_mtimes_owners_and_paths(
        tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    shutil.copy(HELLO, a / "hello.km")
    _tree(a / "tree")
    args = ["-t", "krun.test/repro:1", "--add", "tree:/app", "-e", "K=V"]
    build("hello.km", *args, "-o", str(tmp_path / "1.tar"), cwd=a)
    build(str(a / "hello.km"), "-t", "krun.test/repro:1", "--add", f"{a / 'tree'}:/app",
          "-e", "K=V", "-o", str(tmp_path / "2.tar"))
    # A copy elsewhere, with other times, owners, modes (exec bits kept) and umask.
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b, symlinks=True)
    for path in [b / "hello.km", *(b / "tree").rglob("*")]:
        os.utime(path, (123456789, 987654321), follow_symlinks=False)
        os.chown(path, 4321, 4321, follow_symlinks=False)
    (b / "hello.km").chmod(0o700)
    (b / "tree" / "data.txt").chmod(0o640)
    (b / "tree" / "sub").chmod(0o700)
    env = {**os.environ}
    env.pop("SOURCE_DATE_EPOCH", None)
    build("hello.km", *args, "-o", str(tmp_path / "3.tar"), cwd=b,
          env={**env, "TZ": "Pacific/Kiritimati", "LC_ALL": "C"})
    digests = {_digest(tmp_path / f"{i}.tar") for i in (1, 2, 3)}
    assert len(digests) == 1, digests
    m1, m3 = members(tmp_path / "1.tar"), members(tmp_path / "3.tar")
    assert [(m.name, m.mtime, m.uid, m.mode) for m in m1.values()] == \
        [(m.name, m.mtime, m.uid, m.mode) for m in m3.values()]


def test_source_date_epoch_sets_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    for name in ("1.tar", "2.tar"):
        build(str(HELLO), "-t", "t/sde:1", "-o", str(tmp_path / name), env=env)
    assert _digest(tmp_path / "1.tar") == _digest(tmp_path / "2.tar")
    build(str(HELLO), "-t", "t/sde:1", "-o", str(tmp_path / "0.tar"))
    assert _digest(tmp_path / "0.tar") != _digest(tmp_path / "1.tar")
    img = Oci(tmp_path / "1.tar")
    assert img.config["created"] == "2023-11-14T22:13:20Z"
    assert img.config["history"][0]["created"] == "2023-11-14T22:13:20Z"
    assert {m.mtime for m in members(tmp_path / "1.tar").values()} == {1700000000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    layer_entries(img.layer)  # checks every entry's mtime against the variable


def test_golden_digest(tmp_path: Path) -> None:
    """A payload made here byte for byte, so its image's digest is the same on every
    machine and every run: pinned."""
    payload = tmp_path / "elf.km"
    payload.write_bytes(elf())
    payload.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    proc = build(str(payload), "-t", "t/elf:1", "-o", str(tmp_path / "g.tar"), env=env)
    img = Oci(tmp_path / "g.tar")
    assert img.descriptor["digest"] == GOLDEN_MANIFEST, proc.stdout
    for fmt, digest in GOLDEN_ARCHIVES.items():
        out = tmp_path / f"{fmt}.tar"
        build(str(payload), "-t", "t/elf:1", "-o", str(out), "--format", fmt, env=env)
        assert _digest(out) == digest, fmt


# Unpacking ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_unpack_round_trip(tmp_path: Path, fmt: str) -> None:
    tree = _tree(tmp_path / "tree")
    out = tmp_path / "i.tar"
    build(str(HELLO), "-t", "t/rt:1", "-o", str(out), "--format", fmt,
          "--add", f"{tree}:/app", "--cmd", "x", "-e", "A=1", "-w", "/app", "-u", "7")
    dest = tmp_path / "rootfs"
    config = unpack(out, dest)
    assert {k: config[k] for k in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User")} == {
        "Entrypoint": ["/hello.km"], "Cmd": ["x"], "Env": ["A=1"], "WorkingDir": "/app",
        "User": "7"}
    assert config["Labels"] == {"app.kontain.version": "1"}
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        ".kontain", "app", "app/abs", "app/data.txt", "app/rel", "app/run.sh", "app/sub",
        "app/sub/deep.bin", "hello.km"]
    assert (dest / "hello.km").read_bytes() == HELLO.read_bytes()
    assert stat.S_IMODE((dest / "hello.km").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "app" / "data.txt").stat().st_mode) == 0o644
    assert os.readlink(dest / "app" / "abs") == "/etc/hostname"
    assert (dest / "app" / "rel").read_bytes() == b"\0\1\2"
    assert (dest / "hello.km").stat().st_mtime == 0


def test_unpack_defaults_for_a_bare_config(tmp_path: Path) -> None:
    out = tmp_path / "i.tar"
    write_oci(out, [layer_tar([("x", "file", b"1")])], config={})
    config = unpack(out, tmp_path / "d")
    assert config == {"Entrypoint": None, "Cmd": None, "Env": [], "WorkingDir": "",
                      "User": ""}


def layer_tar(entries: list[tuple[str, str, bytes | str]], gz: bool = False) -> bytes:
    """A layer from (name, kind, content): kind file, dir, symlink, link, chr, fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, content in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "file":
                assert isinstance(content, bytes)
                info.size, data = len(content), io.BytesIO(content)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "link"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                assert isinstance(content, str)
                info.linkname = content
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, data)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def write_oci(path: Path, layers: list[bytes], config: dict[str, Any] | None = None,
              tamper: bool = False) -> None:
    """An OCI layout tar around the given layers (gzip ones marked +gzip)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media: str) -> dict[str, Any]:
        blobs[sha(data)] = data
        return {"mediaType": media, "digest": sha(data), "size": len(data)}

    diff_ids = [sha(gzip.decompress(x) if x[:2] == b"\x1f\x8b" else x) for x in layers]
    cfg = {"architecture": "amd64", "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if config:
        cfg["config"] = config
    manifest = {"schemaVersion": 2, "config": blob(json.dumps(cfg).encode(),
                                                   "application/vnd.oci.image.config.v1+json"),
                "layers": [blob(x, OCI_LAYER + ("+gzip" if x[:2] == b"\x1f\x8b" else ""))
                           for x in layers]}
    desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    index = {"schemaVersion": 2, "manifests": [desc]}
    if tamper:  # a layer whose bytes are not the ones its digest names
        first = manifest["layers"][0]["digest"]
        blobs[first] = blobs[first][:-1] + b"\1"
    with tarfile.open(path, "w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode()),
                           *((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_unpack_applies_whiteouts_and_gzip_layers(tmp_path: Path) -> None:
    lower = layer_tar([("a", "dir", b""), ("a/x", "file", b"x"), ("a/y", "file", b"y"),
                       ("b", "dir", b""), ("b/z", "file", b"z"), ("h", "file", b"h"),
                       ("hl", "link", "h")])
    upper = layer_tar([("a/.wh.x", "file", b""), ("b/.wh..wh..opq", "file", b""),
                       ("b/new", "file", b"n"), ("./c/d", "file", b"d")], gz=True)
    out = tmp_path / "i.tar"
    write_oci(out, [lower, upper])
    dest = tmp_path / "d"
    dest.mkdir()  # an empty directory is fine too
    unpack(out, dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "a", "a/y", "b", "b/new", "c", "c/d", "h", "hl"]
    assert (dest / "hl").stat().st_ino == (dest / "h").stat().st_ino


@pytest.mark.parametrize(("entries", "words"), [
    ([("../evil", "file", b"x")], "leads out of the root"),
    ([("a/../../evil", "file", b"x")], "leads out of the root"),
    ([("null", "chr", b"")], "device node"),
    ([("pipe", "fifo", b"")], "FIFO"),
    ([("link", "symlink", ".."), ("link/evil", "file", b"x")], "is a symlink"),
    ([("link", "symlink", "/"), ("link/tmp/evil", "file", b"x")], "is a symlink"),
    ([("hard", "link", "../evil")], "leads out of the root"),
    ([("s", "symlink", "/etc/passwd"), ("hard", "link", "s")], "not a regular file"),
])
def test_unpack_refuses_hostile_layers(tmp_path: Path, entries: list[Any], words: str
                                       ) -> None:
    out = tmp_path / "sub" / "i.tar"
    out.parent.mkdir()
    write_oci(out, [layer_tar([("ok", "file", b"ok"), *entries])])
    dest = tmp_path / "sub" / "rootfs"
    with pytest.raises(KrunError, match=words):
        unpack(out, dest)
    assert not dest.exists(), "a refused image leaves no rootfs"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["i.tar", "sub"]


def test_unpack_checks_digests_and_dest(tmp_path: Path) -> None:
    out = tmp_path / "i.tar"
    write_oci(out, [layer_tar([("f", "file", b"data")])], tamper=True)
    with pytest.raises(KrunError, match="does not match its digest"):
        unpack(out, tmp_path / "d")
    assert not (tmp_path / "d").exists()
    write_oci(out, [layer_tar([("f", "file", b"data")])])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine").write_text("keep")
    with pytest.raises(KrunError, match="not an empty directory"):
        unpack(out, busy)
    assert (busy / "mine").read_text() == "keep"
    (tmp_path / "junk.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(KrunError, match="not a tar archive"):
        unpack(tmp_path / "junk.tar", tmp_path / "d")
    with pytest.raises(KrunError, match="no such file or directory"):
        unpack(tmp_path / "missing.tar", tmp_path / "d")


# Bad input ----------------------------------------------------------------------------

def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments before -o, words the one error line holds)."""
    text = tmp / "text.km"
    text.write_text("hello\n")
    script = tmp / "script.km"
    script.write_text("#!/hello.km\n")
    low = tmp / "low.km"
    low.write_bytes(elf(vaddr=0x1000))
    arm = tmp / "arm.km"
    arm.write_bytes(elf(machine=183))
    i386 = tmp / "i386.km"
    i386.write_bytes(elf(cls=1))
    dyn = tmp / "dyn.km"
    dyn.write_bytes(elf(interp=b"/lib64/ld-linux-x86-64.so.2"))
    trick = tmp / "trick"
    trick.mkdir()
    (trick / "etc").symlink_to("/etc")
    passwd = tmp / "passwd"
    passwd.write_text("root:x:0:0::/:/bin/sh\n")
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    h, t = str(HELLO), ["-t", "t/bad:1"]
    return [
        ([str(tmp / "missing.km"), *t], "payload " + str(tmp / "missing.km")
         + ": no such file or directory"),
        ([str(tmp), *t], "is a directory"),
        ([str(text), *t], "not an ELF file"),
        ([str(script), *t], "a script, not a static ELF payload"),
        ([str(low), *t], "a segment loads at 0x1000, below 2 MiB"),
        ([str(arm), *t], "not an x86-64 ELF"),
        ([str(i386), *t], "not a 64-bit little-endian ELF"),
        ([str(dyn), *t], "dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2)"),
        ([str(DYN), *t], "dynamically linked"),
        ([h, "-t", "Hello"], "bad -t 'Hello': repository name must be lowercase"),
        ([h, "-t", "a/b:c:d"], "bad -t"),
        ([h, "-t", "a:bad tag"], "invalid tag"),
        ([h, "-t", "a@sha256:" + "0" * 64], "a digest cannot be given"),
        ([h, "-t", ""], "bad -t ''"),
        ([h, "-t", "-a"], "bad -t"),
        ([h, *t, "--env", "FOO"], "bad --env 'FOO': expected KEY=VALUE"),
        ([h, *t, "--env", "=v"], "bad --env '=v'"),
        ([h, *t, "--env", "A B=1"], "whitespace"),
        ([h, *t, "--add", f"{tmp / 'nope'}:/x"], "no such file or directory"),
        ([h, *t, "--add", f"{passwd}:/../etc/passwd"], "escapes the image root"),
        ([h, *t, "--add", f"{passwd}:/a/../../x"], "escapes the image root"),
        ([h, *t, "--add", f"{trick}:/x", "--add", f"{passwd}:/x/etc/passwd"],
         "would be written through the symlink /x/etc (-> /etc)"),
        ([h, *t, "--add", f"{passwd}:/hello.km"], "already in the image (from the payload)"),
        ([h, *t, "--add", f"{passwd}:/.kontain"], "already in the image"),
        ([h, *t, "--add", f"{passwd}:/.wh.x"], "whiteout"),
        ([h, *t, "--add", f"{fifo}:/fifo"], "not a regular file or a directory"),
        ([h, *t, "--add", "nocolon"], "expected SRC:DEST"),
        ([h, *t, "--entrypoint", "[1]"], "not a JSON array of strings"),
        ([h, *t, "--entrypoint", "'unclosed"], "bad --entrypoint"),
        ([h, *t, "--entrypoint", ""], "needs a --cmd"),
        ([h, *t, "--workdir", "rel"], "must be an absolute path"),
        ([h, *t, "--user", "a b"], "bad --user"),
        ([h, *t, "--format", "zip"], "'zip' is not one of"),
    ]


def test_bad_input_one_line_nonzero_no_output(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    cases = _bad_cases(inputs)
    outdir = tmp_path / "out"
    outdir.mkdir()
    old = outdir / "old.tar"
    old.write_bytes(b"an earlier image")
    for args, words in cases:
        for target in (outdir / "new.tar", old):
            proc = build(*args, "-o", str(target), ok=False)
            lines = proc.stderr.splitlines()
            assert proc.returncode != 0, (args, proc.stdout)
            assert len(lines) == 1 and lines[0].startswith("krun: "), (args, proc.stderr)
            assert words in lines[0], (args, lines[0])
            assert proc.stdout == ""
            assert sorted(os.listdir(outdir)) == ["old.tar"], (args, os.listdir(outdir))
            assert old.read_bytes() == b"an earlier image"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="krun-image-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_bad_output_and_environment(open_dir: Path) -> None:
    tmp_path = open_dir
    h, t = str(HELLO), ["-t", "t/bad:1"]
    adir = tmp_path / "adir"
    adir.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    payload = tmp_path / "p.km"
    shutil.copy(HELLO, payload)
    payload.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    cases: list[tuple[list[str], str, dict[str, str] | None, list[str]]] = [
        ([h, *t, "-o", str(tmp_path / "no" / "x.tar")], "-o " + str(tmp_path / "no/x.tar")
         + ": no such file or directory", None, []),
        ([h, *t, "-o", str(adir)], "is a directory", None, []),
        ([h, *t], "give -o FILE.tar, --load ENGINE, or both", None, []),
        ([h, *t, "-o", str(tmp_path / "e.tar")], "SOURCE_DATE_EPOCH='yesterday'",
         {**env, "SOURCE_DATE_EPOCH": "yesterday"}, []),
        ([h, *t, "--namespace", "x", "-o", str(tmp_path / "n.tar")],
         "--namespace goes with --load containerd", None, []),
    ]
    if os.geteuid() == 0:  # a user who may not write there
        cases.append(([str(payload), *t, "-o", str(locked / "x.tar")],
                      "-o " + str(locked / "x.tar") + ": permission denied", None,
                      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]))
    for args, words, env_, prefix in cases:
        proc = subprocess.run([*prefix, krun_binary(), "image", "build", *args],
                              capture_output=True, text=True, timeout=60, env=env_)
        lines = proc.stderr.splitlines()
        assert proc.returncode != 0 and len(lines) == 1, (args, proc.stderr)
        assert words in lines[0], (args, lines[0])
    assert sorted(os.listdir(tmp_path)) == ["adir", "locked", "p.km"]
    assert os.listdir(adir) == [] and os.listdir(locked) == []


def test_load_without_the_engine_cli(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PATH": str(tmp_path), "TMPDIR": str(scratch)}
    for engine, tool in (("docker", "docker"), ("podman", "podman"), ("containerd", "ctr")):
        proc = build(str(HELLO), "-t", "t/l:1", "--load", engine, env=env, ok=False)
        assert proc.returncode == 1
        assert proc.stderr == f"krun: image build: --load {engine}: {tool} not found in $PATH\n"
        assert os.listdir(scratch) == [], "the image made for loading is removed"


def test_load_reports_the_engine_failure(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n"
                    "echo 'Error: cannot connect to the daemon' >&2\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "i.tar"
    proc = build(str(HELLO), "-t", "t/l:1", "-o", str(out), "--load", "docker",
                 env={**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}, ok=False)
    assert proc.returncode == 1
    assert proc.stderr == ("krun: image build: --load docker: docker load -i exited 3: "
                           "Error: cannot connect to the daemon\n")
    assert (tmp_path / "args").read_text() == f"load -i {out}\n"
    Oci(out)  # the file asked for is complete all the same


def test_unpack_as_an_unprivileged_user(open_dir: Path) -> None:
    """Owners cannot be kept then: everything is the caller's, modes still are."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    out = open_dir / "i.tar"
    layer = layer_tar([("ro", "dir", b""), ("ro/f", "file", b"f"), ("x", "file", b"x")])
    write_oci(out, [layer])
    out.chmod(0o644)
    mine = open_dir / "mine"
    mine.mkdir()
    os.chown(mine, 65534, 65534)
    script = ("import sys, os; from krun.toolkit.image_unpack import unpack; "
              "print(unpack(sys.argv[1], sys.argv[2])['Env']); "
              "print(oct(os.stat(sys.argv[2] + '/ro').st_mode & 0o777), "
              "os.stat(sys.argv[2] + '/ro/f').st_uid)")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           f"{sys.prefix}/bin/python3", "-P", "-c", script, str(out),
                           str(mine / "rootfs")], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "0o755 65534"]


def test_cli_words(tmp_path: Path) -> None:
    proc = subprocess.run([krun_binary(), "image"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == ("krun: image: a command is needed: build "
                           "(see krun image --help)\n")
    proc = subprocess.run([krun_binary(), "image", "build", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "--add SRC:DEST" in proc.stdout
    # Not on the runtime's hot path: other commands never import the image code.
    proc = subprocess.run([f"{sys.prefix}/bin/python3", "-P", "-X", "importtime", "-m",
                           "krun", "--root", str(tmp_path), "list"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "krun.toolkit.image" not in proc.stderr
