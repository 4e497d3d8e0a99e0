"""`krun state`, `krun list` and `krun ps`: read-only views of containers."""

from __future__ import annotations

import sys

from krun import OCI_VERSION
from krun import fastjson as json
from krun.errors import KrunError
from krun.network.settings import ADDRESS_ANNOTATION
from krun.runtime.ids import validate_id
from krun.runtime.status import Status, list_ids, read_status

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from types import SimpleNamespace
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


def _runc_list_json(states: list[dict[str, Any]]) -> str:
    """runc's `list --format json`: one line, compact, its field order, annotations
    between created and owner and left out when empty (tools compare it textually)."""
    rows = []
    for s in states:
        row = {k: s[k] for k in ("ociVersion", "id", "pid", "status", "bundle", "rootfs",
                                 "created")}
        if s["annotations"]:
            row["annotations"] = s["annotations"]
        row["owner"] = s["owner"]
        rows.append(row)
    return json.dumps(rows, go=True)


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
        sys.stdout.write(_runc_list_json(states) + "\n")
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


def _ps(g: SimpleNamespace, o: SimpleNamespace) -> int:
    """runc's ps: the host's `ps` (`-ef`, or the options given after the id), its header,
    then only the lines of the container's processes."""
    from krun.runtime import container

    pids = container.pids(g, o.container_id)
    if o.format == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    import subprocess

    argv = ["ps", *(o.ps_options or ["-ef"])]
    try:
        out = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise KrunError(f"exec: \"ps\": {e.strerror.lower()}") from None
    if out.returncode != 0:
        from krun.log import one_line

        raise KrunError(one_line(f"ps {' '.join(argv[1:])}: "
                                 f"{out.stderr.decode(errors='replace').strip()}"))
    lines = out.stdout.decode(errors="replace").splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise KrunError("couldn't find PID field in ps output")
    column = header.index("PID")
    wanted = {str(p) for p in pids}
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            sys.stdout.write(line + "\n")
    return 0


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    return {"state": _state, "list": _list, "ps": _ps}[name](g, o)
