"""The stage loops: take a batch of records, run the stage on each item, hand the outputs over.

Batch-at-a-time with per-item semantics: a stage takes what has arrived (up to ``batch``
records), calls ``process`` once per item (or ``process_batch`` once, when the stage defines it)
and hands all outputs to its ports in one put, with one credit update and one round of metrics
writes per batch. Every item still gets its own stamps (``t_recv`` of its message, ``t_start``,
``t_end``, and ``t_sent`` of the wire message that carried its last output).

The handover is the only place where outputs, credits, metrics and progress marks move
(:meth:`Loop.handover`). It happens at the end of each batch, and earlier when the flush policy
says so: a receiver is starving, or the oldest output would wait longer than ``max_delay`` (a
slow stage hands over item by item); also before any wait inside ``process`` (a feedback wait),
so a rank never waits while holding outputs someone may need.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import repeat
from types import GeneratorType
from typing import Any, Protocol

from . import metrics as M
from .channel import InPort, OutPort, Taken
from .edges import GROUP
from .flush import FlushPolicy, Pace
from .merge import DONE_MARK
from .records import FINAL, Batch
from .stage import Stage, StageError
from .transport import CONTROL
from .zipper import Zipper

__all__ = ["Loop", "Host"]


class Host(Protocol):
    """What a stage loop reads and sets on its rank (:class:`streampipe.runtime.RankRuntime`):
    the plan, the ports, the stage and its per-item helpers, and the rank's waits."""

    m: M.Recorder
    t: Any  # Transport
    plan: Any  # Plan
    sp: Any  # StagePlan
    role: Any  # Role
    inp: InPort | None
    out: OutPort | None
    stage: Any
    faults: list[Any]
    feedback: Any
    staging: Any
    ckpt: Any
    control: list[Any]
    markers: bool
    max_delay: float
    seq: Any  # the item being processed, for error messages
    item_t0: float | None

    def wait(self, until: Any, state: int, what: str) -> None: ...

    def wait_input(self, held: Callable[[], Taken | None] | None = None) -> Taken | None: ...

    def tick(self, now: float) -> None: ...


class Loop:
    """One rank's stage loop and the segment of work it has not handed over yet."""

    def __init__(self, rt: Host) -> None:
        self.rt = rt
        self.m: M.Recorder = rt.m
        self.outs: list[OutPort] = rt.outs
        self.inp: InPort | None = rt.inp
        self.batch = rt.plan.batch
        self.policy = FlushPolicy(rt.plan.batch, rt.max_delay)
        self.pace = Pace()
        sp = rt.sp
        self.zipper = Zipper(len(sp.inputs)) if sp.join == "zip" else None
        self.input_names = ([rt.plan.stages[j].name for j in sp.inputs] if sp.join == "merge"
                            else None)
        self.next_key: Any = None  # a source's next key (its progress mark)
        self.marks = any(out.progress for out in self.outs)  # some receiver reads our marks
        # the segment: items processed and their outputs, not yet handed over
        self.seqs: list[float] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.okeys: list[tuple] = []
        self.ovals: list[Any] = []
        self.orows: list[int] | None = None  # None: output j comes from item j of the segment
        self.taken: Taken | None = None
        self.unput_row: int | None = None  # first event row whose outputs wait for credit
        self.cur = 0  # index in `taken` of the record being processed (special path)
        self.in_item = False
        self.handing = False
        self.put_low: tuple | None = None  # during a put: the first output not yet put
        # a resumed sink whose durable output is past the sources' start: the records below
        # its mark come again and are dropped (None: nothing to drop)
        ck = rt.ckpt
        self.skip: int | None = ck.hwm if ck is not None and ck.hwm > rt.plan.start_seq else None
        # per-item work beyond process(): faults, group members, GPU staging, feedback, timeout
        self.special = bool(rt.faults or len(rt.role.group) > 1 or rt.staging is not None
                            or rt.feedback is not None or sp.timeout or rt.ckpt is not None
                            or self.input_names is not None)

    # ----- progress marks ------------------------------------------------------------------
    def mark(self) -> tuple | None:
        """Nothing this stage puts from now on sits before this position (None: unknown)."""
        if self.handing:
            # in the middle of a put, waiting for credit: every output before put_low is on
            # its way and nothing this stage puts later sits before it. Telling the other
            # receivers so keeps an ordered merge downstream going while one receiver is full
            # (without it, key routing or a fork into a join deadlocks on the skew)
            return self.put_low
        if self.inp is None:
            return DONE_MARK if self.next_key is None else (self.next_key,)
        low = self.inp.low()
        if low is None:
            return None
        if self.zipper is not None:  # zipped items are keyed (seq, *rest): no input number
            held = self.zipper.pending
            low = (low[0],) if held is None else min((low[0],), held)
        taken = self.taken
        if taken is not None and taken.done < len(taken.batch.keys):
            low = min(low, taken.batch.keys[taken.done])
        return low

    def set_marks(self) -> None:
        """Give every output port the current mark (the ports send it where it is due)."""
        if not self.marks:
            return
        mark = self.mark()
        if mark is None:
            return
        for port in self.outs:
            if port.mark is None or mark > port.mark:
                port.mark = mark

    # ----- the handover --------------------------------------------------------------------
    def deadline(self, now: float) -> float:
        """When the oldest output not yet sent has waited ``max_delay`` (minus one item)."""
        oldest = now
        for out in self.outs:
            if out.pending:
                oldest = min([oldest] + [ob.t_first for ob in out.open if ob is not None])
        return oldest + self.policy.max_delay - self.pace.value

    def starving(self) -> bool:
        """Some receiver has nothing in flight (the per-item loops read ``out.starving`` of a
        single output directly: this call costs 0.3 us, a fifth of a tiny item's)."""
        return any(out.starving for out in self.outs)

    def handover(self, upto: int | None = None) -> None:
        """Record the segment's items, put their outputs, consume their input records (the first
        ``upto`` of ``taken``) and send what the flush policy says is due."""
        m, rt = self.m, self.rt
        prev = m.enter(M.OTHER)
        try:
            taken = self.taken
            seqs = self.seqs
            if seqs:
                arrivals = taken.arrivals(taken.done, upto) if taken is not None else None
                rows = m.items(seqs, self.starts, self.ends, arrivals)
                self.pace.update(self.ends[-1] - self.starts[0], len(seqs))
                if self.inp is not None:
                    self.inp.pace = self.pace.value  # our senders size their batches by it
                seqs.clear()
                self.starts.clear()
                self.ends.clear()
            else:
                rows = range(m.log.n, m.log.n)
            last = None
            if taken is not None and upto is not None:
                last = self._consumed(taken, upto)
            keys = self.okeys
            if keys and self.outs:
                vals = self.ovals if rt.staging is None else rt.staging.outbound(self.ovals)
                self.handing = True
                try:
                    self._put(keys, vals, rows if self.orows is None else self.orows)
                finally:
                    self.handing = False
            keys.clear()  # in place: the loops hold these lists' append methods
            self.ovals.clear()
            self.orows = None
            if rt.ckpt is not None and last is not None:
                self._checkpoint(last)
            now = time.perf_counter()
            if self.outs:
                self.set_marks()
                for out in self.outs:
                    out.flush_due(now, self.pace.value)
            m.settle(self.oldest_row())
            rt.tick(now)
        finally:
            m.enter(prev)

    def oldest_row(self) -> int | None:
        """The first event row whose outputs have not all left: held in an open batch, or not
        put yet during a wait for credit (None: every row's outputs have left)."""
        rows = [r for out in self.outs if (r := out.oldest_row()) is not None]
        if self.unput_row is not None:
            rows.append(self.unput_row)
        return min(rows) if rows else None

    def _consumed(self, taken: Taken, upto: int) -> tuple | None:
        """Consume ``[taken.done, upto)``; the key of the last one."""
        last = taken.batch.keys[upto - 1] if upto > taken.done else None
        if taken.runs[0][0] >= 0:  # not a zipped batch (consumed when it was formed)
            self.inp.consume(taken, upto)
        else:
            taken.done = upto
        return last

    def _checkpoint(self, last: tuple) -> None:
        # every item of a source item whose records have all arrived is durable: the mark may
        # pass it (a source item still half consumed, as in a fan-out, waits for the next time)
        low = self.inp.low()
        if low is not None and last[0] < low[0]:
            self.rt.ckpt.consumed_upto(int(last[0]) + 1, self.rt.stage, time.perf_counter())

    def _put(self, keys: list[tuple], vals: list[Any], rows: Any) -> None:
        """Put the outputs on every output edge (a fork sends each consumer everything). The
        edges advance side by side: waiting for one consumer's credit before the others have
        the same records would let a join downstream hold that consumer's records back while
        it waits for the other branch, which waits for this put: a deadlock."""
        self.m.items_out += len(keys)
        outs, n = self.outs, len(keys)
        done = [out.put_batch(keys, vals, None, rows) for out in outs]
        while True:
            behind = [j for j in range(len(outs)) if done[j] < n]
            if not behind:
                self.put_low = None
                return
            self.put_low = min(keys[done[j]] for j in behind)
            # the items of the outputs not put yet are still held here: the wait must not
            # settle their event rows (their t_sent is still to come)
            self.unput_row = min(rows[done[j]] if isinstance(rows, range) else min(rows[done[j]:])
                                 for j in behind)
            try:
                self.rt.wait(lambda b=behind: any(outs[j].can_put(keys[done[j]], vals[done[j]])
                                                  for j in b), M.BLOCKED, "waiting for credit")
            finally:
                self.unput_row = None
            for j in behind:
                i = done[j]
                done[j] += outs[j].put_batch(keys[i:], vals[i:], None, rows[i:])

    def before_wait(self) -> None:
        """A wait inside process(): hand over what is done first (someone may need it)."""
        if self.in_item and not self.handing and self.taken is not None:
            self.handover(self.cur)

    def abandon(self) -> None:
        """After a failure: record the items of the unfinished segment (never sent)."""
        if self.seqs:
            taken = self.taken
            arrivals = None
            if taken is not None:
                arrivals = taken.arrivals(taken.done, len(taken.batch.keys))
                arrivals = _first_items(arrivals, len(self.seqs))
            self.m.items(self.seqs, self.starts, self.ends, arrivals)
            self.seqs.clear()

    # ----- outputs that break the one-in-one-out pattern -----------------------------------
    def _explicit(self) -> None:
        """From here on every output names the event row of its item (or -1: none)."""
        if self.orows is None:
            base = self.m.log.n
            self.orows = list(range(base, base + len(self.okeys)))

    def _add(self, key: tuple, value: Any, row: int) -> None:
        self._explicit()
        self.okeys.append(key)
        self.ovals.append(value)
        self.orows.append(row)

    def _emit(self, key: tuple, result: Any) -> None:
        """Outputs of an item that was dropped (None) or fanned out (a generator)."""
        row = self.m.log.n + len(self.seqs)
        self._explicit()
        if result is not None:
            for n, child in enumerate(result):
                self._add(key + (n,), child, row)

    # ----- per-item extras (faults, group members, GPU staging, feedback, timeout) ---------
    def _before(self, i: int, key: tuple, value: Any, ctx: Any) -> Any:
        rt = self.rt
        seq = key[0]
        rt.seq = seq
        self.cur = i
        self.in_item = True
        if self.input_names is not None:
            ctx.input = self.input_names[key[1]]
        for r in rt.role.group[1:]:
            rt.t.send(r, CONTROL, GROUP, ("item", seq))
        rt.item_t0 = time.perf_counter()
        for f in rt.faults:  # inside the timed region, so the watchdog sees an injected sleep
            f.trigger(seq)
        if rt.staging is not None:
            value = rt.staging.inbound(value)
        return value

    def _after(self) -> None:
        rt = self.rt
        if rt.staging is not None:
            rt.staging.done()
        rt.item_t0 = None
        self.in_item = False

    # ----- the loops -----------------------------------------------------------------------
    def run_source(self, src: Any) -> None:
        rt, m = self.rt, self.m
        plan, sp = rt.plan, rt.sp
        k, s = plan.n_sources, sp.source
        stride, offset = sp.replicas, rt.role.replica
        # resume: the first item at or after the plan's start (a position over all sources)
        seq = -((s - plan.start_seq) // k) if plan.start_seq else 0
        if seq:
            src.seek(seq)
        gen = iter(src.generate())
        perf = time.perf_counter
        special = self.special
        okeys_a, ovals_a = self.okeys.append, self.ovals.append
        seqs_a, starts_a, ends_a = self.seqs.append, self.starts.append, self.ends.append
        key = self.next_key = (seq * stride + offset) * k + s
        done = False
        one = self.outs[0] if len(self.outs) == 1 else None
        try:
            while not done:
                m.enter(M.BUSY)
                t = perf()
                deadline = self.deadline(t)
                for _ in range(self.batch):
                    key = (seq * stride + offset) * k + s
                    if special:
                        rt.seq = key
                        rt.item_t0 = t
                        for f in rt.faults:
                            f.trigger(key)
                    try:
                        value = next(gen)
                    except StopIteration:
                        done = True
                        break
                    t2 = perf()
                    okeys_a((key,))
                    ovals_a(value)
                    seqs_a(key)
                    starts_a(t)
                    ends_a(t2)
                    t = t2
                    seq += 1
                    if t2 >= deadline or (one.starving if one is not None else self.starving()):
                        break
                self.next_key = None if done else (seq * stride + offset) * k + s
                rt.item_t0 = None
                m.enter(M.OTHER)
                self.handover()
        except BaseException:
            rt.seq = key
            raise
        rt.seq = "finish"
        self.finals(src)

    def run_stage(self, stage: Any) -> None:
        rt, m, inp = self.rt, self.m, self.inp
        vectorised = type(stage).process_batch is not Stage.process_batch
        run = self._batch_vectorised if vectorised else self._batch
        while True:
            taken = inp.take(self.batch)
            if taken is None:
                taken = rt.wait_input(None if self.zipper is None else self._zip_held)
                if taken is None:
                    break
            if self.zipper is not None and taken.runs[0][0] >= 0:
                taken = self._zip(taken)
                if taken is None:
                    continue
            self.taken = taken
            if self.skip is not None and self._skip(taken):
                self.taken = None
                continue
            m.enter(M.BUSY)
            run(taken, stage)
            stage.ctx.seq = None
            m.enter(M.OTHER)
            self.handover(len(taken.batch.keys))
            self.taken = None
        if self.zipper is not None:
            out: list[tuple[tuple, Any]] = []
            self.zipper.complete(DONE_MARK, out)
            if out:
                self.taken = self._zipped(out)
                m.enter(M.BUSY)
                run(self.taken, stage)
                m.enter(M.OTHER)
                self.handover(len(out))
                self.taken = None
        rt.seq = "finish"
        if rt.ckpt is not None:
            rt.ckpt.save(stage)
        for r in rt.role.group[1:]:
            rt.t.send(r, CONTROL, GROUP, ("finish", None))
        self.finals(stage)

    def _skip(self, taken: Taken) -> bool:
        """Drop the records below the mark (already in this sink's output), recorded as items
        of no time; True when nothing of ``taken`` is left. The stream is ordered, so they are
        a prefix, and once a record at or past the mark came there are no more."""
        keys = taken.batch.keys
        skip, k = self.skip, 0
        while k < len(keys) and keys[k][0] < skip:
            k += 1
        if k:
            now = time.perf_counter()
            self.seqs.extend(key[0] for key in keys[:k])
            self.starts.extend(repeat(now, k))
            self.ends.extend(repeat(now, k))
            self.handover(k)
        if k < len(keys):
            self.skip = None
            return False
        return True

    def _zip(self, taken: Taken) -> Taken | None:
        """Feed the zipper; the items it completed (None: none yet)."""
        b = taken.batch
        out: list[tuple[tuple, Any]] = []
        self.zipper.add(b.keys, b.values, out)
        self.inp.consume(taken, len(b.keys))  # held in the zipper from here on
        self.zipper.complete(self.inp.low(), out)
        return self._zipped(out) if out else None

    def _zip_held(self) -> Taken | None:
        """The groups an upstream's progress mark completed while this stage waits (their
        records have all arrived; a downstream merge may be waiting for exactly them)."""
        if self.zipper.pending is None:
            return None
        out: list[tuple[tuple, Any]] = []
        self.zipper.complete(self.inp.low(), out)
        return self._zipped(out) if out else None

    def _zipped(self, out: list[tuple[tuple, Any]]) -> Taken:
        now = time.perf_counter()
        self.m.arrived(len(out), now)
        return Taken(Batch([k for k, _ in out], [v for _, v in out]), [(-1, len(out), now)])

    def _batch(self, taken: Taken, stage: Any) -> None:
        b = taken.batch
        keys, values = b.keys, b.values
        process, ctx = stage.process, stage.ctx
        has_out = bool(self.outs)
        one = self.outs[0] if len(self.outs) == 1 else None
        special = self.special
        okeys_a, ovals_a = self.okeys.append, self.ovals.append
        seqs_a, starts_a, ends_a = self.seqs.append, self.starts.append, self.ends.append
        perf = time.perf_counter
        t = perf()
        deadline = self.deadline(t)
        i = lo = taken.done  # past the records a resumed sink dropped
        try:
            for i in range(lo, len(keys)):
                key = keys[i]
                seq = key[0]
                ctx.seq = seq if seq != FINAL else None
                value = values[i]
                if special:
                    value = self._before(i, key, value, ctx)
                    t = perf()
                r = process(value)
                if special:
                    self._after()
                if r is None or type(r) is GeneratorType:
                    if has_out:
                        self._emit(key, r)
                elif has_out:
                    if self.orows is None:
                        okeys_a(key)
                        ovals_a(r)
                    else:
                        self._add(key, r, self.m.log.n + len(self.seqs))
                t2 = perf()
                seqs_a(seq)
                starts_a(t)
                ends_a(t2)
                t = t2
                if t2 >= deadline or (has_out and (one.starving if one is not None
                                                   else self.starving())):
                    self.handover(i + 1)
                    t = perf()
                    deadline = self.deadline(t)
        except BaseException:
            if i < len(keys):
                self.rt.seq = keys[i][0]
            raise

    def _batch_vectorised(self, taken: Taken, stage: Any) -> None:
        """``process_batch`` over the batch's items; stamps spread evenly over the call."""
        b = taken.batch
        lo = taken.done  # past the records a resumed sink dropped
        keys, values = b.keys[lo:], b.values[lo:]
        if not keys:
            return
        items = list(values)
        if self.special:
            for i in range(len(keys)):
                items[i] = self._before(lo + i, keys[i], items[i], stage.ctx)
        self.rt.seq = keys[0][0]
        stage.ctx.seq = None
        t0 = time.perf_counter()
        results = stage.process_batch(items)
        if self.special:
            self._after()
        t1 = time.perf_counter()
        if len(results) != len(items):
            raise StageError(f"process_batch() returned {len(results)} results for "
                             f"{len(items)} items (one result per item: a value, None or a "
                             "generator)")
        dt = (t1 - t0) / len(items)
        has_out = bool(self.outs)
        for j, (key, r) in enumerate(zip(keys, results, strict=True)):
            if has_out:
                if r is None or type(r) is GeneratorType:
                    self._emit(key, r)
                else:
                    self._add(key, r, self.m.log.n + len(self.seqs))
            self.seqs.append(key[0])
            self.starts.append(t0 + j * dt)
            self.ends.append(t0 + (j + 1) * dt)

    def run_member(self, stage: Any) -> None:
        """A non-root rank of a group stage: run process(None) in step with the root."""
        rt, m = self.rt, self.m
        ctl = rt.control
        while True:
            if not ctl:
                rt.wait(lambda: bool(ctl), M.STARVED, "waiting for the group root")
            what, seq = ctl.pop(0)
            if what == "finish":
                break
            rt.seq = seq
            stage.ctx.seq = seq
            prev = m.enter(M.BUSY)
            stage.process(None)
            m.enter(prev)
        rt.seq = "finish"
        res = stage.finish()
        if isinstance(res, GeneratorType):
            for _ in res:
                pass

    def finals(self, stage: Any) -> None:
        """``finish()`` and its outputs, keyed (FINAL, stage, replica, i) after the stream."""
        rt, m = self.rt, self.m
        prev = m.enter(M.BUSY)
        res = stage.finish()
        outs = list(res) if res is not None and self.outs else []
        m.enter(prev)
        for i, value in enumerate(outs):
            self._add((FINAL, rt.sp.index, rt.role.replica, i), value, -1)
        if outs:
            self.handover()


def _first_items(arrivals: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    """The first ``n`` items of ``(count, t)`` segments."""
    out = []
    for c, t in arrivals:
        if n <= 0:
            break
        out.append((min(c, n), t))
        n -= c
    return out

