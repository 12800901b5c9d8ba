"""The end of a run: every rank's measurements to rank 0, and rank 0's answer back to all.

Used by stream jobs (:mod:`streampipe.runtime`) and training (:mod:`streampipe.train`) alike. The
handlers are registered when the collector is made, before any user code runs, so a rank that
fails during setup still reports to rank 0. Every wait goes through the caller's ``wait`` (which
keeps its rank's communication going and charges the time to the right state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .edges import DONE, FAIL, RESULT
from .transport import CONTROL, AbortRequested, Backoff, Transport

__all__ = ["Collector", "Wait"]

Wait = Callable[[Callable[[], bool], str], None]  # wait(until, what)


class Collector:
    """Gathers one payload per rank on rank 0 and shares rank 0's answer with every rank."""

    def __init__(self, transport: Transport, size: int) -> None:
        self.t, self.size, self.rank = transport, size, transport.rank
        self.got: dict[int, Any] = {}
        self.answer: list[Any] = []
        keep = lambda src, kind, payload: self.got.__setitem__(src, payload)  # noqa: E731
        transport.register(DONE, keep)
        transport.register(FAIL, keep)
        transport.register(RESULT, lambda src, kind, payload: self.answer.append(payload))

    def gather(self, payload: Any, wait: Wait) -> list[Any] | None:
        """Rank 0: every rank's payload, in rank order. Others: send it to rank 0, get None."""
        if self.rank:
            self.t.send(0, CONTROL, DONE, payload)
            return None
        self.got[0] = payload
        wait(lambda: len(self.got) == self.size, "collecting results")
        return [self.got[r] for r in range(self.size)]

    def share(self, value: Any, wait: Wait) -> Any:
        """Rank 0 sends ``value`` to every rank; every rank returns it."""
        if self.rank == 0:
            for r in range(1, self.size):
                self.t.send(r, CONTROL, RESULT, value)
            return value
        wait(lambda: bool(self.answer), "waiting for the job's result")
        return self.answer.pop()

    def gather_failed(self, payload: Any, grace: float = 2.0) -> list[Any] | None:
        """After a failure: rank 0 waits up to ``grace`` seconds for what the others can still
        send (missing ranks are None); the others send theirs and get None. Never raises."""
        if self.rank:
            try:
                self.t.send(0, CONTROL, FAIL, payload)
            except Exception:  # noqa: BLE001 - we are already failing
                pass
            return None
        self.got[0] = payload
        deadline = time.perf_counter() + grace
        bo = Backoff()
        while len(self.got) < self.size and time.perf_counter() < deadline:
            try:
                if not self.t.poll():
                    bo.pause()
            except AbortRequested:
                pass
            except Exception:  # noqa: BLE001 - stray messages of the dead run
                pass
        return [self.got.get(r) for r in range(self.size)]
