"""Minimal OCI images around a Kontain payload (`krun image build`); reading them back
is krun.toolkit.image_unpack.

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
