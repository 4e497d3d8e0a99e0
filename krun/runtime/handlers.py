"""The seam for everything that changes how a container is made: today Kontain (the
payload runs under KM) and krun's networking (an address on krun0).

A handler answers crun's custom-handler questions: does it apply to this container, how
does it rewrite the config at create, how does it change a process at exec, what does
it add to `features` — plus one more that makes crashes harmless: how to undo each thing
it made. At create a handler writes every host resource into the container's journal
(krun.runtime.records) before it makes it; failed creates, `delete` and `delete --force`
hand each journaled step back to its handler's `undo`, in reverse order. The core never
names a handler's internals, and a container no handler claims never imports one
(Kontain's jsonschema and networking's pyroute2 stay unloaded).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs ~10 ms to import

if TYPE_CHECKING:
    from types import SimpleNamespace
    from typing import Any, Protocol

    from krun.runtime.bundle import Bundle
    from krun.runtime.records import Journal
    from krun.runtime.status import Status
else:
    Protocol = object


class CreatePlan:
    """What a create hands its handlers: the bundle whose config they may rewrite, the
    journal to write down what they make, the create flags, and what libcrun must
    execute (libcrun patch 0004): `exec_fd`, a file a handler verified, run instead of
    resolving args[0]; or `exec_pin`, the (device, inode) args[0] must resolve to, on a
    read-only mount."""

    def __init__(self, g: SimpleNamespace, bundle: Bundle, container_id: str,
                 journal: Journal, opts: Any) -> None:
        self.g, self.bundle, self.id, self.journal, self.opts = (g, bundle, container_id,
                                                                 journal, opts)
        self.exec_fd: int | None = None
        self.exec_pin: tuple[int, int] | None = None


class ExecPlan:
    """What an exec hands its handlers: the container's id, status and record, the
    process (rewritable), the root of the container's own view of its filesystem
    (`/proc/<init>/root`, with its mounts), and `exec_fd` or `exec_pin` (CreatePlan)."""

    def __init__(self, g: SimpleNamespace, st: Status, process: dict[str, Any],
                 view: str) -> None:
        self.g, self.id, self.status, self.record = g, st.id, st.status, st.extra
        self.process, self.view = process, view
        self.exec_fd: int | None = None
        self.exec_pin: tuple[int, int] | None = None
        # Printed when a foreground exec fails ("{status}" is filled in).
        self.failure_note: str | None = None


class Handler(Protocol):
    name: str

    def prepare_create(self, plan: CreatePlan) -> None:
        """Rewrite plan.bundle.config for libcrun; journal each host resource first."""

    def prepare_exec(self, plan: ExecPlan) -> None:
        """Rewrite an exec process of a container this handler took part in creating."""

    def undo(self, root: str, container_id: str, step: dict[str, Any]) -> None:
        """Remove what `step` made; must succeed whether or not it was made, or twice."""


def handlers_for_create(g: SimpleNamespace, bundle: Bundle, opts: Any) -> list[Handler]:
    """The handlers that apply to this container, in the order they rewrite it."""
    from krun import hostconfig
    from krun.kontain.triggers import kontain_requested
    from krun.network.settings import network_requested

    hostconfig.use_cache(g.root)

    found: list[Handler] = []
    if getattr(opts, "km_bundle", False):
        # `krun km`'s throwaway bundle: journaled first, so the undo removes it last.
        from krun.toolkit.kmbundle import KmBundleHandler

        found.append(KmBundleHandler(g))
    # A restore resumes a KM snapshot: Kontain whatever the bundle's config says.
    if getattr(opts, "restore_snapshot", None) or \
            kontain_requested(g, bundle.config, bundle.rootfs):
        from krun.kontain.handler import KontainHandler

        found.append(KontainHandler(g))
    if network_requested(bundle.config, opts):
        from krun.network.handler import NetworkHandler

        found.append(NetworkHandler(g))
    return found


def handler_by_name(g: SimpleNamespace, name: str | None) -> Handler | None:
    from krun import hostconfig

    hostconfig.use_cache(g.root)  # as handlers_for_create: the handlers read krun.toml
    if name == "kontain":
        from krun.kontain.handler import KontainHandler

        return KontainHandler(g)
    if name == "network":
        from krun.network.handler import NetworkHandler

        return NetworkHandler(g)
    if name == "km":
        from krun.toolkit.kmbundle import KmBundleHandler

        return KmBundleHandler(g)
    return None


def features() -> dict[str, Any]:
    """Annotations the handlers add to `krun features`."""
    from krun.kontain.triggers import FEATURE_ANNOTATIONS

    return dict(FEATURE_ANNOTATIONS)
