"""Reading a container's state without loading libcrun.

`state` and `list` are polled by engines (CRI-O polls `state`), so they avoid the
libcrun module and its start-up cost. This follows libcrun 1.8.1's own rules
(libcrun_get_container_state_string) over the `status` file libcrun writes:
the init is alive if kill(pid, 0) works and its start time still matches; it is
`created` while the exec.fifo exists; `paused` when its cgroup is frozen.
"""

from __future__ import annotations

import errno
import os

from krun import fastjson as json
from krun.errors import ContainerNotFound, KrunError, path_error
from krun.runtime.records import read_record, record_ids

TYPE_CHECKING = False  # typing itself costs ~10 ms to import


if TYPE_CHECKING:
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"


class Status:
    """One container's state; `status` is created | running | paused | stopped and
    `extra` is krun's own record of it (krun.runtime.records)."""

    def __init__(self, id: str, state_dir: str, pid: int, start_time: int, bundle: str,
                 rootfs: str, cgroup_path: str, created: str, owner: str, status: str,
                 extra: dict[str, Any]) -> None:
        self.id, self.state_dir, self.pid, self.start_time = id, state_dir, pid, start_time
        self.bundle, self.rootfs, self.cgroup_path = bundle, rootfs, cgroup_path
        self.created, self.owner, self.status, self.extra = created, owner, status, extra

    def annotations(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.state_dir, "config.json"), "rb") as f:
                config = json.loads(f.read())
        except (OSError, ValueError):
            config = {}
        annotations = dict(config.get("annotations") or {})
        annotations.update(self.extra.get("annotations", {}))
        return annotations


def state_dir(root: str, container_id: str) -> str:
    return os.path.join(root, container_id)


def _proc_start_time(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


def is_alive(pid: int, start_time: int) -> bool:
    """libcrun's test: the pid exists, is not a zombie, and started when the init did."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not start_time:
        return True
    info = _proc_start_time(pid)
    return info is not None and info[0] == start_time and info[1] not in ("Z", "X")


def _frozen(cgroup_path: str) -> bool | None:
    """True/False for frozen/thawed; None when the cgroup is gone."""
    rel = cgroup_path.lstrip("/")
    for path, frozen_value in ((f"{CGROUP_ROOT}/freezer/{rel}/freezer.state", "FROZEN"),
                               (f"{CGROUP_ROOT}/{rel}/cgroup.freeze", "1"),
                               (f"{CGROUP_ROOT}/unified/{rel}/cgroup.freeze", "1")):
        try:
            with open(path) as f:
                return f.read().strip() == frozen_value
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
    return None


def read_status(root: str, container_id: str) -> Status:
    sdir = state_dir(root, container_id)
    try:
        with open(os.path.join(sdir, "status"), "rb") as f:
            raw = json.loads(f.read())
    except FileNotFoundError:
        raise ContainerNotFound(container_id) from None
    except NotADirectoryError:
        raise ContainerNotFound(container_id) from None
    except OSError as e:
        raise path_error("open", e, os.path.join(sdir, "status")) from None
    except ValueError as e:
        raise KrunError(f"container {container_id!r}: corrupt state file: {e}") from None
    extra = read_record(root, container_id) or {}
    pid = int(raw.get("pid", 0))
    start_time = int(raw.get("process-start-time", 0))
    cgroup_path = raw.get("cgroup-path", "")
    if not is_alive(pid, start_time):
        status = "stopped"
    elif os.path.exists(os.path.join(sdir, "exec.fifo")):
        status = "created"
    else:
        frozen = _frozen(cgroup_path) if cgroup_path else False
        status = "stopped" if frozen is None else ("paused" if frozen else "running")
    bundle = raw.get("bundle", "")
    rootfs = raw.get("rootfs", "")
    if rootfs and not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    return Status(id=container_id, state_dir=sdir, pid=pid if status != "stopped" else 0,
                  start_time=start_time, bundle=bundle, rootfs=rootfs, cgroup_path=cgroup_path,
                  created=raw.get("created", ""), owner=raw.get("owner", ""), status=status,
                  extra=extra)


def list_ids(root: str) -> list[str]:
    """Ids of the containers krun owns under root; others' entries (runc's, crun's) skipped."""
    return [i for i in record_ids(root) if os.path.isfile(os.path.join(root, i, "status"))]


MAX_REGEX = 4096


def ids_matching(root: str, pattern: str) -> list[str]:
    """crun's --regex: every id under root the pattern matches anywhere (crun uses
    regexec, which is unanchored: write ^...$ for whole ids)."""
    import re

    if len(pattern) > MAX_REGEX:
        raise KrunError(f"invalid regular expression: longer than {MAX_REGEX} characters")
    try:
        regex = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        raise KrunError(f"invalid regular expression {pattern}") from None
    return [i for i in record_ids(root) if regex.search(i)]
