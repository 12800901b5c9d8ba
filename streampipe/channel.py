"""Edges: credit-controlled output ports, input ports, and the ordered merge.

A record is ``(kind, key, value)``. ``key`` is a tuple: ``(seq,)`` for source item ``seq``,
``key + (i,)`` for the i-th output of a fan-out, ``(FINAL, stage, replica, i)`` for items emitted
by ``finish()``. Keys order the stream; TOMB (dropped item) and END (a fan-out's count) markers
let a merge of several upstream ranks know that nothing is missing, so it never waits for an
item that will not come and never needs to see every upstream's head.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .metrics import Level
from .transport import CREDIT, DATA, Transport

ITEM, TOMB, END, EOS = range(4)
FINAL = math.inf


class UnsendableItem(TypeError):
    """An item a stage produced cannot be pickled for the next stage (a lambda, an open file)."""

    def __init__(self, seq: Any, message: str) -> None:
        super().__init__(message)
        self.item_seq = seq


def _unsendable(records: list, exc: Exception) -> UnsendableItem:
    """Name the record of a batch that does not pickle (batching hides which item it was)."""
    import pickle

    for _kind, key, value in records:
        try:
            pickle.dumps(value, protocol=5)
        except Exception as err:  # noqa: BLE001 - any pickling failure is this item's
            seq = key[0] if key else None
            why = f"{type(err).__name__}: {err}"
            return UnsendableItem(seq, f"its output for item seq {seq} cannot be sent to the "
                                       f"next rank (items must pickle): {why}")
    return UnsendableItem(None, f"a batch of items cannot be sent: {type(exc).__name__}: {exc}")


class OutPort:
    """Sender side of one edge to the root ranks of the next stage (or, broadcast, to all)."""

    def __init__(self, transport: Transport, edge: int, dests: tuple[int, ...], capacity: int,
                 batch: int, level: Level, broadcast: bool = False) -> None:
        self.t = transport
        self.edge = edge
        self.dests = dests
        self.capacity = capacity
        self.batch = batch
        self.broadcast = broadcast
        self.credits = dict.fromkeys(dests, capacity)
        self.buf: dict[int, list] = {d: [] for d in dests}
        self.t_first = 0.0  # when the oldest unflushed record was put
        self.pending = 0
        self.closed: set[int] = set()
        self.level = level
        self._rr = 0
        transport.handlers[edge] = self._on_credit

    def _on_credit(self, src: int, kind: int, payload: Any) -> None:
        n, closed = payload
        self.credits[src] += n
        self.level.add(-n, time.perf_counter())
        if closed:
            self.closed.add(src)

    def has_credit(self) -> bool:
        c = self.credits
        if self.broadcast:
            return all(c.values())
        return any(c.values())

    def put(self, rec: tuple) -> None:
        """Queue one record (the caller checked :meth:`has_credit`)."""
        if self.broadcast:
            targets = self.dests
        else:
            # whichever replica has the most credit; rotate between equals
            n = len(self.dests)
            best, best_c = -1, 0
            for j in range(n):
                d = self.dests[(self._rr + j) % n]
                if self.credits[d] > best_c:
                    best, best_c = d, self.credits[d]
            self._rr += 1
            targets = (best,)
        for d in targets:
            self.credits[d] -= 1
            b = self.buf[d]
            if not self.pending:
                self.t_first = time.perf_counter()
            b.append(rec)
            self.pending += 1
            if len(b) >= self.batch:
                self._flush_one(d)
        self.level.add(len(targets), time.perf_counter())

    def _flush_one(self, d: int) -> None:
        b = self.buf[d]
        if b:
            self.buf[d] = []
            self.pending -= len(b)
            try:
                self.t.send_records(d, self.edge, b)
            except Exception as exc:  # noqa: BLE001 - pickling errors vary by object type
                raise _unsendable(b, exc) from exc

    def flush(self) -> None:
        if self.pending:
            for d in self.dests:
                self._flush_one(d)

    def put_eos(self) -> None:
        for d in self.dests:
            self.buf[d].append((EOS, (), None))
            self.pending += 1
        self.flush()

    @property
    def done(self) -> bool:
        return len(self.closed) == len(self.dests)


class InPort:
    """Receiver side of one edge: per-source queues, credit return, FIFO or ordered merge."""

    def __init__(self, transport: Transport, edge: int, sources: tuple[int, ...], capacity: int,
                 merge: str | None, start_seq: int,
                 on_arrival: Callable[[int, float], None]) -> None:
        self.t = transport
        self.edge = edge
        self.sources = sources
        self.queue: deque[tuple[int, float, tuple]] = deque()
        self.held = dict.fromkeys(sources, 0)  # records received from src and not yet consumed
        self.owed = dict.fromkeys(sources, 0)  # credits consumed and not yet returned
        self.eos: set[int] = set()
        self.acked: set[int] = set()
        self.credit_batch = max(1, capacity // 2)
        self.merger: Merger | HeadsMerger | None = None
        if merge == "cursor":
            self.merger = Merger(start_seq)
        elif merge == "heads":
            self.merger = HeadsMerger(sources, self.eos)
        self.on_arrival = on_arrival
        transport.handlers[edge] = self._on_data

    def _on_data(self, src: int, kind: int, records: list) -> None:
        assert kind == DATA
        now = time.perf_counter()
        n_items = 0
        for rec in records:
            if rec[0] == EOS:
                self.eos.add(src)
                continue
            self.held[src] += 1
            if rec[0] == ITEM:
                n_items += 1
            if self.merger is not None:
                self.merger.add(src, now, rec)
            else:
                self.queue.append((src, now, rec))
        if n_items:
            self.on_arrival(n_items, now)
        self._maybe_ack(src)

    def next(self) -> tuple[float, tuple] | None:
        """The next record in stream order, or None when none is available yet."""
        if self.merger is not None:
            got = self.merger.next()
            if got is None:
                return None
            src, t, rec = got
        else:
            if not self.queue:
                return None
            src, t, rec = self.queue.popleft()
        self._consumed(src)
        return t, rec

    def _consumed(self, src: int) -> None:
        self.held[src] -= 1
        self.owed[src] += 1
        if src in self.eos:
            self._maybe_ack(src)
        elif self.owed[src] >= self.credit_batch:
            self._return(src)

    def _return(self, src: int, closed: bool = False) -> None:
        n = self.owed[src]
        self.owed[src] = 0
        self.t.send(src, CREDIT, self.edge, (n, closed))

    def _maybe_ack(self, src: int) -> None:
        # the closing ack is the last message to src on this edge: only when all its records
        # were consumed, so no credit can follow it
        if src in self.eos and not self.held[src] and src not in self.acked:
            self.acked.add(src)
            self._return(src, closed=True)

    def flush_credits(self) -> None:
        """Return every owed credit now (before this rank waits, to avoid a credit deadlock)."""
        for src, n in self.owed.items():
            if n and src not in self.acked:
                self._return(src)

    @property
    def exhausted(self) -> bool:
        return len(self.acked) == len(self.sources)


class Merger:
    """Ordered merge of several upstream streams by key, driven by a cursor over the key tree.

    The cursor expects key ``prefix + (index,)`` next. It is delivered as soon as it is here
    (item or tombstone); if any descendant or its END marker is here, the cursor descends;
    a level ends when its END count is reached. FINAL items follow once the regular stream ends.
    """

    def __init__(self, start_seq: int) -> None:
        self.stack: list[list] = [[(), start_seq, None]]
        self.items: dict[tuple, tuple[int, float, tuple]] = {}
        self.ends: dict[tuple, tuple[int, float, tuple]] = {}
        self.expanded: set[tuple] = set()
        self.finals: deque[tuple[int, float, tuple]] = deque()

    def add(self, src: int, t: float, rec: tuple) -> None:
        kind, key, _ = rec
        if key and key[0] == FINAL:
            self.finals.append((src, t, rec))
        elif kind == END:
            self.ends[key] = (src, t, rec)
        else:
            self.items[key] = (src, t, rec)
            for i in range(1, len(key)):
                self.expanded.add(key[:i])

    def next(self) -> tuple[int, float, tuple] | None:
        stack = self.stack
        while stack:
            top = stack[-1]
            prefix, idx, end = top
            if end is None and prefix in self.ends:
                end = top[2] = self.ends.pop(prefix)
            if end is not None and idx >= end[2][2]:
                stack.pop()
                if stack:
                    stack[-1][1] += 1
                return end  # forward the END marker after its children
            e = prefix + (idx,)
            hit = self.items.pop(e, None)
            if hit is not None:
                top[1] = idx + 1
                return hit
            if e in self.ends or e in self.expanded:
                self.expanded.discard(e)
                stack.append([e, 0, None])
                continue
            return None
        if self.finals:
            return self.finals.popleft()
        return None


def position(rec: tuple) -> tuple:
    """Where a record sits in its sender's stream: END(k, n) right after k's n children."""
    if rec[0] == END:
        return rec[1] + (rec[2],)
    return rec[1]


class HeadsMerger:
    """Ordered merge for a replica that sees only part of the stream (a replicated stage after a
    replicated stage): each upstream stream is sorted by position, so take the smallest head once
    every upstream rank has a head or has ended. No markers are needed for this."""

    def __init__(self, sources: tuple[int, ...], eos: set[int]) -> None:
        self.queues: dict[int, deque[tuple[int, float, tuple]]] = {s: deque() for s in sources}
        self.eos = eos

    def add(self, src: int, t: float, rec: tuple) -> None:
        self.queues[src].append((src, t, rec))

    def next(self) -> tuple[int, float, tuple] | None:
        best = None
        best_pos = None
        for src, q in self.queues.items():
            if not q:
                if src in self.eos:
                    continue
                return None  # this upstream may still send something smaller
            pos = position(q[0][2])
            if best is None or pos < best_pos:
                best, best_pos = q, pos
        return best.popleft() if best is not None else None


class FeedbackIn:
    """Receiver of a feedback edge: values keyed by seq, taken eagerly so it can never block.

    Credits go back on arrival, so a feedback producer never waits on this rank; memory is
    bounded by the consumer releasing values (``ctx.release_feedback``) and checked by ``limit``.
    """

    def __init__(self, transport: Transport, edge: int, sources: tuple[int, ...], limit: int,
                 stage: str) -> None:
        self.t = transport
        self.edge = edge
        self.sources = sources
        self.values: dict[int, Any] = {}
        self.watermark = -1  # every seq up to here was handled by the (single) producer
        self.eos: set[int] = set()
        self.limit = limit
        self.stage = stage
        transport.handlers[edge] = self._on_data

    def _on_data(self, src: int, kind: int, records: list) -> None:
        n = 0
        for rec in records:
            if rec[0] == EOS:
                self.eos.add(src)
                continue
            n += 1
            if rec[0] == ITEM:
                self.values[rec[1][0]] = rec[2]
            else:  # TOMB(w): the producer's watermark
                self.watermark = max(self.watermark, rec[1][0])
        if len(self.values) > self.limit:
            raise RuntimeError(
                f"stage {self.stage!r} holds {len(self.values)} feedback values (limit "
                f"{self.limit}): call ctx.release_feedback(seq) for values it no longer needs")
        self.t.send(src, CREDIT, self.edge, (n, src in self.eos))

    @property
    def exhausted(self) -> bool:
        return len(self.eos) == len(self.sources)
