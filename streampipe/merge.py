"""How an input port orders what its upstream ranks sent: arrival order, or merged by position.

Each strategy gets whole :class:`~streampipe.records.Batch` es as they arrive (``add``) and hands
out *runs* (``take``): consecutive records of one arrived batch, ``(src, batch, lo, hi,
t_arrival)``, in the order the stage must see them. Taking runs instead of single records keeps
the per-record work of an ordered merge to a key comparison.

Every upstream rank sends its records sorted by position (a stage handles its input in order and
derives its output keys from its input keys), so the next record of the merged stream is always
at the head of some upstream's queue. An upstream with nothing queued says how far it has got
with a *progress mark*: nothing it sends later sits before that position (the Flink watermark).
"""

from __future__ import annotations

from collections import deque

from .records import FINAL, Batch

__all__ = ["Run", "Fifo", "HeadsMerger", "make_merge", "DONE_MARK"]

Run = tuple[int, Batch, int, int, float]  # src, batch, lo, hi, arrival time
DONE_MARK = (FINAL,)  # an ended upstream: only finish() outputs (keys (FINAL, ...)) may follow


class _Entry:
    """An arrived batch and how far into it the merge has got."""

    __slots__ = ("src", "batch", "pos", "t")

    def __init__(self, src: int, batch: Batch, t: float) -> None:
        self.src, self.batch, self.pos, self.t = src, batch, 0, t

    def head(self) -> tuple:
        return self.batch.keys[self.pos]


class Fifo:
    """Arrival order: an unordered pipeline, or an ordered one with a single sending rank (whose
    records arrive in position order, so how far it has got is known: :meth:`low`)."""

    def __init__(self, sources: tuple[int, ...] = (), eos: set[int] | None = None) -> None:
        self.queue: deque[_Entry] = deque()
        # position tracking needs one sender (several senders interleave in arrival order)
        self.single = sources[0] if len(sources) == 1 else None
        self.eos = eos if eos is not None else set()
        self.mark: tuple | None = None

    def add(self, src: int, batch: Batch, t: float) -> None:
        if batch.keys:
            self.queue.append(_Entry(src, batch, t))

    def progress(self, src: int, pos: tuple) -> None:
        """Everything ``src`` sends from now on sits at or after position ``pos``."""
        if self.mark is None or pos > self.mark:
            self.mark = pos

    def low(self) -> tuple | None:
        """A position no record still to come sits before (None: not known, or several
        senders); :data:`DONE_MARK` once the sender has ended and its records are taken."""
        if self.single is None:
            return None
        if self.queue:
            return self.queue[0].head()
        return DONE_MARK if self.single in self.eos else self.mark

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


class HeadsMerger:
    """Ordered merge of the streams of several upstream ranks (one is fine too): take from the
    upstream with the smallest head, as long as it stays below every other upstream's head and
    progress mark. An upstream with nothing queued and no mark holds the merge back until it
    sends something or ends."""

    def __init__(self, sources: tuple[int, ...], eos: set[int]) -> None:
        self.queues: dict[int, deque[_Entry]] = {s: deque() for s in sources}
        self.eos = eos
        self.marks: dict[int, tuple] = {}  # src -> everything it sends later is >= this

    def add(self, src: int, batch: Batch, t: float) -> None:
        if batch.keys:
            self.queues[src].append(_Entry(src, batch, t))

    def progress(self, src: int, pos: tuple) -> None:
        """Everything ``src`` sends from now on sits at or after position ``pos``."""
        old = self.marks.get(src)
        if old is None or pos > old:
            self.marks[src] = pos

    def low(self) -> tuple | None:
        """A position no record still to come sits before (None: an upstream has said nothing
        yet); :data:`DONE_MARK` once every upstream has ended and its records are taken."""
        lo = None
        for src, q in self.queues.items():
            if q:
                p = q[0].head()
            elif src in self.eos:
                continue
            else:
                p = self.marks.get(src)
                if p is None:
                    return None
            if lo is None or p < lo:
                lo = p
        return DONE_MARK if lo is None else lo

    def take(self, limit: int) -> list[Run]:
        runs: list[Run] = []
        marks = self.marks
        while limit > 0:
            best = None
            best_pos = bound = None  # the first position another upstream may still fill
            for src, q in self.queues.items():
                if q:
                    pos = q[0].head()
                    if best is None or pos < best_pos:
                        if best is not None and (bound is None or best_pos < bound):
                            bound = best_pos
                        best, best_pos = q[0], pos
                        continue
                elif src in self.eos:
                    continue
                else:
                    pos = marks.get(src)
                    if pos is None:
                        return runs  # this upstream may still send something smaller
                if bound is None or pos < bound:
                    bound = pos
            if best is None or (bound is not None and best_pos >= bound):
                return runs
            keys = best.batch.keys
            n = min(len(keys), best.pos + limit)
            i = best.pos + 1
            if bound is None:
                i = n
            else:
                while i < n and keys[i] < bound:
                    i += 1
            limit -= i - best.pos
            runs.append((best.src, best.batch, best.pos, i, best.t))
            best.pos = i
            if i == len(keys):
                self.queues[best.src].popleft()
        return runs


def make_merge(kind: str | None, sources: tuple[int, ...], eos: set[int]) -> Fifo | HeadsMerger:
    """The merge a plan asks for (:meth:`streampipe.plan.Plan.merge_kind`)."""
    return HeadsMerger(sources, eos) if kind == "heads" else Fifo(sources, eos)

