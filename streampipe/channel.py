"""Edges: credit-controlled output ports, input ports with ordered merges, feedback input.

**Credits.** The receiver of an edge grants each sender ``capacity`` credits. A wire message
costs one credit, however many small records it holds (at most ``batch``); a message that
carries out-of-band array buffers, or whose pickle is larger than the posted receive buffer
(64 KiB), costs one credit per record in it that may carry such data (anything but numbers and
short strings). So per (sender, receiver) pair at most ``capacity`` messages, ``capacity x
batch`` small records and ``capacity`` records with arrays are in flight. A message's credit
comes back once the receiver has *consumed* all its records (its stage has handed their outputs
on), in credit frames that carry the record count too, so the sender's in-flight level (for
Little's law) stays exact.

**Batching.** A sender keeps one open batch per receiver and sends it when the flush policy says
so (:mod:`streampipe.flush`): full, the receiver idle (nothing in flight), or a record about to
wait longer than ``max_delay``; and always before its rank waits for anything, so two ranks can
never wait on each other.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from .flush import FlushPolicy
from .merge import make_merge
from .metrics import Level, Rows
from .records import ITEM, TOMB, Batch, Record
from .routing import choose, fits
from .transport import DATA, EOS, INLINE_BYTES, POSTED_BYTES, PROGRESS, Transport, encode

__all__ = ["OutPort", "InPort", "Taken", "FeedbackIn", "UnsendableItem", "may_carry_buffers",
           "ITEM", "TOMB"]

INLINE_TYPES = frozenset({int, float, bool, complex, type(None)})


def may_carry_buffers(value: Any) -> bool:
    """Whether a record may be charged one credit of its own (see the module doc)."""
    t = type(value)
    if t in INLINE_TYPES:
        return False
    if t is str or t is bytes:
        return len(value) >= INLINE_BYTES
    return True


class UnsendableItem(TypeError):
    """An item a stage produced cannot be pickled for the next stage (a lambda, an open file)."""

    def __init__(self, seq: Any, message: str) -> None:
        super().__init__(message)
        self.item_seq = seq


def _unsendable(batch: Batch, exc: Exception) -> UnsendableItem:
    """Name the record of a batch that does not pickle (batching hides which item it was)."""
    for key, value in zip(batch.keys, batch.values, strict=True):
        try:
            pickle.dumps(value, protocol=5)
        except Exception as err:  # noqa: BLE001 - any pickling failure is this item's
            seq = key[0] if key else None
            why = f"{type(err).__name__}: {err}"
            return UnsendableItem(seq, f"its output for item seq {seq} cannot be sent to the "
                                       f"next rank (items must pickle): {why}")
    return UnsendableItem(None, f"a batch of items cannot be sent: {type(exc).__name__}: {exc}")


class _Open:
    """The batch a sender is filling for one receiver."""

    __slots__ = ("keys", "values", "kinds", "rows", "maybe", "t_first")

    def __init__(self, now: float) -> None:
        self.keys: list[tuple] = []
        self.values: list[Any] = []
        self.kinds: list[int] | None = None
        self.rows: list[Rows] = []  # event rows of the items these records came from
        self.maybe = 0  # records that may carry buffers
        self.t_first = now


class OutPort:
    """Sender side of one edge to the root ranks of the next stage: each record to one of them
    (the one with credit, or, routing by key, receiver ``route(key, value) % receivers``), or
    to all (``broadcast``). ``buckets`` (a list, with ``route``): each record put adds 1 at
    ``route(key, value) % len(buckets)`` (the key distribution the simulator replays)."""

    def __init__(self, transport: Transport, edge: int, dests: tuple[int, ...], capacity: int,
                 batch: int, level: Level, broadcast: bool = False, *, max_delay: float = 1e-3,
                 on_sent: Callable[[list[Rows], float], None] | None = None,
                 progress: bool = False,
                 route: Callable[[tuple, Any], int] | None = None,
                 buckets: list[int] | None = None) -> None:
        self.t = transport
        self.edge = edge
        self.dests = dests
        self.capacity = capacity
        self.policy = FlushPolicy(batch, max_delay)
        self.batch = batch
        self.broadcast = broadcast
        self.level = level
        self.on_sent = on_sent
        n = len(dests)
        self.credit = [capacity] * n
        # most records per message to each receiver: ``batch``, and no more than ``max_delay``
        # of the receiver's work (its pace comes with its credits), so replicas of a slow stage
        # share the items instead of one taking 64 of them while the rest idle (and an ordered
        # merge behind them waits); 1 until a receiver has said its pace (feedback receivers
        # never do: they take values on arrival)
        self.max_delay = max_delay
        self.limit = [batch if broadcast else 1] * n
        self.open: list[_Open | None] = [None] * n
        self.pending = 0  # records in open batches
        self.starving = n  # receivers with nothing in flight
        self.closed: set[int] = set()
        self._index = {d: j for j, d in enumerate(dests)}
        self._cur = 0
        self._rr = 0
        self.route = route
        self.buckets = buckets
        # progress marks for receivers that merge by position: the stage's own mark (nothing it
        # puts later sits before it; set by the runtime) and the last one each receiver was told
        self.progress = progress
        self.mark: tuple | None = None
        self.told: list[tuple | None] = [None] * n
        transport.register(edge, self._on_credit)

    def _on_credit(self, src: int, kind: int, payload: Any) -> None:
        c, n, closed, pace = payload
        j = self._index[src]
        self.credit[j] += c
        if pace > 0:
            self.limit[j] = max(1, min(self.batch, int(self.max_delay / pace)))
        if c and self.credit[j] == self.capacity:
            self.starving += 1
        if n:
            self.level.add(-n, time.perf_counter())
        if closed:
            self.closed.add(src)

    # ----- putting records -----------------------------------------------------------------
    def _maybes(self) -> list[int]:
        return [-1 if ob is None else ob.maybe for ob in self.open]

    def has_credit(self, maybe: bool = True) -> bool:
        """Whether a record (by default one that may carry buffers) can be put now."""
        ms = self._maybes()
        ok = [fits(c, m, maybe) for c, m in zip(self.credit, ms, strict=True)]
        return all(ok) if self.broadcast else any(ok)

    def can_put(self, key: tuple, value: Any) -> bool:
        """Whether this record can be put now."""
        if self.route is None:
            return self.has_credit(may_carry_buffers(value))
        j = self.route(key, value) % len(self.dests)
        ob = self.open[j]
        return fits(self.credit[j], -1 if ob is None else ob.maybe, may_carry_buffers(value))

    def _room(self, j: int, values: Sequence[Any], i: int, n: int) -> tuple[int, int]:
        """How far from ``i`` records fit into receiver ``j``'s batch; its maybe count then."""
        ob = self.open[j]
        have, m = (0, 0) if ob is None else (len(ob.keys), ob.maybe)
        c = self.credit[j]
        if c < 1:
            return i, m
        # at least one record: the limit can shrink below an open batch's size (a receiver's
        # new pace), and a negative room would move the put backwards (records put twice);
        # the batch is sent as soon as it reaches the limit
        lim = min(n, i + max(self.limit[j] - have, 1))
        if INLINE_TYPES.issuperset(map(type, values[i:lim])):
            return lim, m  # numbers only (the common case): one type check in C per record
        e = i
        while e < lim:
            v = values[e]
            t = type(v)
            if t not in INLINE_TYPES and (
                    (t is not str and t is not bytes) or len(v) >= INLINE_BYTES):
                if m + 1 > c:
                    break
                m += 1
            e += 1
        return e, m

    def _extend(self, j: int, keys: Sequence[tuple], values: Sequence[Any],
                kinds: Sequence[int] | None, rows: Rows | None, i: int, e: int, m: int,
                now: float) -> None:
        ob = self.open[j]
        if ob is None:
            ob = self.open[j] = _Open(now)
        have = len(ob.keys)
        ob.keys.extend(keys[i:e])
        ob.values.extend(values[i:e])
        if kinds is not None or ob.kinds is not None:
            if ob.kinds is None:
                ob.kinds = [ITEM] * have
            ob.kinds.extend(kinds[i:e] if kinds is not None else repeat(ITEM, e - i))
        if rows is not None:
            seg = rows[i:e]
            if not isinstance(seg, range):
                seg = [r for r in seg if r >= 0]  # -1: a marker or a finish() output
            last = ob.rows[-1] if ob.rows else None
            if (isinstance(seg, range) and isinstance(last, range) and last.stop == seg.start):
                ob.rows[-1] = range(last.start, seg.stop)
            elif len(seg):
                ob.rows.append(seg)
        ob.maybe = m
        self.pending += e - i

    def put_batch(self, keys: Sequence[tuple], values: Sequence[Any],
                  kinds: Sequence[int] | None = None, rows: Rows | None = None) -> int:
        """Queue records (``rows``: the event row of the item each came from); returns how
        many were taken, fewer than given when no receiver has credit for the next one."""
        n = len(keys)
        now = time.perf_counter()
        i = 0
        hashes: list[int] = []  # routing hashes of records 0.., each computed once per call
        while i < n:
            for j, ob in enumerate(self.open):
                # a receiver's pace came in after its batch was opened: that batch is full now
                if ob is not None and len(ob.keys) >= self.limit[j] and self.credit[j] >= 1:
                    self._send(j, now)
            if self.broadcast:
                e = min(self._room(j, values, i, n)[0] for j in range(len(self.dests)))
                if e == i:
                    break
                for j in range(len(self.dests)):
                    self._extend(j, keys, values, kinds, rows, i, e,
                                 self._room(j, values, i, e)[1], now)
                    if len(self.open[j].keys) >= self.limit[j]:
                        self._send(j, now)
            else:
                if self.route is not None:
                    j, n_same = self._routed(keys, values, hashes, i, n)
                else:
                    j, n_same = self._target(values[i]), n
                if j is None:
                    break
                e, m = self._room(j, values, i, n_same)
                if e == i:
                    break
                self._extend(j, keys, values, kinds, rows, i, e, m, now)
                self._cur = j
                if len(self.open[j].keys) >= self.limit[j]:
                    self._send(j, now)
            i = e
        if i:
            self.level.add(i * (len(self.dests) if self.broadcast else 1), now)
            b = self.buckets
            if b is not None:  # the records put, not those left for a later call
                nb = len(b)
                for h in hashes[:i]:
                    b[h % nb] += 1
        return i

    def _routed(self, keys: Sequence[tuple], values: Sequence[Any], hashes: list[int], i: int,
                n: int) -> tuple[int, int]:
        """The receiver of record ``i`` by key, and where its run of records for it ends (no
        further than its batch can take: records past that are hashed in a later call)."""
        route, nd = self.route, len(self.dests)
        if len(hashes) == i:
            hashes.append(route(keys[i], values[i]))
        j = hashes[i] % nd
        ob = self.open[j]
        lim = min(n, i + max(self.limit[j] - (0 if ob is None else len(ob.keys)), 1))
        h = len(hashes)
        if h < lim:  # up to what the batch takes; past this run's end, the next run's hashes
            hashes.extend(map(route, keys[h:lim], values[h:lim]))
        e = i + 1
        while e < lim and hashes[e] % nd == j:
            e += 1
        return j, e

    def _target(self, value: Any) -> int | None:
        if len(self.dests) == 1:
            ob = self.open[0]
            return 0 if fits(self.credit[0], -1 if ob is None else ob.maybe,
                             may_carry_buffers(value)) else None
        self._rr += 1
        return choose(self.credit, self._maybes(), self.capacity, self._cur,
                      may_carry_buffers(value), self._rr)

    def put(self, rec: tuple) -> None:
        """Queue one record ``(kind, key, value)`` (the caller checked :meth:`has_credit`)."""
        kind, key, value = rec
        if not self.put_batch([key], [value], None if kind == ITEM else [kind]):
            raise RuntimeError(f"edge {self.edge}: put without credit")
        self.flush_due(time.perf_counter(), 0.0)

    # ----- sending -------------------------------------------------------------------------
    def _send(self, j: int, now: float) -> None:
        ob = self.open[j]
        self.open[j] = None
        self.pending -= len(ob.keys)
        t0 = time.perf_counter()
        try:
            # a plain tuple on the wire: pickling a NamedTuple costs 5x more
            blob, bufs = encode((ob.keys, ob.values, ob.kinds, self.mark))
        except Exception as exc:  # noqa: BLE001 - pickling errors vary by object type
            raise _unsendable(Batch(ob.keys, ob.values, ob.kinds), exc) from exc
        cost = max(1, ob.maybe) if bufs or len(blob) > POSTED_BYTES else 1
        if self.credit[j] == self.capacity:
            self.starving -= 1
        self.credit[j] -= cost
        self.t.send_data(self.dests[j], self.edge, cost, blob, bufs, t0)
        self.told[j] = self.mark
        if ob.rows and self.on_sent is not None:
            self.on_sent(ob.rows, time.perf_counter())

    def flush_due(self, now: float, pace: float) -> None:
        """Send the open batches the flush policy says are due."""
        if self.pending:
            send, cap = self.policy.send, self.capacity
            for j, ob in enumerate(self.open):
                if ob is not None and send(len(ob.keys), now - ob.t_first, pace,
                                           self.credit[j] == cap):
                    self._send(j, now)
        if self.progress:
            # between batches only receivers that have taken in everything sent to them: one
            # still holding records of ours merges by their heads, and returns its credits
            # (which makes it starving here) before it waits
            self._tell_progress(idle_only=True)

    def flush(self) -> None:
        """Send every open batch (before this rank waits)."""
        if self.pending:
            now = time.perf_counter()
            for j, ob in enumerate(self.open):
                if ob is not None:
                    self._send(j, now)
        if self.progress:
            self._tell_progress()

    def _tell_progress(self, idle_only: bool = False) -> None:
        # only receivers with nothing open: a record still waiting for j sits before the mark
        mark = self.mark
        if mark is None:
            return
        cap = self.capacity
        for j, ob in enumerate(self.open):
            if (ob is None and self.told[j] != mark
                    and (not idle_only or self.credit[j] == cap)):
                self.told[j] = mark
                self.t.send(self.dests[j], PROGRESS, self.edge, mark)

    def oldest_row(self) -> int | None:
        """The first event row some open batch still holds an output of."""
        firsts = [ob.rows[0][0] for ob in self.open if ob is not None and ob.rows]
        return min(firsts) if firsts else None

    def put_eos(self) -> None:
        self.flush()
        for d in self.dests:
            self.t.send_eos(d, self.edge)

    @property
    def done(self) -> bool:
        """Every receiver has acknowledged the end of the edge."""
        return len(self.closed) == len(self.dests)


class Taken:
    """Records an input port handed to its stage: one batch in stream order, made of runs of
    arrived batches; ``done`` of them consumed so far."""

    __slots__ = ("batch", "runs", "done")

    def __init__(self, batch: Batch, runs: list[tuple[int, int, float]]) -> None:
        self.batch = batch
        self.runs = runs  # (src, count, arrival time), in batch order
        self.done = 0

    def _clip(self, lo: int, hi: int):
        a = 0
        for src, n, t in self.runs:
            b = a + n
            if b > lo and a < hi:
                yield src, max(a, lo), min(b, hi), t
            a = b

    def arrivals(self, lo: int, hi: int) -> list[tuple[int, float]]:
        """``(items, arrival time)`` segments of the ITEM records in ``[lo, hi)``."""
        kinds = self.batch.kinds
        if kinds is None:
            return [(b - a, t) for _, a, b, t in self._clip(lo, hi)]
        out = []
        for _, a, b, t in self._clip(lo, hi):
            k = kinds[a:b].count(ITEM)
            if k:
                out.append((k, t))
        return out

    def sources(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """``(src, records)`` of the records in ``[lo, hi)``."""
        return [(src, b - a) for src, a, b, _ in self._clip(lo, hi)]


class InPort:
    """Receiver side of a stage's input edges: per-source accounting, credit return, merge.

    ``edge`` is one edge id with its ``sources`` (the sending root ranks), or a list of
    ``(edge, sources)`` for a stage with several inputs. With ``join`` (several inputs), the key
    of a record from input ``j`` becomes ``(seq, j, *rest)``, so the items of one source item
    from different inputs stay distinct and meet in input order; progress marks are re-keyed the
    same way.
    """

    def __init__(self, transport: Transport, edge: int | Sequence[tuple[int, Sequence[int]]],
                 sources: Sequence[int] = (), capacity: int = 8, merge: str | None = None,
                 start_seq: int = 0, on_arrival: Callable[[int, float], None] | None = None,
                 *, join: bool = False) -> None:
        self.t = transport
        inputs = [(edge, tuple(sources))] if isinstance(edge, int) else list(edge)
        self.edge_of = {s: e for e, srcs in inputs for s in srcs}  # source rank -> its edge
        self.port_of = {s: j for j, (_, srcs) in enumerate(inputs) for s in srcs}
        self.sources = tuple(self.edge_of)
        self.join = join
        self.eos: set[int] = set()
        self.acked: set[int] = set()
        self.merge = make_merge(merge or None, self.sources, self.eos)
        self.held = dict.fromkeys(self.sources, 0)  # records received, not yet consumed
        self.msgs: dict[int, deque[list[int]]] = {s: deque() for s in self.sources}
        self.owed = {s: [0, 0] for s in self.sources}  # credits, records not yet returned
        self.credit_batch = max(1, capacity // 2)
        self.pace = 0.0  # seconds per item of the stage reading this port (its loop sets it)
        self.on_arrival = on_arrival or (lambda n, t: None)
        self.on_progress: Callable[[], None] | None = None  # an upstream mark moved on
        for e, _ in inputs:
            transport.register(e, self._on_data)

    def _rekey(self, src: int, key: tuple) -> tuple:
        return (key[0], self.port_of[src]) + key[1:]

    def _on_data(self, src: int, kind: int, payload: Any) -> None:
        if kind == EOS:
            self.eos.add(src)
            self._maybe_ack(src)
            if self.on_progress is not None:
                self.on_progress()
            return
        if kind == PROGRESS:
            self.merge.progress(src, self._rekey(src, payload) if self.join else payload)
            if self.on_progress is not None:
                self.on_progress()
            return
        assert kind == DATA
        cost, (keys, values, kinds, mark) = payload
        n = len(keys)
        if self.join:
            j = self.port_of[src]
            keys = [(k[0], j) + k[1:] for k in keys]
            if mark is not None:
                mark = (mark[0], j) + mark[1:]
        batch = Batch(keys, values, kinds)
        self.msgs[src].append([cost, n])
        self.held[src] += n
        now = time.perf_counter()
        self.merge.add(src, batch, now)
        if mark is not None:
            self.merge.progress(src, mark)
        items = n if kinds is None else kinds.count(ITEM)
        if items:
            self.on_arrival(items, now)

    def low(self) -> tuple | None:
        """No record still to be taken sits before this position (None: not known yet)."""
        return self.merge.low()

    def take(self, limit: int) -> Taken | None:
        """Up to ``limit`` records in stream order (None when none is available yet)."""
        runs = self.merge.take(limit)
        if not runs:
            return None
        if len(runs) == 1:
            src, b, lo, hi, t = runs[0]
            if lo == 0 and hi == len(b.keys):
                return Taken(b, [(src, hi, t)])
            return Taken(Batch(b.keys[lo:hi], b.values[lo:hi],
                               None if b.kinds is None else b.kinds[lo:hi]), [(src, hi - lo, t)])
        keys: list[tuple] = []
        values: list[Any] = []
        marked = any(b.kinds is not None for _, b, _, _, _ in runs)
        kinds: list[int] | None = [] if marked else None
        for _, b, lo, hi, _ in runs:
            keys += b.keys[lo:hi]
            values += b.values[lo:hi]
            if kinds is not None:
                kinds += b.kinds[lo:hi] if b.kinds is not None else [ITEM] * (hi - lo)
        return Taken(Batch(keys, values, kinds), [(s, hi - lo, t) for s, _, lo, hi, t in runs])

    def consume(self, taken: Taken, upto: int) -> None:
        """The first ``upto`` records of ``taken`` are done with (their outputs handed on)."""
        for src, n in taken.sources(taken.done, upto):
            self._consumed(src, n)
        taken.done = upto

    def _consumed(self, src: int, n: int) -> None:
        self.held[src] -= n
        owed = self.owed[src]
        owed[1] += n
        q = self.msgs[src]
        while n:
            m = q[0]  # [credits not yet returned, records not yet consumed]
            k = min(n, m[1])
            m[1] -= k
            n -= k
            if not m[1]:
                owed[0] += m[0]
                q.popleft()
            elif m[0] > 1:
                # a message of array records: each consumed record frees its own credit at
                # once (the last one is kept until the message is done), so the sender can
                # overlap with a long batch instead of waiting for all of it
                c = min(k, m[0] - 1)
                m[0] -= c
                owed[0] += c
        if src in self.eos:
            self._maybe_ack(src)
        elif owed[0] >= self.credit_batch:
            self._return(src)

    def _return(self, src: int, closed: bool = False) -> None:
        c, n = self.owed[src]
        self.owed[src] = [0, 0]
        self.t.send_credit(src, self.edge_of[src], c, n, closed, self.pace)

    def _maybe_ack(self, src: int) -> None:
        # the closing ack is the last message to src on this edge: only when all its records
        # were consumed, so no credit can follow it
        if src in self.eos and not self.held[src] and src not in self.acked:
            self.acked.add(src)
            self._return(src, closed=True)

    def flush_credits(self) -> None:
        """Return every owed credit now (before this rank waits, to avoid a credit deadlock)."""
        for src, (c, n) in self.owed.items():
            if (c or n) and src not in self.acked:
                self._return(src)

    def next(self) -> tuple[float, Record] | None:
        """The next record in stream order, consumed at once (one record at a time)."""
        taken = self.take(1)
        if taken is None:
            return None
        self.consume(taken, 1)
        return taken.runs[0][2], taken.batch.record(0)

    @property
    def exhausted(self) -> bool:
        return len(self.acked) == len(self.sources)


class FeedbackIn:
    """Receiver of a feedback edge: values keyed by seq, taken eagerly so it can never block.

    Credits go back on arrival, so a feedback producer never waits on this rank; memory is
    bounded by the consumer releasing values (``ctx.release_feedback``) and checked by ``limit``.
    ``convert`` (a GPU stage's ``from_wire``) is applied to each value as it arrives.
    """

    def __init__(self, transport: Transport, edge: int, sources: tuple[int, ...], limit: int,
                 stage: str, convert: Callable[[Any], Any] | None = None) -> None:
        self.t = transport
        self.edge = edge
        self.sources = sources
        self.values: dict[int, Any] = {}
        self.watermark = -1  # every seq up to here was handled by the (single) producer
        self.eos: set[int] = set()
        self.limit = limit
        self.stage = stage
        self.convert = convert
        transport.register(edge, self._on_data)

    def _on_data(self, src: int, kind: int, payload: Any) -> None:
        if kind == EOS:
            self.eos.add(src)
            self.t.send_credit(src, self.edge, 0, 0, True)
            return
        cost, batch = payload[0], Batch._make(payload[1][:3])
        convert = self.convert
        for kind_, key, value in zip(batch.kinds or repeat(ITEM), batch.keys, batch.values,
                                     strict=False):
            if kind_ == ITEM:
                self.values[key[0]] = value if convert is None else convert(value)
            else:  # TOMB(w): the producer's watermark
                self.watermark = max(self.watermark, key[0])
        if len(self.values) > self.limit:
            raise RuntimeError(
                f"stage {self.stage!r} holds {len(self.values)} feedback values (limit "
                f"{self.limit}): call ctx.release_feedback(seq) for values it no longer needs")
        self.t.send_credit(src, self.edge, cost, len(batch.keys), False)

    @property
    def exhausted(self) -> bool:
        return len(self.eos) == len(self.sources)
