"""krun's own record of each container: `<root>/.krun/<id>.json`.

It marks which state entries are krun's (dockerd shares one --root between runtimes)
and keeps handler facts (Kontain's KM digest, device). It is written before libcrun
creates the state dir, under an exclusive lock, so two creates of one id cannot both
proceed and a foreground `run` is listed while it runs. libcrun skips dot entries.
"""

from __future__ import annotations

import fcntl
import os

from krun import fastjson as json
from krun.errors import KrunError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any


RECORDS = ".krun"


def record_path(root: str, container_id: str) -> str:
    return os.path.join(root, RECORDS, container_id + ".json")


class Claim:
    """An exclusively locked record for a container being created."""

    def __init__(self, root: str, container_id: str) -> None:
        self.path = record_path(root, container_id)
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise KrunError(f'container "{container_id}" already exists') from None
        self.state_dir = os.path.join(root, container_id)

    def write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self, keep: bool) -> None:
        if not keep:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)


def read_record(root: str, container_id: str) -> dict[str, Any] | None:
    try:
        with open(record_path(root, container_id), "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def is_claimed(root: str, container_id: str) -> bool:
    """True while some krun holds the create lock of this id."""
    try:
        fd = os.open(record_path(root, container_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_record(root: str, container_id: str) -> None:
    try:
        os.unlink(record_path(root, container_id))
    except FileNotFoundError:
        pass


def record_ids(root: str) -> list[str]:
    try:
        names = os.listdir(os.path.join(root, RECORDS))
    except FileNotFoundError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json"))
