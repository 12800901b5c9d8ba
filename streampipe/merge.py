"""How an input port orders what its upstream ranks sent: FIFO, the cursor merge, the heads merge.

Each strategy gets whole :class:`~streampipe.records.Batch` es as they arrive (``add``) and hands
out *runs* (``take``): consecutive records of one arrived batch, ``(src, batch, lo, hi,
t_arrival)``, in the order the stage must see them. Taking runs instead of single records keeps
the per-record work of an ordered merge to a key comparison.

Every upstream rank sends its records sorted by :func:`~streampipe.records.position` (a replica
handles its input in order and derives its output keys from its input keys), so the next record
of the merged stream is always at the head of some upstream's queue; neither merge ever needs a
record that has not reached a head.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .records import END, Batch, position

__all__ = ["Run", "Fifo", "Merger", "HeadsMerger", "make_merge"]

Run = tuple[int, Batch, int, int, float]  # src, batch, lo, hi, arrival time


class _Entry:
    """An arrived batch and how far into it the merge has got."""

    __slots__ = ("src", "batch", "pos", "t")

    def __init__(self, src: int, batch: Batch, t: float) -> None:
        self.src, self.batch, self.pos, self.t = src, batch, 0, t

    def head(self) -> tuple[int, tuple, Any]:
        b, i = self.batch, self.pos
        return (0 if b.kinds is None else b.kinds[i]), b.keys[i], b.values[i]


class Fifo:
    """Arrival order (one upstream rank, or an unordered pipeline)."""

    def __init__(self) -> None:
        self.queue: deque[_Entry] = deque()

    def add(self, src: int, batch: Batch, t: float) -> None:
        self.queue.append(_Entry(src, batch, t))

    def progress(self, src: int, pos: tuple) -> None:
        """How far ``src`` has got (only the heads merge uses it)."""

    def take(self, limit: int) -> list[Run]:
        runs: list[Run] = []
        q = self.queue
        while q and limit > 0:
            e = q[0]
            n = len(e.batch.keys)
            hi = min(n, e.pos + limit)
            runs.append((e.src, e.batch, e.pos, hi, e.t))
            limit -= hi - e.pos
            e.pos = hi
            if hi == n:
                q.popleft()
        return runs


class _PerSource:
    """Queues of arrived batches per upstream rank."""

    def __init__(self, sources: tuple[int, ...]) -> None:
        self.queues: dict[int, deque[_Entry]] = {s: deque() for s in sources}

    def add(self, src: int, batch: Batch, t: float) -> None:
        if batch.keys:
            self.queues[src].append(_Entry(src, batch, t))

    def progress(self, src: int, pos: tuple) -> None:
        """How far ``src`` has got (only the heads merge uses it)."""

    def _advance(self, e: _Entry, hi: int, runs: list[Run]) -> None:
        runs.append((e.src, e.batch, e.pos, hi, e.t))
        e.pos = hi
        if hi == len(e.batch.keys):
            self.queues[e.src].popleft()


class Merger(_PerSource):
    """Ordered merge for a rank that sees the whole stream, by a cursor over the key tree.

    The cursor expects key ``prefix + (index,)`` next: an item or tombstone with that key at a
    head is delivered; a head that descends from it (or its END marker) makes the cursor descend;
    the level ends when its END count is reached, and the END marker is delivered after the
    children. FINAL items (from ``finish()``) follow once the whole stream has been delivered.
    """

    def __init__(self, sources: tuple[int, ...], start_seq: int = 0) -> None:
        super().__init__(sources)
        # levels of the key tree: [prefix, next index, (END count, its queue) or None]
        self.stack: list[list[Any]] = [[(), start_seq, None]]

    def take(self, limit: int) -> list[Run]:
        runs: list[Run] = []
        stack = self.stack
        while limit > 0:
            if not stack:
                return self._finals(runs, limit)
            top = stack[-1]
            prefix, idx, end = top
            if end is not None and idx >= end[0]:
                q = end[1]
                self._advance(q[0], q[0].pos + 1, runs)  # the END marker itself
                limit -= 1
                stack.pop()
                if stack:
                    stack[-1][1] += 1
                continue
            want = prefix + (idx,)
            hit = None
            descend = False
            for q in self.queues.values():
                if not q:
                    continue
                kind, key, value = q[0].head()
                if kind == END and key == prefix:
                    top[2] = (value, q)
                elif key == want and kind != END:
                    hit = q[0]
                    break
                elif key[:len(want)] == want:  # a child of `want`, or END(want, n)
                    descend = True
            if hit is not None:
                n = self._run(hit, top, limit)
                limit -= n
                self._advance(hit, hit.pos + n, runs)
            elif top[2] is not None and top[1] >= top[2][0]:
                continue
            elif descend:
                stack.append([want, 0, None])
            else:
                break  # the next record has not arrived yet
        return runs

    @staticmethod
    def _run(e: _Entry, top: list[Any], limit: int) -> int:
        """How many records from ``e``'s position on are the next keys of this level."""
        b = e.batch
        keys, kinds = b.keys, b.kinds
        prefix, idx = top[0], top[1]
        i, n = e.pos, min(len(keys), e.pos + limit)
        while i < n and keys[i] == prefix + (idx,) and (kinds is None or kinds[i] != END):
            i += 1
            idx += 1
        top[1] = idx
        return i - e.pos

    def _finals(self, runs: list[Run], limit: int) -> list[Run]:
        for q in self.queues.values():
            while q and limit > 0:
                e = q[0]
                hi = min(len(e.batch.keys), e.pos + limit)
                limit -= hi - e.pos
                self._advance(e, hi, runs)
        return runs


class HeadsMerger(_PerSource):
    """Ordered merge for a replica that sees only part of the stream (a replicated stage after a
    replicated stage): take from the upstream with the smallest head, as long as it stays below
    every other upstream's head. An upstream with nothing queued holds the merge back unless it
    has ended, or has said how far it has got (:meth:`progress`: it will send nothing at or
    below that position), so no marker records are needed."""

    def __init__(self, sources: tuple[int, ...], eos: set[int]) -> None:
        super().__init__(sources)
        self.eos = eos
        self.marks: dict[int, tuple] = {}

    def progress(self, src: int, pos: tuple) -> None:
        """Everything ``src`` sends from now on sits after position ``pos``."""
        self.marks[src] = pos

    def take(self, limit: int) -> list[Run]:
        runs: list[Run] = []
        marks = self.marks
        while limit > 0:
            best = None
            best_pos = head_bound = mark_bound = None  # heads: exclusive, marks: inclusive
            for src, q in self.queues.items():
                if not q:
                    if src in self.eos:
                        continue
                    m = marks.get(src)
                    if m is None:
                        return runs  # this upstream may still send something smaller
                    if mark_bound is None or m < mark_bound:
                        mark_bound = m
                    continue
                pos = position(*q[0].head())
                if best is None or pos < best_pos:
                    if best is not None and (head_bound is None or best_pos < head_bound):
                        head_bound = best_pos
                    best, best_pos = q[0], pos
                elif head_bound is None or pos < head_bound:
                    head_bound = pos
            if best is None or (mark_bound is not None and best_pos > mark_bound):
                return runs
            b = best.batch
            kinds, keys, values = b.kinds, b.keys, b.values
            i, n = best.pos + 1, min(len(keys), best.pos + limit)
            while i < n:
                pos = position(0 if kinds is None else kinds[i], keys[i], values[i])
                if (head_bound is not None and pos >= head_bound) or (
                        mark_bound is not None and pos > mark_bound):
                    break
                i += 1
            limit -= i - best.pos
            self._advance(best, i, runs)
        return runs


def make_merge(kind: str | None, sources: tuple[int, ...], start_seq: int,
               eos: set[int]) -> Fifo | Merger | HeadsMerger:
    """The merge a plan asks for (:meth:`streampipe.plan.Plan.merge_kind`)."""
    if kind == "cursor":
        return Merger(sources, start_seq)
    if kind == "heads":
        return HeadsMerger(sources, eos)
    return Fifo()

