"""Signal names as runc accepts them: `KILL`, `SIGKILL`, `kill`, `9`, `SIGRTMIN+3`."""

from __future__ import annotations

import signal

from krun.errors import KrunError


def parse_signal(text: str | None) -> int:
    if text is None or text == "":
        return int(signal.SIGTERM)
    if text.isascii() and text.isdigit():
        num = int(text) if len(text) <= 3 else -1  # int() of 5000 digits would raise
        if 0 <= num <= signal.SIGRTMAX:  # 0: only check the process exists
            return num
        raise KrunError(f"invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    for base, anchor in (("SIGRTMIN+", signal.SIGRTMIN), ("SIGRTMAX-", signal.SIGRTMAX)):
        digits = name[len(base):]
        if name.startswith(base) and digits.isascii() and digits.isdigit():
            offset = int(digits) if len(digits) <= 3 else 1 << 16
            num = anchor + offset if base.endswith("+") else anchor - offset
            if signal.SIGRTMIN <= num <= signal.SIGRTMAX:
                return int(num)
            raise KrunError(f"invalid signal: {text}")
    sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
    if isinstance(sig, signal.Signals):
        return int(sig)
    raise KrunError(f"unknown signal {text!r}")
