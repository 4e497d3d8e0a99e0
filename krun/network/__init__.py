"""Networking for direct krun use: none, host, or a bridge with addresses and published
ports. Engines bring their own networking; this is for people running `krun run`.

Entered only for containers that ask for it (krun.runtime.container), so pyroute2
(~200 ms to import) is paid only by the hook that wires a bridged container.
"""
