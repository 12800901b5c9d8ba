"""Where a rank's start-up time goes: wall-clock stamps from process start to the first item.

``stamp(name)`` records ``time.time()`` once per name; :func:`stamps` adds the process start
(from ``/proc``, to the clock tick) and is stored with each rank's record in the run file
(``startup``), so ``docs/scaling.md`` can split start-up into interpreter and imports, MPI
initialisation, job validation, node discovery and setup, and the first message.
"""

from __future__ import annotations

import os
import time

__all__ = ["stamp", "stamps", "process_start"]

_STAMPS: dict[str, float] = {}


def stamp(name: str) -> None:
    """Record that this process reached ``name`` now (the first time only)."""
    _STAMPS.setdefault(name, time.time())


def process_start() -> float | None:
    """Wall-clock time this process started (Linux ``/proc``), else None."""
    try:
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        with open(f"/proc/{os.getpid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def stamps() -> dict[str, float]:
    """Every stamp so far, with ``process`` (the process start) first when it is known."""
    start = process_start()
    return ({"process": start} if start is not None else {}) | dict(_STAMPS)
