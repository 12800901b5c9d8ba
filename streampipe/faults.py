"""Fault injection (``--inject stage=NAME,item=SEQ,kind=raise|exit|sleep|kill``).

Built into the runtime so that users can test their own pipelines' failure handling: the fault
fires in the named stage (and replica, if given) just before it handles item ``SEQ``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "Fault", "InjectedFault", "check_faults", "parse_inject"]

FAULT_KINDS = ("raise", "exit", "sleep", "kill")


class InjectedFault(RuntimeError):
    """The exception an injected ``kind=raise`` fault raises."""


@dataclass(frozen=True)
class Fault:
    """An injected fault: ``kind`` happens when ``stage`` (replica, if given) reaches ``item``."""

    stage: str
    item: int
    kind: str = "raise"
    replica: int | None = None

    def trigger(self, seq: int) -> None:
        """Make the fault happen if ``seq`` is its item."""
        if seq != self.item:
            return
        if self.kind == "raise":
            raise InjectedFault(f"injected fault (kind=raise) at item {seq}")
        if self.kind == "exit":
            sys.exit(3)
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "sleep":
            time.sleep(3600)


def parse_inject(text: str) -> Fault:
    """Parse ``stage=value,item=137,kind=raise[,replica=1]`` (the ``--inject`` syntax)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        if not eq:
            raise ValueError(f"--inject {text!r}: expected key=value pairs, got {part!r}")
        fields[k.strip()] = v.strip()
    unknown = set(fields) - {"stage", "item", "kind", "replica"}
    if unknown:
        raise ValueError(f"--inject {text!r}: unknown key {sorted(unknown)[0]!r}")
    if "stage" not in fields or "item" not in fields:
        raise ValueError(f"--inject {text!r}: needs stage=NAME and item=SEQ")
    kind = fields.get("kind", "raise")
    if kind not in FAULT_KINDS:
        raise ValueError(f"--inject {text!r}: kind must be one of {', '.join(FAULT_KINDS)}")
    try:
        item = int(fields["item"])
        replica = int(fields["replica"]) if "replica" in fields else None
    except ValueError:
        raise ValueError(f"--inject {text!r}: item and replica must be integers") from None
    if item < 0 or (replica is not None and replica < 0):
        raise ValueError(f"--inject {text!r}: item and replica must be >= 0")
    return Fault(fields["stage"], item, kind, replica)


def check_faults(faults: list[Fault], replicas: dict[str, int]) -> None:
    """Refuse a fault that could never fire: a stage the job does not have (``replicas``: stage
    name -> replica count), or a replica it does not run."""
    for f in faults:
        where = f"--inject stage={f.stage},item={f.item}"
        if f.stage not in replicas:
            raise ValueError(f"{where}: the job has no stage {f.stage!r} (stages: "
                             f"{', '.join(replicas)})")
        if f.replica is not None and f.replica >= replicas[f.stage]:
            raise ValueError(f"{where},replica={f.replica}: stage {f.stage!r} has "
                             f"{replicas[f.stage]} replica(s), numbered from 0")
