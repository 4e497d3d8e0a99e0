"""Minimal OCI images around a Kontain payload (`krun image build`), and `unpack`.

An image built here holds only the payload (at /<its file name>), what `--add` names,
and the /.kontain marker, in one uncompressed layer; its config carries the entrypoint,
env, workdir, user and the label app.kontain.version=1 (an annotation of the manifest
too). The archive is written by hand to the OCI image spec: PyPI has no well-kept
library for writing image layouts (the `docker` SDK needs a daemon; `opencontainers`
is pre-1.0 data classes; `pyoci` calls itself experimental), the format is three small
JSON documents and two tars, and reproducibility depends on exactly the details a
library would hide (entry order, tar headers, JSON bytes).

Formats:
  oci     (default) an OCI image layout (oci-layout, index.json, blobs/sha256/...) that
          also carries docker's manifest.json and repositories, pointing at the same
          blobs, as `docker save` of docker 25 does: one tar that `docker load`,
          `podman load` and `ctr images import` all accept.
  docker  the classic `docker save` archive (manifest.json, repositories,
          <config>.json, <layer>/layer.tar, VERSION, json), for tools that know only it.

Reproducible by construction: every timestamp is SOURCE_DATE_EPOCH (else 0), entries
are sorted, files are 0:0 with fixed modes (0755 with any exec bit, else 0644; dirs
0755), layers are uncompressed (gzip output differs between zlib builds), and JSON is
written with sorted keys and no whitespace. So the same inputs give the same digests on
any machine.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from krun.errors import KrunError, UsageError, strerror

LABEL = "app.kontain.version"
MARKER = ".kontain"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
PLATFORM = {"architecture": "amd64", "os": "linux"}  # KM runs x86-64 payloads only
CREATED_BY = "krun image build"
MAX_JSON = 16 << 20  # an index, manifest or config larger than this is not one
CHUNK = 1 << 20
PREFIX = "image build"


def _json(value: Any) -> bytes:
    """The one serialisation of `value`: sorted keys, no whitespace, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _bad(msg: str) -> UsageError:
    return UsageError(f"{PREFIX}: {msg}")


def _fail(msg: str) -> KrunError:
    return KrunError(f"{PREFIX}: {msg}")


# Options ------------------------------------------------------------------------------

# docker's reference grammar (distribution/reference), which every engine applies.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"


@dataclass(frozen=True)
class Reference:
    """NAME[:TAG] as given (tag defaulting to latest), and what each engine calls it."""

    name: str
    tag: str
    domain: str | None

    @property
    def given(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def qualified(self) -> str:
        """docker.io/library/NAME:TAG for a short name: what docker and CRI look up, so
        containerd (which takes the name as it is) stores that."""
        if self.domain:
            return self.given
        library = "library/" if "/" not in self.name else ""
        return f"docker.io/{library}{self.given}"


def parse_reference(text: str) -> Reference:
    what = f"bad -t {text!r}"
    if not text:
        raise _bad("bad -t '': an image name is needed (NAME[:TAG])")
    if "@" in text:
        raise _bad(f"{what}: a digest cannot be given; name the image NAME[:TAG]")
    name, tag = text, "latest"
    colon = text.rfind(":")
    if colon > text.rfind("/"):
        name, tag = text[:colon], text[colon + 1:]
        if not re.fullmatch(_TAG, tag):
            raise _bad(f"{what}: invalid tag {tag!r} (letters, digits, _ . -; at most 128)")
    parts = name.split("/")
    domain = None
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"
                           or first != first.lower()):
        domain, parts = first, parts[1:]
        if not re.fullmatch(_DOMAIN, domain):
            raise _bad(f"{what}: invalid registry host {domain!r}")
    for part in parts:
        if not re.fullmatch(_COMPONENT, part):
            if re.fullmatch(_COMPONENT, part.lower()):
                raise _bad(f"{what}: repository name must be lowercase")
            raise _bad(f"{what}: invalid name component {part!r} (lowercase letters, "
                       "digits, and . _ __ - between them)")
    if len(name) > 255:
        raise _bad(f"{what}: the name is longer than 255 characters")
    return Reference(name, tag, domain)


def parse_env(items: Sequence[str]) -> list[str]:
    """KEY=VALUE words, in order; a KEY given again replaces its value (as ENV does)."""
    env: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise _bad(f"bad --env {item!r}: expected KEY=VALUE")
        if "\0" in item or any(c.isspace() for c in key):
            raise _bad(f"bad --env {item!r}: the name holds whitespace or NUL")
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def parse_argv(text: str, option: str) -> list[str]:
    """An entrypoint or command: a JSON array (exactly these words) or a shell-quoted
    line (split as a shell would, without expanding anything)."""
    if text.lstrip().startswith("["):
        try:
            words = json.loads(text)
        except ValueError as e:
            raise _bad(f"bad {option}: not a JSON array of strings ({e})") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise _bad(f"bad {option}: not a JSON array of strings")
    else:
        try:
            words = shlex.split(text)
        except ValueError as e:
            raise _bad(f"bad {option} {text!r}: {e}") from None
    if any("\0" in w for w in words):
        raise _bad(f"bad {option}: a word holds NUL")
    return words


def parse_user(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?",
                        text) or len(text) > 256:
        raise _bad(f"bad --user {text!r}: expected USER[:GROUP] (names or numbers)")
    return text


def parse_workdir(text: str) -> str:
    if not text.startswith("/") or "\0" in text:
        raise _bad(f"bad --workdir {text!r}: must be an absolute path")
    return os.path.normpath(text).replace("//", "/")


def image_path(text: str, what: str) -> tuple[str, ...]:
    """An image path as its components; `..` is refused, not resolved: what it would
    mean depends on symlinks, and no DEST may leave the image's root."""
    if "\0" in text:
        raise _bad(f"{what}: the path holds NUL")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _bad(f"{what}: {text!r} escapes the image root (..)")
    for p in parts:
        if p.startswith(".wh."):
            raise _bad(f"{what}: {p!r} is a layer whiteout name")
    return parts


def source_date_epoch() -> int:
    text = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return 0
    if not re.fullmatch(r"[0-9]+", text) or int(text) >= 8 ** 11:
        raise _fail(f"SOURCE_DATE_EPOCH={text!r}: not a number of seconds since 1970")
    return int(text)


# The payload --------------------------------------------------------------------------

PT_INTERP = 3


def _elf_interpreter(f: IO[bytes]) -> str | None:
    """The PT_INTERP of a 64-bit little-endian ELF, or None (also for what is not one:
    krun's payload check words those)."""
    f.seek(0)
    header = f.read(64)
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", header, 32)
    phentsize, phnum = struct.unpack_from("<HH", header, 54)
    if phentsize < 56 or phnum > 4096:
        return None
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    if len(table) < phentsize * phnum:
        return None
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table,
                                                                  i * phentsize)
        if p_type == PT_INTERP:
            f.seek(p_offset)
            return f.read(min(p_filesz, 4096)).split(b"\0", 1)[0].decode(errors="replace")
    return None


def check_payload(path: Path) -> None:
    """A static x86-64 ELF that KM runs: krun's own create-time check (every segment at
    or above 2 MiB, the machine, the type), plus no interpreter: the image holds nothing
    else for it to load. A KM snapshot (ET_CORE) is static too, and passes."""
    what = f"payload {path}"
    try:
        st = os.stat(path)
    except OSError as e:
        raise _fail(f"{what}: {strerror(e.errno or errno.EIO)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(f"{what}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(f"{what}: not a regular file")
    try:
        with open(path, "rb") as f:
            if f.read(2) == b"#!":
                raise _fail(f"{what}: a script, not a static ELF payload (the image would "
                            "hold no interpreter)")
            interp = _elf_interpreter(f)
    except OSError as e:
        raise _fail(f"{what}: {strerror(e.errno or errno.EIO)}") from None
    if interp is not None:
        raise _fail(f"{what}: dynamically linked (interpreter {interp}); the image needs a "
                    "static payload")
    from krun.kontain.payload import check_payload as check_in_root

    real = os.path.realpath(path)
    inside = "/" + os.path.basename(real)
    try:
        check_in_root(os.path.dirname(real), inside)
    except KrunError as e:
        # Its words name the payload as the container sees it: name the host's file.
        msg = e.msg.removeprefix(f"payload {inside}")
        raise _fail(f"{what}{msg}") from None


# The layer ----------------------------------------------------------------------------

@dataclass
class Entry:
    kind: str  # "file", "dir" or "symlink"
    origin: str  # what put it there, for conflict messages
    mode: int = 0o755
    source: str | None = None  # a file's host path
    follow: bool = False  # a file named by --add itself: its symlink is followed
    data: bytes | None = None
    target: str = ""  # a symlink's


def _file_mode(st: os.stat_result) -> int:
    # Only the exec bit survives: umasks and owners differ between machines.
    return 0o755 if st.st_mode & 0o111 else 0o644


@dataclass
class Layer:
    """The image's filesystem, path (as components) -> entry."""

    entries: dict[tuple[str, ...], Entry] = field(default_factory=dict)

    def put(self, parts: tuple[str, ...], entry: Entry) -> None:
        show = "/" + "/".join(parts)
        for i in range(1, len(parts)):
            above = parts[:i]
            there = self.entries.get(above)
            if there is None:
                self.entries[above] = Entry("dir", entry.origin)
            elif there.kind == "symlink":
                raise _fail(f"{entry.origin}: {show} would be written through the symlink "
                            f"/{'/'.join(above)} (-> {there.target}), which could lead out "
                            "of the image")
            elif there.kind != "dir":
                raise _fail(f"{entry.origin}: /{'/'.join(above)} is a file in the image "
                            f"(from {there.origin}), not a directory")
        there = self.entries.get(parts)
        if there is not None:
            if there.kind == entry.kind == "dir":
                return
            raise _fail(f"{entry.origin}: {show} is already in the image (from {there.origin})")
        self.entries[parts] = entry

    def add(self, src: str, dest: str, origin: str) -> None:
        """`--add SRC:DEST`: a file at DEST (DEST/ takes its name), or a directory's
        contents under DEST. Symlinks inside a directory stay symlinks."""
        parts = image_path(dest, origin)
        try:
            st = os.stat(src)
        except OSError as e:
            raise _fail(f"{origin}: {src}: {strerror(e.errno or errno.EIO)}") from None
        if stat.S_ISREG(st.st_mode):
            if dest.endswith("/") or not parts:
                parts = (*parts, *image_path(os.path.basename(os.path.abspath(src)), origin))
            self.put(parts, Entry("file", origin, _file_mode(st), src, follow=True))
        elif stat.S_ISDIR(st.st_mode):
            if parts:
                self.put(parts, Entry("dir", origin))
            self._walk(src, parts, origin)
        else:
            raise _fail(f"{origin}: {src}: not a regular file or a directory")

    def _walk(self, directory: str, parts: tuple[str, ...], origin: str) -> None:
        try:
            names = os.listdir(directory)
        except OSError as e:
            raise _fail(f"{origin}: {directory}: {strerror(e.errno or errno.EIO)}") from None
        for name in sorted(names):
            path = os.path.join(directory, name)
            here = (*parts, *image_path(name, f"{origin}: {path}"))
            try:
                st = os.lstat(path)
            except OSError as e:
                raise _fail(f"{origin}: {path}: {strerror(e.errno or errno.EIO)}") from None
            if stat.S_ISREG(st.st_mode):
                self.put(here, Entry("file", origin, _file_mode(st), path))
            elif stat.S_ISDIR(st.st_mode):
                self.put(here, Entry("dir", origin))
                self._walk(path, here, origin)
            elif stat.S_ISLNK(st.st_mode):
                # Kept as it is: inside a container the kernel resolves it in the root.
                self.put(here, Entry("symlink", origin, 0o777, target=os.readlink(path)))
            else:
                raise _fail(f"{origin}: {path}: not a regular file, directory or symlink")

    def write(self, out: IO[bytes], epoch: int) -> None:
        """The layer tar: parents before children, names byte-sorted, every header
        field fixed by the entry alone."""
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            for parts in sorted(self.entries, key=lambda p: [os.fsencode(c) for c in p]):
                entry = self.entries[parts]
                info = _tarinfo("/".join(parts), entry.mode, epoch)
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, entry.target
                    tar.addfile(info)
                elif entry.data is not None:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    assert entry.source is not None
                    with _open_source(entry) as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)


def _tarinfo(name: str, mode: int, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _open_source(entry: Entry) -> IO[bytes]:
    assert entry.source is not None
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if entry.follow else os.O_NOFOLLOW)
    try:
        fd = os.open(entry.source, flags)
    except OSError as e:
        raise _fail(f"{entry.origin}: {entry.source}: {strerror(e.errno or errno.EIO)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was listed
        os.close(fd)
        raise _fail(f"{entry.origin}: {entry.source}: not a regular file")
    return os.fdopen(fd, "rb")


# The archive --------------------------------------------------------------------------

@dataclass
class Spec:
    """What `krun image build` was asked for, checked."""

    payload: Path
    ref: Reference
    fmt: str = "oci"
    entrypoint: list[str] | None = None  # None: the payload
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    adds: list[tuple[str, str, str]] = field(default_factory=list)  # (src, dest, origin)


@dataclass
class Built:
    image_id: str  # the config's digest: what engines show as IMAGE ID
    manifest_digest: str | None  # the OCI manifest's (oci format only)
    diff_id: str


def plan_layer(spec: Spec) -> Layer:
    layer = Layer()
    name = spec.payload.name
    layer.put(image_path(name, f"payload {spec.payload}"),
              Entry("file", "the payload", 0o755, str(spec.payload), follow=True))
    layer.put((MARKER,), Entry("file", "the /.kontain marker", 0o644, data=b""))
    for src, dest, origin in spec.adds:
        layer.add(src, dest, origin)
    return layer


def _created(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def image_config(spec: Spec, diff_id: str, epoch: int) -> dict[str, Any]:
    created = _created(epoch)
    entrypoint = spec.entrypoint if spec.entrypoint is not None else [f"/{spec.payload.name}"]
    config: dict[str, Any] = {"Labels": {LABEL: "1"}}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if spec.cmd:
        config["Cmd"] = spec.cmd
    if spec.env:
        config["Env"] = spec.env
    if spec.workdir:
        config["WorkingDir"] = spec.workdir
    if spec.user:
        config["User"] = spec.user
    return {**PLATFORM, "created": created, "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": CREATED_BY}]}


def _write_archive(out: IO[bytes], files: dict[str, bytes | IO[bytes]], dirs: Sequence[str],
                   epoch: int) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        names = sorted([*dirs, *files])
        for name in names:
            if name in files:
                content = files[name]
                info = _tarinfo(name, 0o644, epoch)
                if isinstance(content, bytes):
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
                else:
                    content.seek(0, os.SEEK_END)
                    info.size = content.tell()
                    content.seek(0)
                    tar.addfile(info, content)
            else:
                info = _tarinfo(name, 0o755, epoch)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)


def write_image(spec: Spec, out: IO[bytes], scratch: str) -> Built:
    """The whole archive into `out`; the layer is staged in an unnamed file in
    `scratch` (beside the output: same filesystem, nothing left if we die)."""
    epoch = source_date_epoch()
    layer = plan_layer(spec)
    with tempfile.TemporaryFile(dir=scratch) as layer_file:
        try:
            layer.write(layer_file, epoch)
        except (OSError, tarfile.TarError) as e:  # a file that changed while read
            raise _fail(f"writing the layer: {e}") from None
        layer_file.flush()
        diff_id = _file_sha256(layer_file)
        size = layer_file.tell()
        config = _json(image_config(spec, diff_id, epoch))
        config_id = _sha256(config)
        layer_hex, config_hex = diff_id.split(":")[1], config_id.split(":")[1]
        ref = spec.ref
        manifest_digest = None
        if spec.fmt == "oci":
            manifest = _json({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_id,
                           "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": diff_id, "size": size}],
                "annotations": {LABEL: "1"},
            })
            manifest_digest = _sha256(manifest)
            # ctr names the import from io.containerd.image.name, podman from ref.name.
            index = _json({
                "schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                               "size": len(manifest), "platform": PLATFORM,
                               "annotations": {REF_NAME: ref.given,
                                               CONTAINERD_NAME: ref.qualified}}],
            })
            blobs = "blobs/sha256/"
            files: dict[str, bytes | IO[bytes]] = {
                "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
                "index.json": index,
                blobs + manifest_digest.split(":")[1]: manifest,
                blobs + config_hex: config,
                blobs + layer_hex: layer_file,
                # docker load reads only these two: the same blobs, by path.
                "manifest.json": _json([{"Config": blobs + config_hex,
                                         "RepoTags": [ref.given],
                                         "Layers": [blobs + layer_hex]}]),
                "repositories": _json({ref.name: {ref.tag: layer_hex}}),
            }
            dirs = ["blobs/", blobs]
        else:
            legacy = _json({"id": layer_hex, "created": _created(epoch), **PLATFORM})
            files = {
                f"{config_hex}.json": config,
                f"{layer_hex}/VERSION": b"1.0",
                f"{layer_hex}/json": legacy,
                f"{layer_hex}/layer.tar": layer_file,
                "manifest.json": _json([{"Config": f"{config_hex}.json",
                                         "RepoTags": [ref.given],
                                         "Layers": [f"{layer_hex}/layer.tar"]}]),
                "repositories": _json({ref.name: {ref.tag: layer_hex}}),
            }
            dirs = [f"{layer_hex}/"]
        _write_archive(out, files, dirs, epoch)
    return Built(config_id, manifest_digest, diff_id)


class AtomicOutput:
    """-o FILE written as an unnamed file in FILE's directory (O_TMPFILE) and linked in
    by rename once complete: a failed or killed build leaves no partial FILE, and an
    older FILE stays until the new one replaces it whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dir = str(path.parent)
        self.temp_name: str | None = None
        if path.is_dir():
            raise _fail(f"-o {path}: is a directory")
        try:
            self.fd = os.open(self.dir, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise _fail(f"-o {path}: {strerror(e.errno or errno.EIO)}") from None
            self.fd = self._named()  # a filesystem without O_TMPFILE
        self.file = os.fdopen(self.fd, "wb")

    def _named(self) -> int:
        self.temp_name = os.path.join(self.dir, f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(self.temp_name, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC,
                           0o644)
        except OSError as e:
            self.temp_name = None
            raise _fail(f"-o {self.path}: {strerror(e.errno or errno.EIO)}") from None

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.fd)
        try:
            if self.temp_name is None:
                name = os.path.join(self.dir, f".{self.path.name}.{secrets.token_hex(4)}.tmp")
                # Through linkat(AT_SYMLINK_FOLLOW): CPython calls plain link(), which
                # would link the /proc symlink itself, when no dir fd is given.
                dfd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.link(f"/proc/self/fd/{self.fd}", name, src_dir_fd=dfd, dst_dir_fd=dfd,
                            follow_symlinks=True)
                finally:
                    os.close(dfd)
                self.temp_name = name
            os.replace(self.temp_name, self.path)
            self.temp_name = None
        except OSError as e:
            raise _fail(f"-o {self.path}: {strerror(e.errno or errno.EIO)}") from None
        finally:
            self.close()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
        if self.temp_name is not None:
            try:
                os.unlink(self.temp_name)
            except OSError:
                pass
            self.temp_name = None


def build(spec: Spec, output: Path) -> Built:
    out = AtomicOutput(output)
    try:
        built = write_image(spec, out.file, out.dir)
        out.commit()
    finally:
        out.close()
    return built


# Loading into an engine ---------------------------------------------------------------

ENGINE_TOOLS = {"docker": "docker", "podman": "podman", "containerd": "ctr"}


def load(engine: str, archive: Path, namespace: str | None = None) -> str:
    """`docker load -i`, `podman load -i` or `ctr -n NS images import`, with the CLI on
    $PATH, which reads its own settings (DOCKER_HOST, CONTAINERS_CONF,
    CONTAINERD_ADDRESS...). Returns what the tool printed."""
    tool = ENGINE_TOOLS[engine]
    exe = shutil.which(tool)
    if exe is None:
        raise _fail(f"--load {engine}: {tool} not found in $PATH")
    if engine == "containerd":
        ns = namespace or os.environ.get("CONTAINERD_NAMESPACE") or "default"
        argv = [exe, "-n", ns, "images", "import", str(archive)]
    else:
        argv = [exe, "load", "-i", str(archive)]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _fail(f"--load {engine}: {tool}: {e}") from None
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        last = said[-1] if said else "no message"
        raise _fail(f"--load {engine}: {tool} {' '.join(argv[1:-1])} exited "
                    f"{proc.returncode}: {last}")
    return proc.stdout


# Reading an image archive -------------------------------------------------------------

def _norm(name: str) -> str:
    """An archive member's name without ./ and slashes around it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


_HEX64 = re.compile(r"[0-9a-f]{64}")


class _Archive:
    """An image archive opened for reading members by name (never extracted itself)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
        except OSError as e:
            raise self.error(strerror(e.errno or errno.EIO)) from None
        except tarfile.TarError:
            raise self.error("not a tar archive") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for m in self.tar.getmembers():
                self.members[_norm(m.name)] = m
        except (tarfile.TarError, OSError, EOFError) as e:
            raise self.error(f"a damaged archive ({e})") from None

    def error(self, msg: str) -> KrunError:
        return KrunError(f"image {self.path}: {msg}")

    def member(self, name: str) -> tarfile.TarInfo:
        """The regular file `name`, through symlinks inside the archive (docker save
        links a layer shared by two images)."""
        seen = name = _norm(name)
        for _ in range(8):
            m = self.members.get(name)
            if m is None:
                break
            if m.isreg():
                return m
            if not m.issym():
                break
            name = _norm(os.path.normpath(os.path.join(os.path.dirname(name), m.linkname)))
            if name.startswith("../") or name == "..":
                break
        raise self.error(f"{seen}: missing from the archive")

    def open(self, name: str) -> IO[bytes]:
        f = self.tar.extractfile(self.member(name))
        assert f is not None
        return f

    def read_json(self, name: str, digest: str | None = None, size: int | None = None) -> Any:
        m = self.member(name)
        if m.size > MAX_JSON:
            raise self.error(f"{name}: too large for a JSON document ({m.size} bytes)")
        data = self.open(name).read()
        if digest is not None and _sha256(data) != digest:
            raise self.error(f"{name}: its content does not match its digest {digest}")
        if size is not None and len(data) != size:
            raise self.error(f"{name}: {len(data)} bytes, but its descriptor says {size}")
        try:
            return json.loads(data)
        except ValueError:
            raise self.error(f"{name}: not JSON") from None

    def blob_name(self, descriptor: Any) -> str:
        digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
        if not isinstance(digest, str) or ":" not in digest:
            raise self.error(f"a descriptor without a digest: {descriptor!r:.200}")
        algorithm, hexpart = digest.split(":", 1)
        if algorithm != "sha256" or not _HEX64.fullmatch(hexpart):
            raise self.error(f"unsupported digest {digest!r:.100} (sha256 only)")
        return f"blobs/sha256/{hexpart}"

    def read_blob_json(self, descriptor: dict[str, Any]) -> Any:
        size = descriptor.get("size")
        return self.read_json(self.blob_name(descriptor), descriptor["digest"],
                              size if isinstance(size, int) else None)


@dataclass
class _Image:
    config: dict[str, Any]
    layers: list[tuple[str, str | None]]  # member name, its digest when the format has one
    diff_ids: list[str]


def _pick(archive: _Archive, index: Any, depth: int = 0) -> dict[str, Any]:
    """The one linux/amd64 image manifest an index (maybe nested) leads to."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or depth > 4:
        raise archive.error("index.json: no manifests list")
    found: list[dict[str, Any]] = []
    for d in manifests:
        if not isinstance(d, dict):
            continue
        platform = d.get("platform")
        if isinstance(platform, dict) and (platform.get("os"), platform.get(
                "architecture")) != ("linux", "amd64"):
            continue
        media = d.get("mediaType")
        if media in (OCI_INDEX, DOCKER_LIST):
            found.append(_pick(archive, archive.read_blob_json(d), depth + 1))
        elif media in (OCI_MANIFEST, DOCKER_MANIFEST, None):
            found.append(archive.read_blob_json(d))
    if len(found) != 1:
        raise archive.error(f"holds {len(found)} linux/amd64 images; unpack needs exactly one")
    return found[0]


def _find_image(archive: _Archive) -> _Image:
    if "index.json" in archive.members:
        manifest = _pick(archive, archive.read_json("index.json"))
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise archive.error("a manifest without config or layers")
        config = archive.read_blob_json(config_desc)
        layer_refs = [(archive.blob_name(d), str(d["digest"])) for d in layers]
    elif "manifest.json" in archive.members:
        entries = archive.read_json("manifest.json")
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(
                entries[0], dict):
            count = len(entries) if isinstance(entries, list) else 0
            raise archive.error(f"manifest.json lists {count} images; unpack needs exactly one")
        entry = entries[0]
        config_name, layers = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layers, list) or not all(
                isinstance(x, str) for x in layers):
            raise archive.error("manifest.json: an entry without Config or Layers")
        base = os.path.basename(config_name).removesuffix(".json")
        digest = f"sha256:{base}" if _HEX64.fullmatch(base) else None
        config = archive.read_json(config_name, digest)
        layer_refs = [(name, None) for name in layers]
    else:
        raise archive.error("not an image archive (no index.json or manifest.json)")
    if not isinstance(config, dict):
        raise archive.error("the image config is not a JSON object")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_refs) or not all(
            isinstance(d, str) for d in diff_ids):
        raise archive.error("the config's rootfs.diff_ids do not match the layers")
    return _Image(config, layer_refs, diff_ids)


GZIP_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def _verify_layer(archive: _Archive, name: str, digest: str | None, diff_id: str) -> None:
    """The blob's digest (as the manifest names it) and its uncompressed content's
    (the config's diff_id), before a byte of it is unpacked."""
    with archive.open(name) as f:
        magic = f.read(4)
        f.seek(0)
        if magic == ZSTD_MAGIC:
            raise archive.error(f"{name}: a zstd-compressed layer (not supported)")
        blob = _file_sha256(f)
        if digest is not None and blob != digest:
            raise archive.error(f"{name}: its content does not match its digest {digest}")
        if magic[:2] == GZIP_MAGIC:
            f.seek(0)
            h = hashlib.sha256()
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    while chunk := g.read(CHUNK):
                        h.update(chunk)
            except (OSError, EOFError) as e:
                raise archive.error(f"{name}: a damaged gzip stream ({e})") from None
            blob = "sha256:" + h.hexdigest()
    if blob != diff_id:
        raise archive.error(f"{name}: its content does not match the config's diff_id "
                            f"{diff_id}")


@dataclass
class _Op:
    kind: str  # file, dir, symlink, link, whiteout, opaque
    parts: tuple[str, ...]
    member: tarfile.TarInfo | None = None
    link: tuple[str, ...] = ()


def _member_parts(archive: _Archive, where: str, name: str) -> tuple[str, ...]:
    if "\0" in name:
        raise archive.error(f"{where}: a name with NUL")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise archive.error(f"{where}: {name!r} leads out of the root (..): refused")
    return parts


def _plan_layer(archive: _Archive, where: str, tar: tarfile.TarFile) -> list[_Op]:
    """Every entry of a layer checked before anything is written: a device node, a
    FIFO or a name with `..` refuses the whole image."""
    ops: list[_Op] = []
    for m in tar.getmembers():
        parts = _member_parts(archive, where, m.name)
        if m.ischr() or m.isblk():
            raise archive.error(f"{where}: {m.name!r} is a device node: refused")
        if m.isfifo():
            raise archive.error(f"{where}: {m.name!r} is a FIFO: refused")
        if not parts:
            continue  # the root itself: dest keeps its own mode
        base = parts[-1]
        if base == ".wh..wh..opq":
            ops.append(_Op("opaque", parts[:-1]))
        elif base.startswith(".wh."):
            hidden = base[4:]
            if hidden in ("", ".", ".."):
                raise archive.error(f"{where}: a bad whiteout {m.name!r}")
            ops.append(_Op("whiteout", (*parts[:-1], hidden)))
        elif m.isreg():
            ops.append(_Op("file", parts, m))
        elif m.isdir():
            ops.append(_Op("dir", parts, m))
        elif m.issym():
            if not m.linkname or "\0" in m.linkname:
                raise archive.error(f"{where}: {m.name!r}: a symlink without a target")
            ops.append(_Op("symlink", parts, m))
        elif m.islnk():
            link = _member_parts(archive, where, m.linkname)
            if not link:
                raise archive.error(f"{where}: {m.name!r}: a hard link to the root")
            ops.append(_Op("link", parts, m, link))
        else:
            raise archive.error(f"{where}: {m.name!r}: an entry of type {m.type!r}: refused")
    return ops


class _Tree:
    """A root directory written by fd: every path is walked one component at a time
    without following symlinks, so no entry (nor a symlink an earlier one made) can
    lead a write outside it."""

    def __init__(self, archive: _Archive, root_fd: int) -> None:
        self.archive, self.fd = archive, root_fd
        self.root_user = os.geteuid() == 0
        self.dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}

    def parent(self, parts: tuple[str, ...], create: bool) -> int | None:
        """An fd of parts' parent directory (None if it is missing and not created)."""
        fd = os.dup(self.fd)
        try:
            for i, name in enumerate(parts[:-1]):
                try:
                    new = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(name, 0o700, dir_fd=fd)
                    new = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                    os.fchmod(new, 0o755)  # a parent no entry names: what engines make
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self.archive.error(
                            f"{'/'.join(parts)}: /{'/'.join(parts[:i + 1])} is a symlink or "
                            "not a directory; a path through it is refused") from None
                    raise
                os.close(fd)
                fd = new
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def remove(dir_fd: int, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)

    def owner(self, m: tarfile.TarInfo, name: str | int, dir_fd: int | None) -> None:
        if not self.root_user:
            return  # an unprivileged unpack owns everything it writes
        if isinstance(name, int):
            os.fchown(name, m.uid, m.gid)
        else:
            os.chown(name, m.uid, m.gid, dir_fd=dir_fd, follow_symlinks=False)

    def apply(self, tar: tarfile.TarFile, ops: list[_Op]) -> None:
        # Whiteouts hide what lower layers hold, never this layer's own entries.
        for op in ops:
            if op.kind in ("whiteout", "opaque"):
                self.hide(op)
        for op in ops:
            if op.kind not in ("whiteout", "opaque"):
                self.put(tar, op)

    def hide(self, op: _Op) -> None:
        if op.kind == "whiteout":
            pfd = self.parent(op.parts, create=False)
            if pfd is not None:
                try:
                    self.remove(pfd, op.parts[-1])
                finally:
                    os.close(pfd)
            return
        target = (*op.parts, ".")  # the directory itself
        pfd = self.parent(target, create=False)
        if pfd is None:
            return
        try:
            for name in os.listdir(pfd):
                self.remove(pfd, name)
        finally:
            os.close(pfd)

    def put(self, tar: tarfile.TarFile, op: _Op) -> None:
        m = op.member
        assert m is not None
        pfd = self.parent(op.parts, create=True)
        assert pfd is not None
        name = op.parts[-1]
        try:
            if op.kind == "dir":
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(name, dir_fd=pfd)
                        raise FileNotFoundError
                except FileNotFoundError:
                    os.mkdir(name, 0o700, dir_fd=pfd)  # its mode once its children are in
                self.dirs[op.parts] = m
                return
            self.remove(pfd, name)
            if op.kind == "file":
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                with os.fdopen(fd, "wb") as out:
                    src = tar.extractfile(m)
                    assert src is not None
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    self.owner(m, fd, None)
                    os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears set-id bits
                    os.utime(fd, (m.mtime, m.mtime))
            elif op.kind == "symlink":
                os.symlink(m.linkname, name, dir_fd=pfd)
                self.owner(m, name, pfd)
                os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
            else:
                self.link(op, pfd)
        finally:
            os.close(pfd)

    def link(self, op: _Op, pfd: int) -> None:
        sfd = self.parent(op.link, create=False)
        if sfd is None:
            raise self.archive.error(f"{'/'.join(op.parts)}: a hard link to a missing "
                                     f"{'/'.join(op.link)}")
        try:
            try:
                st = os.stat(op.link[-1], dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                raise self.archive.error(f"{'/'.join(op.parts)}: a hard link to "
                                         f"{'/'.join(op.link)}, which is not a regular file")
            os.link(op.link[-1], op.parts[-1], src_dir_fd=sfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            os.close(sfd)

    def finish(self) -> None:
        """Directories' modes, owners and times, deepest first (a read-only directory
        would have refused its children)."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            m = self.dirs[parts]
            pfd = self.parent((*parts, "."), create=False)
            if pfd is None:
                continue  # hidden by a later layer's whiteout
            try:
                self.owner(m, pfd, None)
                os.fchmod(pfd, m.mode & 0o7777)
                os.utime(pfd, (m.mtime, m.mtime))
            finally:
                os.close(pfd)


CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User")


def _run_config(archive: _Archive, config: dict[str, Any]) -> dict[str, Any]:
    part = config.get("config") or {}
    if not isinstance(part, dict):
        raise archive.error("the image config's config is not an object")
    out = dict(part)
    for key in ("Entrypoint", "Cmd", "Env"):
        value = part.get(key)
        if value is not None and (not isinstance(value, list) or not all(
                isinstance(w, str) for w in value)):
            raise archive.error(f"the image config's {key} is not a list of strings")
        out[key] = (value or []) if key == "Env" else value
    for key in ("WorkingDir", "User"):
        value = part.get(key)
        if value is not None and not isinstance(value, str):
            raise archive.error(f"the image config's {key} is not a string")
        out[key] = value or ""
    return out


def unpack(image_tar: Path, dest: Path) -> dict[str, Any]:
    """Extract the image in `image_tar` (the oci or docker format above, `docker save`,
    `podman save`, an OCI layout tar; one linux/amd64 image) into `dest`, which must be
    missing or an empty directory, and return its config's `config` object with
    Entrypoint and Cmd (list or None), Env (list), WorkingDir and User (str, "" when
    unset) always present.

    Every digest is checked first, then every layer's entries: `..` in a name, device
    nodes, FIFOs and writes through symlinks are refused. Whiteouts of later layers
    apply. Owners are kept when run as root. On any error dest is left as it was found
    (removed, or emptied) and KrunError says why, naming the archive."""
    image_tar, dest = Path(image_tar), Path(dest)
    archive = _Archive(image_tar)
    try:
        image = _find_image(archive)
        run_config = _run_config(archive, image.config)
        for (name, digest), diff_id in zip(image.layers, image.diff_ids, strict=True):
            _verify_layer(archive, name, digest, diff_id)
        made = _prepare_dest(archive, dest)
        try:
            root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                tree = _Tree(archive, root_fd)
                for i, (name, _) in enumerate(image.layers):
                    with _open_layer(archive, name) as tar:
                        ops = _plan_layer(archive, f"layer {i + 1} ({name})", tar)
                        tree.apply(tar, ops)
                tree.finish()
            finally:
                os.close(root_fd)
        except BaseException as e:
            _undo(dest, made)
            if isinstance(e, OSError):
                raise archive.error(f"unpacking into {dest}: {e.strerror or e}") from None
            if isinstance(e, tarfile.TarError | EOFError):
                raise archive.error(f"a damaged layer ({e})") from None
            raise
    finally:
        archive.tar.close()
    return run_config


@dataclass
class _LayerTar:
    tar: tarfile.TarFile

    def __enter__(self) -> tarfile.TarFile:
        return self.tar

    def __exit__(self, *exc: object) -> None:
        self.tar.close()


def _open_layer(archive: _Archive, name: str) -> _LayerTar:
    try:
        return _LayerTar(tarfile.open(fileobj=archive.open(name), mode="r:*"))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise archive.error(f"{name}: not a tar layer ({e})") from None


def _prepare_dest(archive: _Archive, dest: Path) -> bool:
    """True if unpack made dest (and so removes it on failure)."""
    try:
        os.mkdir(dest, 0o755)
        return True
    except FileExistsError:
        pass
    except OSError as e:
        raise archive.error(f"{dest}: {strerror(e.errno or errno.EIO)}") from None
    if dest.is_symlink() or not dest.is_dir():
        raise archive.error(f"{dest}: exists and is not a directory")
    if any(True for _ in os.scandir(dest)):
        raise archive.error(f"{dest}: not an empty directory")
    return False


def _undo(dest: Path, made: bool) -> None:
    try:
        if made:
            shutil.rmtree(dest)
            return
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for name in os.listdir(fd):
                _Tree.remove(fd, name)
        finally:
            os.close(fd)
    except OSError:
        pass  # the original error is the one to report


def main_build(spec: Spec, output: Path | None, load_into: str | None,
               namespace: str | None) -> int:
    """`krun image build`: write (and maybe load) the image; one line on stdout."""
    check_payload(spec.payload)
    if output is None:
        if load_into is None:
            raise _bad("give -o FILE.tar, --load ENGINE, or both")
        with tempfile.TemporaryDirectory(prefix="krun-image-") as scratch:
            path = Path(scratch) / "image.tar"
            built = build(spec, path)
            said = load(load_into, path, namespace)
    else:
        built = build(spec, output)
        said = load(load_into, output, namespace) if load_into else ""
    where = f"{output}: " if output else ""
    manifest = f", manifest {built.manifest_digest}" if built.manifest_digest else ""
    sys.stdout.write(f"{where}{spec.ref.given}, image id {built.image_id}{manifest}\n")
    if said:
        sys.stdout.write(said if said.endswith("\n") else said + "\n")
    return 0
