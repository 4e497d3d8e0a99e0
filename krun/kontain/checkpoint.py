"""Checkpoint and restore of Kontain containers: a KM snapshot, not CRIU.

A Kontain payload is one vCPU and the memory it uses, with no kernel inside: KM writes
that state to an ELF core file (native/km, "snapshots") and resumes it later. So a
checkpoint is one request to the container's KM, and a restore is a new container
whose KM resumes the snapshot instead of starting a payload.

The request goes to KM's management socket, which KM binds at MGT_IN_CONTAINER (the
container's own /dev, a tmpfs libcrun made: nothing of the rootfs is written). krun
reaches it from the host through the container's root without following any symlink
the container made (openat2 RESOLVE_IN_ROOT, O_PATH|O_NOFOLLOW), connects through that
descriptor, and talks only to a peer that is the pinned KM inode in the container's
pid namespace. The snapshot is written by KM into a file krun opened on the host and
passed over the socket: KM never names a host path.

The image directory holds SNAPSHOT_FILE (KM's snapshot), CONFIG_FILE (the config the
container was created from), META_FILE (krun's facts: the id, KM's digest, the
network address) and INVENTORY_FILE (an empty marker podman looks for), so
`restore --bundle` of the same bundle recreates the container with its mounts, env and
limits, and its address when it is still free.
"""

from __future__ import annotations

import os
import stat

from krun import fastjson as json
from krun.errors import KrunError, path_error, strerror
from krun.kontain.km import MGT_IN_CONTAINER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any

    from krun.runtime.status import Status

SNAPSHOT_FILE = "km.snapshot"
CONFIG_FILE = "config.json"
META_FILE = "krun-checkpoint.json"
# CRIU's image inventory, whose presence podman checks before a restore: here an empty
# marker (no CRIU image is in the directory, and nothing reads it as one).
INVENTORY_FILE = "inventory.img"
FORMAT = 1
REPLY_MAX = 4096
REQUEST_TIMEOUT = 60.0  # KM writes the guest's memory: seconds for a big one
STOP_TIMEOUT = 10.0

NO_CRIU = ("it does not run under KM, and checkpointing other containers needs CRIU, "
           "which this build lacks")


def checkpoint(g: SimpleNamespace, container_id: str, image_path: str,
               leave_running: bool) -> None:
    from krun.runtime import container

    st = container.load(g, container_id)
    record = st.extra
    if "kontain" not in (record.get("handlers") or []):
        raise KrunError(f'cannot checkpoint container "{container_id}": {NO_CRIU}')
    if st.status not in ("running", "paused"):
        raise KrunError(f'cannot checkpoint container "{container_id}" in state '
                        f'"{st.status}": only a running or paused container can be '
                        "checkpointed")
    if st.status == "paused":
        # A frozen KM cannot answer (containerd pauses a task before it checkpoints
        # it): thawed for the request, frozen again if it is to go on.
        container.resume(g, container_id)
        stopped = False
        try:
            _checkpoint(g, st, image_path, leave_running)
            stopped = not leave_running
        finally:
            if not stopped:  # going on, or the checkpoint failed: as it was
                try:
                    container.pause(g, container_id)
                except KrunError:
                    pass  # stopped meanwhile: nothing to freeze
        return
    _checkpoint(g, st, image_path, leave_running)


def _checkpoint(g: SimpleNamespace, st: Status, image_path: str, leave_running: bool) -> None:
    made_dir = not os.path.lexists(image_path)
    dirfd = _image_dir(image_path)
    _sweep(dirfd)
    # Everything is written under temporary names first and renamed into place only
    # once KM has answered: a failed checkpoint leaves the directory as it found it.
    # krun's own files come first: without --leave-running KM stops once the snapshot
    # is written, and a checkpoint that failed after that would have lost the container.
    tmp = {name: f".{name}.{os.getpid()}.tmp" for name in (CONFIG_FILE, META_FILE,
                                                            INVENTORY_FILE, SNAPSHOT_FILE)}
    done = False
    try:
        try:
            _write(dirfd, tmp[CONFIG_FILE], _config_bytes(st))
            _write(dirfd, tmp[META_FILE], json.dumps(_meta(st, leave_running)).encode() + b"\n")
            _write(dirfd, tmp[INVENTORY_FILE], b"")
            out = os.open(tmp[SNAPSHOT_FILE], os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                          os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        except OSError as e:
            raise path_error("write", e, image_path) from None
        try:
            _request(st, out, live=leave_running)
        finally:
            os.close(out)
        for name in (SNAPSHOT_FILE, CONFIG_FILE, INVENTORY_FILE, META_FILE):
            os.rename(tmp[name], name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        done = True
    finally:
        if not done:
            for name in tmp.values():
                try:
                    os.unlink(name, dir_fd=dirfd)
                except OSError:
                    pass
        os.close(dirfd)
        if not done and made_dir:
            try:
                os.rmdir(image_path)
            except OSError:
                pass
    if not leave_running:
        _wait_stopped(g, st)


def _image_dir(path: str) -> int:
    """The image directory (made if missing), open for the *at() calls below."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise path_error("mkdir", e, path) from None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise path_error("open", e, path) from None


def _sweep(dirfd: int) -> None:
    """Remove what a killed checkpoint left: its temporary files, named by its pid."""
    import re

    names_alt = "|".join(re.escape(n) for n in (SNAPSHOT_FILE, CONFIG_FILE, META_FILE,
                                                INVENTORY_FILE))
    pattern = re.compile(rf"\.(?:{names_alt})\.(\d+)\.tmp")
    try:
        entries = os.listdir(dirfd)
    except OSError:
        return
    for name in entries:
        m = pattern.fullmatch(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                os.unlink(name, dir_fd=dirfd)
            except OSError:
                pass


def _write(dirfd: int, name: str, data: bytes) -> None:
    """A new file `name` in the image dir, synced; removed again if writing fails."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dirfd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(name, dir_fd=dirfd)
        except OSError:
            pass
        raise


def _config_bytes(st: Status) -> bytes:
    """The config the container was created from (the bundle's, before krun rewrote
    it), so that a restore of this image without a bundle of its own has one."""
    bundle = st.extra.get("bundle") or st.bundle
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return f.read(16 << 20)
    except OSError:
        return b""


def _meta(st: Status, leave_running: bool) -> dict[str, Any]:
    import time

    from krun import __version__

    record = st.extra
    network = record.get("network") if isinstance(record.get("network"), dict) else {}
    return {"format": FORMAT, "krun": __version__, "id": st.id,
            "km_sha256": record.get("km_sha256"), "payload": _payload(record),
            "left_running": leave_running,
            "network": {k: network[k] for k in ("mode", "ip") if k in network},
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _payload(record: dict[str, Any]) -> Any:
    annotations = record.get("annotations") if isinstance(record.get("annotations"), dict) \
        else {}
    try:
        return json.loads(annotations.get("app.kontain.payload") or "null")
    except ValueError:
        return None


def _request(st: Status, out: int, live: bool) -> int:
    """Ask the container's KM for a snapshot into fd `out`; returns its size."""
    import socket
    import struct

    what = f'checkpoint of container "{st.id}"'
    from krun.kontain.payload import open_in_root

    try:
        path_fd = open_in_root(f"/proc/{st.pid}/root", MGT_IN_CONTAINER,
                               os.O_PATH | os.O_NOFOLLOW)
    except OSError as e:
        raise KrunError(f"{what}: KM's management socket {MGT_IN_CONTAINER}: "
                        f"{strerror(e.errno or 0)} (a container created by an older krun, "
                        "or a /dev KM could not write to, has none)") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(path_fd).st_mode):
            raise KrunError(f"{what}: {MGT_IN_CONTAINER} is not a socket")
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.connect(f"/proc/self/fd/{path_fd}")
        except OSError as e:
            raise KrunError(f"{what}: connect to KM's management socket: "
                            f"{strerror(e.errno or 0)}") from None
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                         socket.SO_PEERCRED, 12))
        _check_peer(st, pid, what)
        request = f"snapshot live={int(live)}\n".encode()
        try:
            socket.send_fds(sock, [request], [out])
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < REPLY_MAX:
                chunk = sock.recv(REPLY_MAX)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            raise KrunError(f"{what}: KM did not answer within {REQUEST_TIMEOUT:.0f} s") \
                from None
        except OSError as e:
            raise KrunError(f"{what}: KM's management socket: {strerror(e.errno or 0)}") \
                from None
    finally:
        sock.close()
        os.close(path_fd)
    text = reply.decode(errors="replace").strip()
    verb, _, rest = text.partition(" ")
    if verb == "ok" and rest.isdigit():
        return int(rest)
    if verb == "error" and rest:
        raise KrunError(f"{what}: KM: {rest.splitlines()[0]}")
    raise KrunError(f"{what}: KM gave no answer" if not text else
                    f"{what}: unexpected answer from KM: {text[:200]!r}")


def _check_peer(st: Status, pid: int, what: str) -> None:
    """The socket's owner must be the pinned KM, in this container's pid namespace:
    anything else at that path is not KM's and gets nothing from krun."""
    pinned = st.extra.get("km_file")
    try:
        exe = os.stat(f"/proc/{pid}/exe")
        same_ns = os.stat(f"/proc/{pid}/ns/pid").st_ino == \
            os.stat(f"/proc/{st.pid}/ns/pid").st_ino
    except OSError:
        raise KrunError(f"{what}: the management socket's owner is gone") from None
    if not (isinstance(pinned, list) and [exe.st_dev, exe.st_ino] == pinned and same_ns):
        raise KrunError(f"{what}: {MGT_IN_CONTAINER} is not served by the container's KM: "
                        "refused")


def _wait_stopped(g: SimpleNamespace, st: Status) -> None:
    """KM exits after a snapshot that does not leave it running; its init follows. A
    container still running after STOP_TIMEOUT is killed, as runc's checkpoint leaves
    none running."""
    import signal
    import time

    from krun.runtime.status import is_alive

    deadline = time.monotonic() + STOP_TIMEOUT
    while is_alive(st.pid, st.start_time):
        if time.monotonic() > deadline:
            from krun.runtime import container

            container.kill(g, st.id, signal.SIGKILL, all_processes=True)
            return
        time.sleep(0.005)


def restore(g: SimpleNamespace, container_id: str, image_path: str, bundle: str,
            detach: bool, pid_file: str | None, console_socket: str | None,
            no_pivot: bool) -> int:
    from krun.runtime import container

    image = os.path.abspath(image_path)
    meta = read_meta(image)
    snapshot = os.path.join(image, SNAPSHOT_FILE)
    check_snapshot(snapshot)
    network = meta.get("network") if isinstance(meta.get("network"), dict) else {}

    def attempt(ip: str | None) -> int:
        opts = container.CreateOptions(
            bundle=bundle, pid_file=pid_file, console_socket=console_socket,
            no_pivot=no_pivot, detach=detach, run=True,
            network=network.get("mode") if network.get("mode") in ("host", "bridge") else None,
            ip=ip)
        opts.restore_snapshot = snapshot  # type: ignore[attr-defined]
        return container.create(g, container_id, opts)

    ip = network.get("ip") if network.get("mode") == "bridge" else None
    if not isinstance(ip, str):
        return attempt(None)
    try:
        return attempt(ip)
    except KrunError as e:
        if "already in use" not in e.msg:
            raise
        # The address went to another container meanwhile: a new one (create undid all).
        return attempt(None)


def read_meta(image: str) -> dict[str, Any]:
    path = os.path.join(image, META_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise path_error("open", e, path) from None
    try:
        meta = json.loads(data)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise KrunError(f"{path}: not a krun checkpoint (format {FORMAT})")
    return meta


def check_snapshot(path: str) -> None:
    """A readable ELF core file: KM checks the rest (its version, the CPU, the notes)."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
    except OSError as e:
        raise path_error("open", e, path) from None
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[16:18] != b"\x04\x00":
        raise KrunError(f"{path}: not a KM snapshot (an ELF core file)")
