"""The stage loops: take a batch of records, run the stage on each item, hand the outputs over.

Batch-at-a-time with per-item semantics: a stage takes what has arrived (up to ``batch``
records), calls ``process`` once per item (or ``process_batch`` once, when the stage defines it)
and hands all outputs to its port in one put, with one credit update and one row of metrics
writes per batch. Every item still gets its own stamps (``t_recv`` of its message, ``t_start``,
``t_end``, and ``t_sent`` of the wire message that carried its last output).

The handover is the only place where outputs, credits and metrics move
(:meth:`Loop.handover`). It happens at the end of each batch, and earlier when the flush policy
says so: a receiver is starving, or the oldest output would wait longer than ``max_delay`` (a
slow stage hands over item by item); also before any wait inside ``process`` (a feedback wait),
so a rank never waits while holding outputs someone may need.
"""

from __future__ import annotations

import time
from types import GeneratorType
from typing import Any, Protocol

from . import metrics as M
from .channel import InPort, OutPort, Taken, may_carry_buffers
from .edges import GROUP
from .flush import FlushPolicy, Pace
from .records import END, FINAL, ITEM, TOMB
from .stage import Stage, StageError
from .transport import CONTROL

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

    def wait_input(self) -> Taken | None: ...

    def tick(self, now: float) -> None: ...


class Loop:
    """One rank's stage loop and the segment of work it has not handed over yet."""

    def __init__(self, rt: Host) -> None:
        self.rt = rt
        self.m: M.Recorder = rt.m
        self.out: OutPort | None = rt.out
        self.inp: InPort | None = rt.inp
        self.batch = rt.plan.batch
        self.policy = FlushPolicy(rt.plan.batch, rt.max_delay)
        self.pace = Pace()
        self.markers = rt.markers
        # the segment: items processed and their outputs, not yet handed over
        self.seqs: list[float] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.okeys: list[tuple] = []
        self.ovals: list[Any] = []
        self.okinds: list[int] | None = None  # None: every output is an ITEM
        self.orows: list[int] | None = None  # None: output j comes from item j of the segment
        self.taken: Taken | None = None
        self.unput_row: int | None = None  # first event row whose outputs wait for credit
        self.cur = 0  # index in `taken` of the record being processed (special path)
        self.in_item = False
        self.handing = False
        # per-item work beyond process(): faults, group members, GPU staging, feedback, timeout
        self.special = bool(rt.faults or len(rt.role.group) > 1 or rt.staging is not None
                            or rt.feedback is not None or rt.sp.timeout or rt.ckpt is not None)

    # ----- the handover --------------------------------------------------------------------
    def deadline(self, now: float) -> float:
        """When the oldest output not yet sent has waited ``max_delay`` (minus one item)."""
        out = self.out
        oldest = now
        if out is not None and out.pending:
            oldest = min([now] + [ob.t_first for ob in out.open if ob is not None])
        return oldest + self.policy.max_delay - self.pace.value

    def handover(self, upto: int | None = None) -> None:
        """Record the segment's items, put their outputs, consume their input records (the first
        ``upto`` of ``taken``) and send what the flush policy says is due."""
        m, out, rt = self.m, self.out, self.rt
        self.handing = True
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
            if taken is not None and upto is not None:
                self._consumed(taken, upto)
            keys = self.okeys
            if keys and out is not None:
                vals = self.ovals if rt.staging is None else rt.staging.outbound(self.ovals)
                self._put(keys, vals, self.okinds, rows if self.orows is None else self.orows)
            keys.clear()  # in place: the loops hold these lists' append methods
            self.ovals.clear()
            self.okinds = self.orows = None
            now = time.perf_counter()
            if out is not None:
                out.flush_due(now, self.pace.value)
                m.settle(out.oldest_row())
            else:
                m.settle()
            rt.tick(now)
        finally:
            m.enter(prev)
            self.handing = False

    def _consumed(self, taken: Taken, upto: int) -> None:
        rt = self.rt
        if rt.feedback is not None:
            rt.feedback.note(taken.batch, taken.done, upto)
        if rt.ckpt is not None:
            # the sink has consumed the whole segment: the mark goes past its last item at once
            # (a checkpoint taken half way would claim less than the sink has made durable)
            b = taken.batch
            items = [b.keys[i] for i in range(taken.done, upto) if b.kind(i) == ITEM]
            for key in items[:-1]:
                rt.ckpt.check(key)
            if items:
                rt.ckpt.consumed(items[-1], rt.stage, time.perf_counter())
        self.inp.consume(taken, upto)

    def _put(self, keys: list[tuple], vals: list[Any], kinds: list[int] | None,
             rows: Any) -> None:
        out = self.out
        self.m.items_out += len(keys) if kinds is None else kinds.count(ITEM)
        i = out.put_batch(keys, vals, kinds, rows)
        while i < len(keys):
            maybe = may_carry_buffers(vals[i])
            # the items of the outputs not put yet are still held here: the wait must not
            # settle their event rows (their t_sent is still to come)
            self.unput_row = rows[i] if isinstance(rows, range) else min(rows[i:])
            try:
                self.rt.wait(lambda m=maybe: out.has_credit(m), M.BLOCKED, "waiting for credit")
            finally:
                self.unput_row = None
            i += out.put_batch(keys[i:], vals[i:], None if kinds is None else kinds[i:],
                               rows[i:])

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

    def _add(self, kind: int, key: tuple, value: Any, row: int) -> None:
        self._explicit()
        if kind != ITEM and self.okinds is None:
            self.okinds = [ITEM] * len(self.okeys)
        self.okeys.append(key)
        self.ovals.append(value)
        self.orows.append(row)
        if self.okinds is not None:
            self.okinds.append(kind)

    def _emit(self, key: tuple, result: Any, seq: float) -> None:
        """Outputs of an item that was dropped (None) or fanned out (a generator)."""
        row = self.m.log.n + len(self.seqs)
        marked = self.markers and seq != FINAL
        self._explicit()
        if result is None:
            if marked:
                self._add(TOMB, key, None, row)
            return
        n = 0
        for child in result:
            self._add(ITEM, key + (n,), child, row)
            n += 1
        if marked:
            self._add(END, key, n, row)

    def _marker(self, kind: int, key: tuple, value: Any) -> None:
        if self.markers and self.out is not None:
            self._add(kind, key, value, -1)

    # ----- per-item extras (faults, group members, GPU staging, feedback, timeout) ---------
    def _before(self, i: int, seq: float, value: Any) -> Any:
        rt = self.rt
        rt.seq = seq
        self.cur = i
        self.in_item = True
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
        rt, m, out = self.rt, self.m, self.out
        seq = rt.plan.start_seq
        if seq:
            src.seek(seq)
        stride, offset = rt.sp.replicas, rt.role.replica
        gen = iter(src.generate())
        perf = time.perf_counter
        special = self.special
        okeys_a, ovals_a = self.okeys.append, self.ovals.append
        seqs_a, starts_a, ends_a = self.seqs.append, self.starts.append, self.ends.append
        key = seq * stride + offset
        done = False
        try:
            while not done:
                m.enter(M.BUSY)
                t = perf()
                deadline = self.deadline(t)
                for _ in range(self.batch):
                    key = seq * stride + offset
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
                    if t2 >= deadline or out.starving:
                        break
                rt.item_t0 = None
                m.enter(M.OTHER)
                self.handover()
        except BaseException:
            rt.seq = key
            raise
        rt.seq = "finish"
        if self.markers:
            self._add(END, (), seq, -1)
            self.handover()
        self.finals(src)

    def run_stage(self, stage: Any) -> None:
        rt, m, inp = self.rt, self.m, self.inp
        vectorised = type(stage).process_batch is not Stage.process_batch
        run = self._batch_vectorised if vectorised else self._batch
        while True:
            taken = inp.take(self.batch)
            if taken is None:
                taken = rt.wait_input()
                if taken is None:
                    break
            self.taken = taken
            m.enter(M.BUSY)
            run(taken, stage)
            stage.ctx.seq = None
            m.enter(M.OTHER)
            self.handover(len(taken.batch.keys))
            self.taken = None
        rt.seq = "finish"
        if rt.ckpt is not None:
            rt.ckpt.save(stage)
        for r in rt.role.group[1:]:
            rt.t.send(r, CONTROL, GROUP, ("finish", None))
        self.finals(stage)

    def _batch(self, taken: Taken, stage: Any) -> None:
        b = taken.batch
        keys, values, kinds = b.keys, b.values, b.kinds
        process, ctx = stage.process, stage.ctx
        out = self.out
        has_out = out is not None
        special = self.special
        okeys_a, ovals_a = self.okeys.append, self.ovals.append
        seqs_a, starts_a, ends_a = self.seqs.append, self.starts.append, self.ends.append
        perf = time.perf_counter
        t = perf()
        deadline = self.deadline(t)
        i = 0
        try:
            for i in range(len(keys)):
                key = keys[i]
                if kinds is not None and kinds[i] != ITEM:
                    self._marker(kinds[i], key, values[i])
                    continue
                seq = key[0]
                ctx.seq = seq if seq != FINAL else None
                value = values[i]
                if special:
                    value = self._before(i, seq, value)
                    t = perf()
                r = process(value)
                if special:
                    self._after()
                if r is None or type(r) is GeneratorType:
                    if has_out:
                        self._emit(key, r, seq)
                elif has_out:
                    if self.orows is None:
                        okeys_a(key)
                        ovals_a(r)
                    else:
                        self._add(ITEM, key, r, self.m.log.n + len(self.seqs))
                t2 = perf()
                seqs_a(seq)
                starts_a(t)
                ends_a(t2)
                t = t2
                if t2 >= deadline or (has_out and out.starving):
                    self.handover(i + 1)
                    t = perf()
                    deadline = self.deadline(t)
        except BaseException:
            if i < len(keys) and (kinds is None or kinds[i] == ITEM):
                self.rt.seq = keys[i][0]
            raise

    def _batch_vectorised(self, taken: Taken, stage: Any) -> None:
        """``process_batch`` over the batch's items; stamps spread evenly over the call."""
        b = taken.batch
        keys, values, kinds = b.keys, b.values, b.kinds
        idx = range(len(keys)) if kinds is None else [i for i, k in enumerate(kinds) if k == ITEM]
        if not idx:
            for i in range(len(keys)):
                self._marker(kinds[i], keys[i], values[i])
            return
        rt = self.rt
        items = [values[i] for i in idx]
        if self.special:
            for j, i in enumerate(idx):
                items[j] = self._before(i, keys[i][0], items[j])
        rt.seq = keys[idx[0]][0]
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
        has_out = self.out is not None
        j = 0
        for i in range(len(keys)):
            if kinds is not None and kinds[i] != ITEM:
                self._marker(kinds[i], keys[i], values[i])
                continue
            key, r = keys[i], results[j]
            if has_out:
                if r is None or type(r) is GeneratorType:
                    self._emit(key, r, key[0])
                else:
                    self._add(ITEM, key, r, self.m.log.n + len(self.seqs))
            self.seqs.append(key[0])
            self.starts.append(t0 + j * dt)
            self.ends.append(t0 + (j + 1) * dt)
            j += 1

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
        outs = list(res) if res is not None and self.out is not None else []
        m.enter(prev)
        for i, value in enumerate(outs):
            self._add(ITEM, (FINAL, rt.sp.index, rt.role.replica, i), value, -1)
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
