"""Per-rank recording: a four-way time split, per-item stamps and queue occupancy integrals.

Time is split by a state machine: the runtime calls :meth:`Recorder.enter` at each transition and
the time since the previous transition is charged to the previous state, so the parts always add
up to the wall time. Occupancy (items held inside the stage, records in flight on each outgoing
edge) is integrated exactly at every change, never sampled, so Little's law can be audited.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

STATES = ("busy", "starved", "blocked", "transfer", "io", "other")
BUSY, STARVED, BLOCKED, TRANSFER, IO, OTHER = range(len(STATES))

EVENT_FIELDS = ("seq", "t_recv", "t_start", "t_end", "t_sent")


class Level:
    """A counter whose time integral, maximum and change count are kept exactly."""

    __slots__ = ("value", "area", "peak", "t_last")

    def __init__(self, now: float) -> None:
        self.value = 0
        self.area = 0.0
        self.peak = 0
        self.t_last = now

    def add(self, delta: int, now: float) -> None:
        self.area += self.value * (now - self.t_last)
        self.t_last = now
        self.value += delta
        if self.value > self.peak:
            self.peak = self.value

    def close(self, now: float) -> None:
        self.add(0, now)


class Recorder:
    """Everything one rank measures during a run. Cheap enough for ~100 us stages.

    ``STREAMPIPE_EVENT_LIMIT`` in the environment overrides ``event_limit`` (0 keeps no per-item
    events; the time split and the occupancy integrals are always kept).
    """

    def __init__(self, event_limit: int = 200_000) -> None:
        env = os.environ.get("STREAMPIPE_EVENT_LIMIT")
        if env:
            event_limit = int(env)
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.totals = [0.0] * len(STATES)
        self.state = OTHER
        self.t_state = self.t0
        self.held = Level(self.t0)  # items received and not yet sent on
        self.queued = Level(self.t0)  # items received and not yet started
        self.edges: dict[str, Level] = {}  # outgoing edge name -> records in flight
        self.event_limit = event_limit
        self.events: list[tuple] = []
        self.items_in = 0
        self.items_out = 0
        self.io_bytes = 0
        self.t_end: float | None = None
        self.extra: dict[str, Any] = {}

    # ----- time split ----------------------------------------------------------------------
    def enter(self, state: int) -> int:
        """Switch to ``state``; returns the previous state so callers can switch back."""
        now = time.perf_counter()
        prev = self.state
        self.totals[prev] += now - self.t_state
        self.t_state = now
        self.state = state
        return prev

    def add_transfer(self, dt: float) -> None:
        """Move ``dt`` seconds already charged to the current state over to transfer."""
        self.totals[self.state] -= dt
        self.totals[TRANSFER] += dt

    @contextmanager
    def io(self, nbytes: int = 0) -> Iterator[None]:
        prev = self.enter(IO)
        try:
            yield
        finally:
            self.io_bytes += int(nbytes)
            self.enter(prev)

    # ----- items and occupancy -------------------------------------------------------------
    def edge(self, name: str) -> Level:
        lvl = self.edges.get(name)
        if lvl is None:
            lvl = self.edges[name] = Level(time.perf_counter())
        return lvl

    def arrived(self, n: int, now: float) -> None:
        self.items_in += n
        self.held.add(n, now)
        self.queued.add(n, now)

    def item(self, seq: int, t_recv: float, t_start: float, t_end: float, t_sent: float) -> None:
        """One input item finished: it leaves the stage at ``t_sent``."""
        self.held.add(-1, t_sent)
        # added after the fact: the integral does not depend on the order of the updates
        self.queued.add(-1, t_start)
        if len(self.events) < self.event_limit:
            self.events.append((seq, t_recv, t_start, t_end, t_sent))

    def close(self) -> None:
        self.enter(OTHER)
        now = time.perf_counter()
        self.t_end = now
        self.held.close(now)
        self.queued.close(now)
        for lvl in self.edges.values():
            lvl.close(now)

    # ----- export --------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Plain data for the run file (times relative to this rank's start)."""
        if self.t_end is None:
            self.close()
        t0 = self.t0
        ev = np.array(self.events, dtype=np.float64).reshape(-1, len(EVENT_FIELDS))
        if len(ev):
            ev[:, 1:] -= t0
        return {
            "wall0": self.wall0,
            "elapsed": self.t_end - t0,
            "time": dict(zip(STATES, self.totals, strict=True)),
            "events": ev,
            "events_dropped": max(0, self.items_in - len(self.events)),
            "items_in": self.items_in,
            "items_out": self.items_out,
            "held_area": self.held.area,
            "held_peak": self.held.peak,
            "queued_area": self.queued.area,
            "edges": {k: {"area": v.area, "peak": v.peak} for k, v in self.edges.items()},
            "io_bytes": self.io_bytes,
            **self.extra,
        }
