"""Whether krun is registered with an engine, read-only: what `krun check` reports.

Registered means exactly what `krun install` would leave: the engine's own planner is
asked (nothing is written), and krun counts as registered when installing would change
nothing. When it would, the uninstall planner says whether some krun entry is there
already (another krun path, a partial or older entry) or none at all.
"""

from __future__ import annotations

from krun.engines import MARKER, Change, Context, EngineError, plan

# The engines a node runs containers with; Kubernetes' RuntimeClass is cluster state.
NODE_ENGINES = ("docker", "podman", "containerd", "crio")

REGISTERED, DIFFERENT, ABSENT, UNREADABLE = "registered", "different", "absent", "unreadable"


class Registration:
    """One engine's answer: `state` is one of the constants above; `files` are the
    files the engine's planner looked at; `error` says why a file could not be read."""

    __slots__ = ("engine", "error", "files", "state")

    def __init__(self, engine: str, state: str, files: list[str],
                 error: str | None = None) -> None:
        self.engine, self.state, self.files, self.error = engine, state, files, error

    @property
    def registered(self) -> bool:
        return self.state == REGISTERED


def _describe(e: OSError) -> str:
    text = e.strerror or "input/output error"
    return f"{e.filename}: {text.lower()}" if e.filename else text.lower()


def _removes_entry(change: Change) -> bool:
    """Whether an uninstall change takes a krun entry away. Deleting a file that holds no
    entry (an empty containers.conf, the skeleton install writes for containerd) does
    not count."""
    if not change.changed:
        return False
    if change.new is None:
        return "krun" in (change.old or "").replace(MARKER, "")
    return True


def registration(engine: str, ctx: Context) -> Registration:
    """Is krun (`ctx.krun_path`, with `ctx.state_root`) configured for `engine`?"""
    try:
        wanted = plan(engine, ctx, install=True)
    except EngineError as e:
        return Registration(engine, UNREADABLE, [], str(e))
    except OSError as e:
        return Registration(engine, UNREADABLE, [], _describe(e))
    except UnicodeDecodeError as e:
        return Registration(engine, UNREADABLE, [], f"not UTF-8 text ({e.reason})")
    files = [c.path for c in wanted.changes]
    if not any(c.changed for c in wanted.changes):
        return Registration(engine, REGISTERED, files)
    try:
        removal = plan(engine, ctx, install=False)
    except EngineError:
        # docker refuses to plan an uninstall while krun is its default runtime: krun is
        # there, just not as this `krun install` would write it.
        return Registration(engine, DIFFERENT, files)
    except (OSError, UnicodeDecodeError):
        return Registration(engine, ABSENT, files)
    present = any(_removes_entry(c) for c in removal.changes)
    return Registration(engine, DIFFERENT if present else ABSENT, files)
