"""krun's own record of each container: `<root>/.krun/<id>.json`, a journal.

The record marks which state entries are krun's (dockerd shares one --root between
runtimes), keeps facts about the container (its bundle, the extensions that rewrote its
config, Kontain's KM digest, its address) and lists every thing create made on the host,
each written down BEFORE it is made. A failed create, `delete` and `delete --force` all
undo exactly that list, so a krun killed at any point leaves nothing that the next
`delete --force` cannot find.

The file is JSON lines, only ever appended to: `{"facts": {...}}` lines merge into the
record; `{"step": KIND, "by": OWNER, ...}` lines are things made, in order; a line cut
short by a crash is ignored. Creating the file (O_EXCL) claims the id, so two creates of
one id cannot both proceed. A create holds a POSIX lock on the record's byte 0 for as
long as it runs, and a createRuntime hook it runs (krun's network hook) one on byte 1,
so `delete` waits for both, and leases know a live create from a dead one. POSIX locks,
unlike flock, are not inherited across fork (the container init libcrun forks from krun
does not hold them once krun is gone), but a process loses them when it closes ANY fd
of the file: a lock holder reads the record only through its own descriptor. Ids never
start with `.` (krun.runtime.ids), so no id can name this directory.
"""

from __future__ import annotations

import errno
import fcntl
import os

from krun import fastjson as json
from krun.errors import KrunError, path_error, strerror

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any


RECORDS = ".krun"
CREATE_LOCK = (1, 0)  # (length, start) of the byte a create locks
HOOK_LOCK = (1, 1)    # and of the one its createRuntime hook locks
MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; never read without bound


def record_path(root: str, container_id: str) -> str:
    return os.path.join(root, RECORDS, container_id + ".json")


def records_dir(root: str) -> str:
    """`<root>/.krun`, created root-only if missing."""
    path = os.path.join(root, RECORDS)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise path_error("mkdir", e, path) from None
    return path


class Journal:
    """The record of a container being created, exclusively locked while it lives."""

    def __init__(self, root: str, container_id: str, fd: int) -> None:
        self.root, self.id, self.fd = root, container_id, fd
        self.path = record_path(root, container_id)
        self.size = 0

    @classmethod
    def claim(cls, root: str, container_id: str) -> Journal:
        """A new record for an id nobody uses; "already exists" otherwise, touching
        nothing that was there before."""
        records_dir(root)
        path = record_path(root, container_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            # A container, a create in progress, or what a crash left (delete --force
            # removes that): in every case the id is taken.
            raise KrunError(f'container "{container_id}" already exists') from None
        except OSError as e:
            raise path_error("open", e, path) from None
        journal = cls(root, container_id, fd)
        fcntl.lockf(fd, fcntl.LOCK_EX, *CREATE_LOCK)  # cannot block: the file is ours
        if os.path.lexists(os.path.join(root, container_id)):
            # Another runtime's container in a shared root, or state a crash left.
            journal.release(keep=False)
            raise KrunError(f'container "{container_id}" already exists')
        return journal

    def _append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry) + "\n").encode()
        try:
            written = os.write(self.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            # The step is not taken: cut the partial line so the record stays readable.
            try:
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            except OSError:
                pass
            raise KrunError(f"writing {self.path}: {strerror(e.errno or errno.EIO)}") from None
        self.size += len(data)

    def facts(self, **facts: Any) -> None:
        self._append({"facts": facts})

    def step(self, kind: str, by: str, **data: Any) -> dict[str, Any]:
        """Write down that `by` is about to make `kind`; returns the step as recorded."""
        entry = {"step": kind, "by": by, **data}
        from krun import log

        if log.debugging():  # not serialised twice on every create without --debug
            log.debug(f"journal: {by} makes {kind} {json.dumps(data) if data else ''}")
        self._append(entry)
        return entry

    def cancel(self, step: dict[str, Any]) -> None:
        """The step turned out not to be ours (e.g. libcrun found the id taken)."""
        self._append({"cancel": step["step"], "by": step["by"]})

    def read(self) -> dict[str, Any]:
        return parse(os.pread(self.fd, MAX_RECORD_BYTES, 0))

    def release(self, keep: bool) -> None:
        if not keep:
            remove_record(self.root, self.id)
        os.close(self.fd)


def parse(data: bytes) -> dict[str, Any]:
    """The record as one dict: merged facts plus `steps`, in the order they were made."""
    record: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue  # cut short by a crash: that step was never taken
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("facts"), dict):
            for key, value in entry["facts"].items():
                # Tables (annotations) gather what each handler adds.
                if isinstance(value, dict) and isinstance(record.get(key), dict):
                    record[key] = {**record[key], **value}
                else:
                    record[key] = value
        elif isinstance(entry.get("step"), str) and isinstance(entry.get("by"), str):
            steps.append(entry)
        elif isinstance(entry.get("cancel"), str):
            for i in range(len(steps) - 1, -1, -1):
                if (steps[i]["step"], steps[i]["by"]) == (entry["cancel"], entry.get("by")):
                    del steps[i]
                    break
        elif entry.get("runtime") == "krun":
            steps += _legacy_steps(entry)
            record.update(entry)
    record["steps"] = steps
    return record


def _legacy_steps(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A record written by krun before the journal (one JSON object) for a container
    still running across an upgrade: its handler and what its networking made."""
    if isinstance(entry.get("handler"), str):
        entry["handlers"] = [entry["handler"]]
    net = entry.get("network")
    if not isinstance(net, dict) or net.get("mode") != "bridge":
        return []
    entry.setdefault("handlers", []).append("network")
    steps = [{"step": "lease", "by": "network"}]
    if net.get("publish"):
        steps.append({"step": "nat", "by": "network", "ip": net.get("ip"),
                      "publish": net["publish"]})
    return [*steps, {"step": "veth", "by": "network"}]


def read_record(root: str, container_id: str) -> dict[str, Any] | None:
    """The record, or None when there is none."""
    try:
        fd = os.open(record_path(root, container_id), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return parse(os.read(fd, MAX_RECORD_BYTES))
    except OSError:
        return {"steps": []}
    finally:
        os.close(fd)


def _open_for_lock(root: str, container_id: str) -> int:
    return os.open(record_path(root, container_id),
                   os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)


def _try_lock(fd: int, length: int, start: int) -> bool:
    """Whether nobody else holds the range (taken and given back at once)."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
    return True


def wait_for_create(root: str, container_id: str, timeout: float = 10.0) -> None:
    """Return once no krun is creating this id, and no hook of that create is still
    running (delete must not race them)."""
    try:
        fd = _open_for_lock(root, container_id)
    except OSError:
        return  # no record: nothing is being created under this id
    try:
        import time

        deadline = time.monotonic() + timeout
        while not _try_lock(fd, 2, 0):
            if time.monotonic() > deadline:
                raise KrunError(f'container "{container_id}" is being created by another '
                                "krun: try again when it has finished")
            time.sleep(0.02)
    finally:
        os.close(fd)


def is_claimed(root: str, container_id: str) -> bool:
    """True while some krun holds the create lock of this id."""
    try:
        fd = _open_for_lock(root, container_id)
    except OSError:
        return False
    try:
        return not _try_lock(fd, *CREATE_LOCK)
    finally:
        os.close(fd)


def hook_record(root: str, container_id: str) -> dict[str, Any]:
    """For a createRuntime hook of a create in progress: the record, read under the
    hook's lock, which the hook keeps until it exits. Refused when the create that ran
    the hook is gone (killed): its delete --force may already have run, and whatever the
    hook made now would be left behind."""
    try:
        fd = _open_for_lock(root, container_id)
    except OSError:
        raise KrunError(f'container "{container_id}" is not being created') from None
    fcntl.lockf(fd, fcntl.LOCK_EX, *HOOK_LOCK)
    if _try_lock(fd, *CREATE_LOCK):
        raise KrunError(f'the create of container "{container_id}" was abandoned')
    return parse(os.pread(fd, MAX_RECORD_BYTES, 0))  # fd stays open: it holds the lock


def remove_record(root: str, container_id: str) -> None:
    try:
        os.unlink(record_path(root, container_id))
    except FileNotFoundError:
        pass


def record_ids(root: str) -> list[str]:
    path = os.path.join(root, RECORDS)
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:  # runc too: a root it may not read is an error, not "none"
        raise path_error("open", e, path) from None
    return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))
