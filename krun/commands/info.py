"""`krun state`, `krun list` and `krun ps`: read-only views of containers."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from krun import OCI_VERSION
from krun import fastjson as json
from krun.errors import KrunError
from krun.network.settings import ADDRESS_ANNOTATION
from krun.runtime.ids import validate_id
from krun.runtime.status import Status, list_ids, read_status

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from typing import Any


def state_json(st: Status) -> dict[str, Any]:
    return {
        "ociVersion": OCI_VERSION,
        "id": st.id,
        "pid": st.pid,
        "status": st.status,
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": st.owner,
        "annotations": st.annotations(),
    }


def _state(g: SimpleNamespace, o: SimpleNamespace) -> int:
    # Not through krun.runtime.container: engines poll `state`, so it imports the least.
    st = read_status(g.root, validate_id(o.container_id))
    sys.stdout.write(json.dumps(state_json(st), indent=2) + "\n")
    return 0


def _list(g: SimpleNamespace, o: SimpleNamespace) -> int:
    states = []
    for cid in list_ids(g.root):
        try:
            states.append(state_json(read_status(g.root, cid)))
        except KrunError:
            continue  # deleted while we listed
    if o.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif o.format == "json":
        sys.stdout.write(json.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        addresses = [s["annotations"].get(ADDRESS_ANNOTATION, "") for s in states]
        if any(addresses):
            # Only with krun networking in use, so the table is runc's otherwise.
            rows = [(*r, a) for r, a in zip(rows, ["ADDRESS", *addresses], strict=True)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
            sys.stdout.write("   ".join([*cells, r[-1]]) + "\n")
    return 0


def _proc_row(pid: int) -> tuple[str, ...]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ppid = stat[stat.rindex(b")") + 2:].split()[1].decode()
        uid = str(os.stat(f"/proc/{pid}").st_uid)
    except OSError:
        return (str(pid), "-", "-", "")
    return (str(pid), ppid, uid, cmd)


def _ps(g: SimpleNamespace, o: SimpleNamespace) -> int:
    from krun.runtime import container

    pids = container.pids(g, o.container_id)
    if o.format == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    rows = [("PID", "PPID", "UID", "CMD")] + [_proc_row(p) for p in pids]
    for r in rows:
        sys.stdout.write(f"{r[0]:<8} {r[1]:<8} {r[2]:<6} {r[3]}\n")
    return 0


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    return {"state": _state, "list": _list, "ps": _ps}[name](g, o)
