"""Kontain mode: run a container's payload inside the Kontain VM, under the host's KM.

Entered only through `krun.runtime.handlers`; `triggers` is the only module a plain
container touches, and it imports nothing heavy.
"""
