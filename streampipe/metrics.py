"""Per-rank recording: a time split, per-item stamps and occupancy integrals, batch by batch.

Time is split by a state machine: the runtime calls :meth:`Recorder.enter` at each transition and
the time since the previous transition is charged to the previous state, so the parts always add
up to the wall time. Per-item stamps are written a batch at a time into preallocated NumPy rows
(:class:`EventLog`); an item's ``t_sent`` is filled in when the wire message carrying its last
output leaves. Occupancy (items held inside the stage, items queued, records in flight on each
outgoing edge) is integrated exactly from every change, never sampled, so Little's law can be
audited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

STATES = ("busy", "starved", "blocked", "transfer", "io", "other")
BUSY, STARVED, BLOCKED, TRANSFER, IO, OTHER = range(len(STATES))

EVENT_FIELDS = ("seq", "t_recv", "t_start", "t_end", "t_sent")
SEQ, T_RECV, T_START, T_END, T_SENT = range(len(EVENT_FIELDS))

Rows = range | Sequence[int]  # event rows (absolute numbers), as a range or a list


class Level:
    """A counter whose time integral, maximum and change count are kept exactly.

    The integral of a step function is ``sum(delta_i * (T - t_i))`` over its changes, whatever
    order they are applied in, so updates may come after the fact (:meth:`add_many`) and the
    area is exact at :meth:`close`. The peak is taken over the updates as they are applied.
    """

    __slots__ = ("value", "area", "peak", "t0", "_moment")

    def __init__(self, now: float) -> None:
        self.value = 0
        self.area = 0.0
        self.peak = 0
        self.t0 = now
        self._moment = 0.0  # sum of delta * (t - t0)

    def add(self, delta: int, now: float) -> None:
        self.value += delta
        self._moment += delta * (now - self.t0)
        if self.value > self.peak:
            self.peak = self.value

    def add_many(self, delta: int, time_sum: float) -> None:
        """``delta`` changes of +-1 whose times add up to ``time_sum`` (one sign only)."""
        self.value += delta
        moment = time_sum - abs(delta) * self.t0
        self._moment += moment if delta >= 0 else -moment
        if self.value > self.peak:
            self.peak = self.value

    def close(self, now: float) -> None:
        self.area = self.value * (now - self.t0) - self._moment


class EventLog:
    """Per-item rows ``EVENT_FIELDS``, written a batch at a time.

    Rows are numbered from 0 in the order items finish. A row is *open* until every output of
    its item has left (its ``t_sent`` may still change), then *settled*. Recent rows live in
    plain lists (appending a batch is a few list extends); settled rows move into NumPy chunks
    every ``CHUNK`` rows, the first ``limit`` of them kept for the run file, later ones only
    counted in the totals.
    """

    CHUNK = 4096

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cols: tuple[list[float], ...] = tuple([] for _ in EVENT_FIELDS)  # rows [base, n)
        self.base = 0  # row number of the first row in `cols`
        self.n = 0  # rows written
        self.settled = 0  # rows before this one are final
        self.kept: list[np.ndarray] = []
        self.n_kept = 0

    def add(self, seqs: Sequence[float], starts: Sequence[float], ends: Sequence[float],
            arrivals: Sequence[tuple[int, float]] | None) -> range:
        """Rows for finished items (``t_sent`` = ``t_end`` until :meth:`sent`); arrivals are
        ``(count, t_recv)`` segments in item order (None: each arrived as it started)."""
        seq, recv, start, end, sent = self.cols
        k = len(seqs)
        seq += seqs
        start += starts
        end += ends
        sent += ends
        if arrivals is None:
            recv += starts
        else:
            for c, t in arrivals:
                recv += [t] * c
        rows = range(self.n, self.n + k)
        self.n += k
        return rows

    def sent(self, rows: Sequence[Rows], t: float) -> None:
        """The items of these rows had outputs in a message that left at ``t``."""
        col, base = self.cols[T_SENT], self.base
        for r in rows:
            if isinstance(r, range):
                col[r.start - base:r.stop - base] = [t] * len(r)
            else:
                for x in r:
                    col[x - base] = t

    def settle(self, upto: int) -> tuple[int, float]:
        """Rows before ``upto`` are final; returns how many became final and their t_sent sum."""
        a, b = self.settled - self.base, upto - self.base
        if b <= a:
            return 0, 0.0
        total = sum(self.cols[T_SENT][a:b])
        self.settled = upto
        if b >= self.CHUNK:
            self._compact()
        return b - a, total

    def _compact(self) -> None:
        k = self.settled - self.base
        keep = min(k, max(0, self.limit - self.n_kept))
        if keep:
            self.kept.append(np.array([c[:keep] for c in self.cols], dtype=np.float64).T)
            self.n_kept += keep
        for c in self.cols:
            del c[:k]
        self.base = self.settled

    def events(self) -> np.ndarray:
        """The kept rows (settled ones only)."""
        self._compact()
        if not self.kept:
            return np.empty((0, len(EVENT_FIELDS)))
        return np.concatenate(self.kept)


class Recorder:
    """Everything one rank measures during a run. Cheap enough for ~1 us items (per batch).

    ``event_limit`` (setting ``event_limit``) caps the per-item events kept (0 keeps none; the
    time split and the occupancy integrals are always kept).
    """

    def __init__(self, event_limit: int = 200_000) -> None:
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.totals = [0.0] * len(STATES)
        self.state = OTHER
        self.t_state = self.t0
        self.held = Level(self.t0)  # items received and not yet sent on
        self.queued = Level(self.t0)  # items received and not yet started
        self.edges: dict[str, Level] = {}  # outgoing edge name -> records in flight
        self.log = EventLog(event_limit)
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

    def add_busy(self, dt: float) -> None:
        """Move ``dt`` seconds already charged to the current state over to busy."""
        self.totals[self.state] -= dt
        self.totals[BUSY] += dt

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
        """``n`` input items arrived at ``now``."""
        self.items_in += n
        self.held.add(n, now)
        self.queued.add(n, now)

    def items(self, seqs: Sequence[float], starts: Sequence[float], ends: Sequence[float],
              arrivals: Sequence[tuple[int, float]] | None) -> range:
        """Input items finished (one call per batch); returns their event rows. Without
        ``arrivals`` the items arrived as they started (a source's items)."""
        started = float(sum(starts))
        if arrivals is None:
            self.items_in += len(seqs)
            self.held.add_many(len(seqs), started)
            self.queued.add_many(len(seqs), started)
        self.queued.add_many(-len(seqs), started)
        return self.log.add(seqs, starts, ends, arrivals)

    def sent(self, rows: Sequence[Rows], t: float) -> None:
        """Outputs of the items of ``rows`` left in a wire message at ``t``."""
        self.log.sent(rows, t)

    def settle(self, upto: int | None = None) -> None:
        """Every output of the items before row ``upto`` (default: all rows) has left."""
        k, sent = self.log.settle(self.log.n if upto is None else upto)
        if k:
            self.held.add_many(-k, sent)

    def item(self, seq: float, t_recv: float, t_start: float, t_end: float,
             t_sent: float) -> None:
        """One input item finished and left at ``t_sent`` (the per-item form of
        :meth:`items`, :meth:`sent` and :meth:`settle`)."""
        rows = self.items((seq,), (t_start,), (t_end,), ((1, t_recv),))
        self.sent((rows,), t_sent)
        self.settle()

    def close(self) -> None:
        self.enter(OTHER)
        now = time.perf_counter()
        self.t_end = now
        self.settle()
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
        ev = self.log.events()
        if len(ev):
            ev[:, 1:] -= t0
        return {
            "wall0": self.wall0,
            "perf0": t0,  # perf_counter at the start: one clock for all ranks of a host
            "elapsed": self.t_end - t0,
            "time": dict(zip(STATES, self.totals, strict=True)),
            "events": ev,
            "events_dropped": max(0, self.log.n - len(ev)),
            "items_in": self.items_in,
            "items_out": self.items_out,
            "held_area": self.held.area,
            "held_peak": self.held.peak,
            "queued_area": self.queued.area,
            "edges": {k: {"area": v.area, "peak": v.peak} for k, v in self.edges.items()},
            "io_bytes": self.io_bytes,
            **self.extra,
        }
