"""`unpack`: an image archive's rootfs extracted safely, and its run config.

For `krun km --image`: one linux/amd64 image from an OCI layout, a `docker save` or
`podman save` archive (gzip'd or not; nested indexes, gzip layers, whiteouts). Every
digest and diff_id is checked before anything is written; a layer entry with `..`, a
device node, a FIFO, or a path through a symlink is refused (paths are walked one
component at a time, never following a link); on error the destination is removed.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from krun.errors import KrunError, strerror
from krun.toolkit.image import (
    CHUNK,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    _file_sha256,
    _sha256,
)


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
