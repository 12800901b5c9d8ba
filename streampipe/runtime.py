"""The per-rank loop: receive -> process -> send, end of stream, and failure handling.

Data flows one way: an :class:`~streampipe.channel.InPort` yields records in stream order, the
stage processes items, an :class:`~streampipe.channel.OutPort` sends results on. Every wait goes
through the transport's sleeping poll, and every exception ends the whole job within seconds
with one message naming stage, replica, rank and item.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any

from . import metrics as M
from .channel import END, FINAL, ITEM, TOMB, FeedbackIn, InPort, OutPort
from .faults import Fault
from .job import JobSpec, instantiate
from .plan import Plan, Role, make_plan
from .stage import Context, Sink, Source
from .transport import CONTROL, AbortRequested, Backoff, Transport

__all__ = ["RunOptions", "run_rank"]

DONE_EDGE = -3  # rank -> rank 0: metrics and sink result at the end
FINAL_EDGE = -4  # rank 0 -> all: the job's results
FAIL_EDGE = -5  # rank -> rank 0: partial metrics after a failure


@dataclass
class RunOptions:
    """Settings of one run that are not part of the job itself."""

    out: str | None = None
    faults: list[Fault] = field(default_factory=list)
    event_limit: int = 200_000
    max_delay: float = 1e-3  # longest a small record may wait in a send batch
    feedback_limit: int = 4096
    feedback_timeout: float = 300.0
    start_seq: int = 0
    resume_state: Any = None
    checkpoint_every: float = 1.0  # seconds between sink checkpoints
    report: bool = True
    quiet: bool = False
    progress: bool = False


class Progress:
    """A one-line progress display (items done, items/s) written by the sink on long runs.

    Shown only when ``streampipe run`` was started from a terminal (the launcher sets
    STREAMPIPE_PROGRESS=1), from the 2nd second on, refreshed twice a second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t_next = self.t0 + 2.0
        self.shown = False

    def tick(self, items: int, now: float) -> None:
        if now < self.t_next:
            return
        self.t_next = now + 0.5
        self.shown = True
        rate = items / max(now - self.t0, 1e-9)
        sys.stderr.write(f"\r[streampipe] {items} items at the sink, {rate:,.0f} items/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class RankRuntime:
    """Runs one rank's part of the plan."""

    def __init__(self, spec: JobSpec, plan: Plan, comm: Any, opts: RunOptions) -> None:
        self.spec, self.plan, self.comm, self.opts = spec, plan, comm, opts
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.role: Role = plan.role(self.rank)
        self.sp = plan.stages[self.role.stage]
        self.sspec = spec.stages[self.role.stage]
        self.m = M.Recorder(opts.event_limit)
        self.t = Transport(comm, on_transfer=self.m.add_transfer)
        self.host = socket.gethostname()
        self.seq: Any = "setup"
        self.item_t0: float | None = None
        self.ema = 0.0
        self.markers = plan.markers[self.role.stage]
        self.faults = [f for f in opts.faults if f.stage == self.sp.name and
                       (f.replica is None or f.replica == self.role.replica)]
        self._control: list[Any] = []
        self._done: dict[int, Any] = {}
        # control messages can arrive at any time, even before this rank has opened its ports
        # (a rank failing in setup still reports to rank 0)
        handlers = self.t.handlers
        handlers[Plan.GROUP_EDGE] = lambda src, kind, payload: self._control.append(payload)
        handlers[FINAL_EDGE] = lambda src, kind, payload: self._control.append(payload)
        handlers[DONE_EDGE] = lambda src, kind, payload: self._done.__setitem__(src, payload)
        handlers[FAIL_EDGE] = lambda src, kind, payload: self._done.__setitem__(src, payload)
        self._last_poll = 0.0
        self.inp: InPort | None = None
        self.out: OutPort | None = None
        self.fb_out: OutPort | None = None
        self.fb_in: FeedbackIn | None = None
        self.progress = (Progress() if opts.progress and self.sp.kind == "sink"
                         and self.role.replica == 0 and self.role.is_root else None)
        # watermark of a single-replica feedback producer with ordered input (see plan.py)
        self.fb_watermarks = plan.sends_watermark(self.sp.index)
        self.fb_mark = self.fb_mark_sent = -1
        self.to_wire: Any = None  # device arrays -> host before sending (GPU stages)
        self.from_wire: Any = None  # host arrays -> device after receiving (GPU stages)

    # ------------------------------------------------------------------ setup
    def _open_ports(self) -> None:
        role, plan, sp = self.role, self.plan, self.sp
        t, m = self.t, self.m
        if role.upstream:
            self.inp = InPort(t, plan.data_edge(sp.index), role.upstream, sp.capacity,
                              merge=plan.merge_kind(sp.index),
                              start_seq=plan.start_seq, on_arrival=m.arrived)
        if role.downstream:
            nxt = plan.stages[sp.index + 1]
            self.out = OutPort(t, plan.data_edge(nxt.index), role.downstream, nxt.capacity,
                               plan.batch, m.edge(nxt.name))
        if role.feedback_out:
            target = plan.stages[sp.feedback_to]
            self.fb_out = OutPort(t, plan.feedback_edge(sp.index), role.feedback_out,
                                  self.opts.feedback_limit, plan.batch,
                                  m.edge(f"feedback:{target.name}"), broadcast=True)
        if role.feedback_in:
            src = next(s for s in plan.stages if s.feedback_to == sp.index)
            self.fb_in = FeedbackIn(t, plan.feedback_edge(src.index), role.feedback_in,
                                    self.opts.feedback_limit, sp.name)

    def _make_stage(self) -> Any:
        from .gpu import gpu_node_rank, resolve_device

        sp = self.sp
        stage = instantiate(self.sspec, f"stages[{sp.index}]")
        # collective (a split of the world by node): every rank calls it once, GPU stage or not
        self.t.join_node()
        # GPUs are dealt out over the node's GPU-stage ranks only (collective too)
        local = gpu_node_rank(self.comm, {r for s in self.plan.stages if s.device != "cpu"
                                          for r in s.ranks})
        device, xp = resolve_device(sp.device, local, sp.name,
                                    log=self.role.replica == 0 and self.role.is_root)
        from mpi4py import MPI

        # Split is collective: every rank takes part, single-rank stages get COMM_NULL back
        color = sp.index * 100_000 + self.role.replica if sp.group > 1 else MPI.UNDEFINED
        sub = self.comm.Split(color=color, key=self.rank)
        if sub == MPI.COMM_NULL:
            sub = None
        ctx = Context(params=dict(self.sspec.params), stage=sp.name, replica=self.role.replica,
                      replicas=sp.replicas, rank=self.rank, size=self.size, device=device, xp=xp,
                      comm=sub, group_rank=self.role.group_rank, _runtime=self)
        stage.ctx = ctx
        if device == "gpu":
            from .gpu import wire_hooks

            self.to_wire, self.from_wire = wire_hooks(ctx)
        return stage

    # ------------------------------------------------------------------ waits
    def flush(self) -> None:
        """Send everything batched and return every owed credit (before any wait)."""
        for port in (self.out, self.fb_out):
            if port is not None:
                port.flush()
        if self.inp is not None:
            self.inp.flush_credits()

    def _wait(self, until: Any, state: int, what: str) -> None:
        if self.fb_mark > self.fb_mark_sent and state == M.STARVED and self.fb_out.has_credit():
            # idle feedback producer: tell the consumers how far the stream has got
            self.fb_mark_sent = self.fb_mark
            self.fb_out.put((TOMB, (self.fb_mark,), None))
        self.flush()
        prev = self.m.enter(state)
        # the per-item timeout measures the stage's own time: a wait for credit (a slow stage
        # downstream) or for feedback must not count, or the wrong stage would be blamed
        t_item, self.item_t0 = self.item_t0, None
        t_wait = time.perf_counter()
        try:
            self.t.wait(until, what=what)
        finally:
            self.m.enter(prev)
            if t_item is not None:
                self.item_t0 = t_item + (time.perf_counter() - t_wait)

    def _emit(self, port: OutPort, rec: tuple) -> None:
        if self.to_wire is not None and rec[0] == ITEM:
            rec = (ITEM, rec[1], self.to_wire(rec[2]))
        if not port.has_credit():
            self._wait(port.has_credit, M.BLOCKED, "waiting for credit")
        port.put(rec)

    def _next(self) -> tuple[float, tuple] | None:
        inp = self.inp
        got = inp.next()
        if got is not None:
            return got
        box: list = []

        def ready() -> bool:
            g = inp.next()
            if g is not None:
                box.append(g)
                return True
            return inp.exhausted

        self._wait(ready, M.STARVED, "waiting for input")
        return box[0] if box else None

    def _tick(self, now: float) -> None:
        # a rank that never waits still has to see credits, data and aborts
        if now - self._last_poll > 1e-3:
            self._last_poll = now
            self.t.poll()

    # ------------------------------------------------------------------ feedback API
    def send_feedback(self, seq: int | None, value: Any) -> None:
        if self.fb_out is None:
            raise RuntimeError(f"stage {self.sp.name!r} called ctx.send_feedback() but has no "
                               "feedback_to in the job")
        if seq is None:
            raise RuntimeError("ctx.send_feedback() may only be called inside process()")
        self._emit(self.fb_out, (ITEM, (seq,), value))

    def wait_feedback(self, current: int | None, seq: int) -> Any:
        fb = self.fb_in
        if fb is None:
            raise RuntimeError(f"stage {self.sp.name!r} called ctx.feedback() but no stage has "
                               f"feedback_to = {self.sp.name!r}")
        if current is not None and seq >= current:
            raise RuntimeError(f"item {current} depends on feedback of item {seq}, which is not "
                               "earlier in the stream: dependencies must point backwards (a cycle)")
        if seq not in fb.values:
            # charged as blocked: like a missing credit, a later stage holds this one back
            deadline = time.perf_counter() + self.opts.feedback_timeout
            self._wait(lambda: seq in fb.values or fb.exhausted or fb.watermark >= seq
                       or time.perf_counter() > deadline, M.BLOCKED, "waiting for feedback")
            if seq not in fb.values:
                if fb.exhausted:
                    why = "its producer finished without sending it"
                elif fb.watermark >= seq:
                    why = ("its producer has handled that item without sending feedback for it "
                           "(dropped before reaching it, or no ctx.send_feedback call)")
                else:
                    why = f"it did not come within {self.opts.feedback_timeout:.0f} s"
                raise RuntimeError(f"item {current} waits for feedback of item {seq}, but {why}")
        return fb.values[seq]

    def release_feedback(self, seq: int) -> None:
        if self.fb_in is not None:
            self.fb_in.values.pop(seq, None)

    # ------------------------------------------------------------------ main loops
    def run(self) -> Any:
        self._open_ports()
        self.stage = stage = self._make_stage()
        self._start_watchdog()
        stage.setup(stage.ctx)
        self.seq = None
        self.ckpt = None
        if isinstance(stage, Sink) and self.spec.checkpoint:
            from .resume import Checkpointer

            self.ckpt = Checkpointer(self.opts.out, self.plan.start_seq, self.opts.checkpoint_every)
            if self.opts.resume_state is not None:
                stage.restore(self.opts.resume_state)
        if not self.role.is_root:
            self._run_member(stage)
        elif isinstance(stage, Source):
            self._run_source(stage)
        else:
            self._run_stage(stage)
        if self.progress is not None:
            self.progress.close()
        if stage.ctx.device == "gpu":
            from .gpu import record_gpu_memory

            record_gpu_memory(self.m.extra, stage.ctx.xp)
        self.seq = "shutdown"
        self._shutdown()
        return stage.result() if isinstance(stage, Sink) and self.role.is_root else None

    def _check_fault(self, seq: int) -> None:
        for f in self.faults:
            f.trigger(seq)

    def _run_source(self, src: Source) -> None:
        m = self.m
        seq = self.plan.start_seq
        if seq:
            src.seek(seq)
        stride, offset = self.sp.replicas, self.role.replica
        gen = iter(src.generate())
        perf = time.perf_counter
        while True:
            key = seq * stride + offset
            self.seq = key
            t0 = perf()
            m.enter(M.BUSY)
            self.item_t0 = t0
            if self.faults:  # inside the timed region, so the watchdog sees an injected sleep
                self._check_fault(key)
            try:
                value = next(gen)
            except StopIteration:
                m.enter(M.OTHER)
                self.item_t0 = None
                break
            self.item_t0 = None
            t1 = perf()
            m.enter(M.OTHER)
            m.arrived(1, t0)
            self._emit(self.out, (ITEM, (key,), value))
            m.items_out += 1
            t2 = perf()
            m.item(key, t0, t0, t1, t2)
            self._after_item(t1 - t0, t2)
            seq += 1
        self.seq = "finish"
        if self.markers:
            self._emit(self.out, (END, (), seq))
        self._emit_finals(src)

    def _run_stage(self, stage: Any) -> None:
        m = self.m
        out = self.out
        markers = self.markers
        perf = time.perf_counter
        group = self.role.group[1:]
        while True:
            got = self._next()
            if got is None:
                break
            t_recv, rec = got
            kind, key, value = rec
            if self.fb_watermarks:
                # a key of length 1 is complete once handled, a fan-out child is not, and the
                # source's END((), n) completes everything before n
                done = value - 1 if not key else key[0] if len(key) == 1 else key[0] - 1
                if done > self.fb_mark and done != FINAL:
                    self.fb_mark = done
            if kind != ITEM:
                if out is not None and markers:
                    self._emit(out, rec)
                continue
            seq = key[0]
            self.seq = seq
            stage.ctx.seq = seq if seq != FINAL else None
            if self.from_wire is not None:
                value = self.from_wire(value)
            for r in group:
                self.t.send(r, CONTROL, Plan.GROUP_EDGE, ("item", seq))
            t0 = perf()
            m.enter(M.BUSY)
            self.item_t0 = t0
            if self.faults:  # inside the timed region, so the watchdog sees an injected sleep
                self._check_fault(seq)
            result = stage.process(value)
            if isinstance(result, GeneratorType):
                n = 0
                for child in result:
                    m.enter(M.OTHER)
                    if out is not None:
                        self._emit(out, (ITEM, key + (n,), child))
                        m.items_out += 1
                    n += 1
                    m.enter(M.BUSY)
                t1 = perf()
                m.enter(M.OTHER)
                if out is not None and markers and seq != FINAL:
                    self._emit(out, (END, key, n))
            else:
                t1 = perf()
                m.enter(M.OTHER)
                if out is not None:
                    if result is not None:
                        self._emit(out, (ITEM, key, result))
                        m.items_out += 1
                    elif markers and seq != FINAL:
                        self._emit(out, (TOMB, key, None))
            self.item_t0 = None
            stage.ctx.seq = None
            t2 = perf()
            m.item(seq, t_recv, t0, t1, t2)
            self._after_item(t1 - t0, t2)
            if self.ckpt is not None:
                self.ckpt.consumed(key, stage, t2)
        self.seq = "finish"
        if self.ckpt is not None:
            self.ckpt.save(stage)
        for r in group:
            self.t.send(r, CONTROL, Plan.GROUP_EDGE, ("finish", None))
        self._emit_finals(stage)

    def _run_member(self, stage: Any) -> None:
        """A non-root rank of a group stage: run process(None) in step with the root."""
        ctl = self._control
        m = self.m
        while True:
            if not ctl:
                self._wait(lambda: bool(ctl), M.STARVED, "waiting for the group root")
            what, seq = ctl.pop(0)
            if what == "finish":
                break
            self.seq = seq
            stage.ctx.seq = seq
            prev = m.enter(M.BUSY)
            stage.process(None)
            m.enter(prev)
        self.seq = "finish"
        res = stage.finish()
        if isinstance(res, GeneratorType):
            for _ in res:
                pass

    def _emit_finals(self, stage: Any) -> None:
        m = self.m
        prev = m.enter(M.BUSY)
        res = stage.finish()
        m.enter(prev)
        if res is not None and self.out is not None:
            for i, value in enumerate(res):
                self._emit(self.out, (ITEM, (FINAL, self.sp.index, self.role.replica, i), value))
                m.items_out += 1

    def _after_item(self, dt: float, now: float) -> None:
        self.ema += 0.1 * (dt - self.ema)
        out = self.out
        if out is not None and out.pending and (
                now - out.t_first + self.ema >= self.opts.max_delay):
            out.flush()
        if self.fb_out is not None and self.fb_out.pending:
            self.fb_out.flush()
        self._tick(now)
        if self.progress is not None:
            self.progress.tick(self.m.items_in, now)

    # ------------------------------------------------------------------ end of stream
    def _shutdown(self) -> None:
        for port in (self.out, self.fb_out):
            if port is not None:
                port.put_eos()
        inp, fb = self.inp, self.fb_in

        def done() -> bool:
            return all((
                self.out is None or self.out.done,
                self.fb_out is None or self.fb_out.done,
                inp is None or inp.exhausted,
                fb is None or fb.exhausted,
            ))

        def drain() -> None:
            if fb is not None:
                fb.values.clear()
            while inp is not None and inp.next() is not None:
                pass

        self._wait(lambda: (drain(), done())[1], M.OTHER, "waiting for end of stream")
        self._wait(lambda: not self.t.sends_pending, M.OTHER, "waiting for sends")

    # ------------------------------------------------------------------ watchdog
    def _start_watchdog(self) -> None:
        limit = self.sp.timeout
        if not limit:
            return

        def watch() -> None:
            while True:
                time.sleep(min(0.2, limit / 4))
                t0 = self.item_t0
                if t0 is not None and time.perf_counter() - t0 > limit:
                    msg = self.describe(f"item took longer than timeout = {limit:g} s")
                    print(msg, file=sys.stderr, flush=True)
                    self.comm.Abort(1)

        threading.Thread(target=watch, daemon=True, name="streampipe-watchdog").start()

    def describe(self, what: str) -> str:
        sp = self.sp
        item = f"item seq {self.seq}" if isinstance(self.seq, int) else f"{self.seq or 'idle'}"
        return (f"streampipe: stage {sp.name!r} (replica {self.role.replica} of {sp.replicas}) "
                f"on rank {self.rank} ({self.host}) failed at {item}: {what}")


def _stats(rt: RankRuntime) -> dict[str, Any]:
    d = rt.m.dump()
    d.update(rank=rt.rank, stage=rt.sp.name, stage_index=rt.sp.index, replica=rt.role.replica,
             group_rank=rt.role.group_rank, host=rt.host, cpus=os.cpu_count() or 0,
             bytes_sent=rt.t.bytes_sent, bytes_received=rt.t.bytes_received,
             messages_sent=rt.t.messages_sent, messages_received=rt.t.messages_received)
    return d


def run_rank(spec: JobSpec, comm: Any, opts: RunOptions | None = None) -> Any:
    """Run this rank's part of ``spec``; return the sink's result (on every rank).

    On failure anywhere, every rank ends the process with a non-zero exit (MPI_Abort) after the
    failing rank has printed one message naming stage, replica, rank and item.
    """
    opts = opts or RunOptions()
    plan = make_plan(spec, start_seq=opts.start_seq)
    size, rank = comm.Get_size(), comm.Get_rank()
    if size != plan.size:
        # every rank says it: under a batch system each rank's stderr may land in its own file
        print(f"streampipe: rank {rank}: job {spec.name!r} needs {plan.size} ranks (sum of "
              f"replicas x group over its stages) but was started with {size}",
              file=sys.stderr, flush=True)
        raise SystemExit(2)
    rt = RankRuntime(spec, plan, comm, opts)
    try:
        result = rt.run()
    except AbortRequested as exc:
        _fail(rt, None, exc.source, exc.message)
    except BaseException as exc:  # noqa: BLE001 - includes sys.exit() inside a stage
        _fail(rt, exc, rank)
    finally:
        try:
            rt.stage.close()
        except Exception:  # noqa: BLE001
            pass
    return _finish(rt, result)


def _finish(rt: RankRuntime, result: Any) -> Any:
    """Collect every rank's metrics and results on rank 0, write the run file, share results."""
    rt.m.close()
    stats = _stats(rt)
    t, ctl = rt.t, rt._control
    payload = (stats, rt.sp.kind == "sink" and rt.role.is_root, result)
    if rt.rank == 0:
        got = rt._done
        got[0] = payload
        t.wait(lambda: len(got) == rt.size, what="collecting results")
        ranks = [got[r][0] for r in range(rt.size)]
        results = [got[r][2] for r in range(rt.size) if got[r][1]]
        final = results[0] if len(results) == 1 else results
        from .runfile import finish_run

        finish_run(rt.spec, rt.plan, rt.opts, ranks, status="ok", error=None, result=final)
        for r in range(1, rt.size):
            t.send(r, CONTROL, FINAL_EDGE, final)
    else:
        t.send(0, CONTROL, DONE_EDGE, payload)
        t.wait(lambda: bool(ctl), what="waiting for the job's result")
        final = ctl.pop()
    t.drain_sends()
    return final


def _fail(rt: RankRuntime, exc: BaseException | None, failed_rank: int,
          remote_message: str = "") -> None:
    """Stop the job: print (if this rank failed), save what we have, and abort everyone."""
    rt.m.close()
    if getattr(exc, "item_seq", None) is not None:
        rt.seq = exc.item_seq  # a batched send fails after later items: name the item at fault
    if isinstance(exc, KeyboardInterrupt):
        # Ctrl-C reaches every rank at once: one short line, not a traceback per rank
        msg = "streampipe: interrupted (Ctrl-C)"
        if rt.rank == 0:
            print(msg, file=sys.stderr, flush=True)
        rt.t.abort_others(msg, rt.size)
    elif exc is not None:
        if isinstance(exc, SystemExit):
            what = f"SystemExit({exc.code!r}) raised in the stage"
        else:
            what = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc))
        msg = rt.describe(what)
        print(f"{msg}\n{tb}", file=sys.stderr, flush=True)
        rt.t.abort_others(msg, rt.size)
    else:
        msg = f"stopped because rank {failed_rank} failed"
    stats = _stats(rt)
    t = rt.t
    grace = 2.0
    if rt.rank == 0:
        got = rt._done
        got[0] = stats
        deadline = time.perf_counter() + grace
        bo = Backoff()
        while len(got) < rt.size and time.perf_counter() < deadline:
            try:
                if not t.poll():
                    bo.pause()
            except AbortRequested:
                pass
            except Exception:  # noqa: BLE001 - stray messages of the dead run
                pass
        try:
            from .runfile import finish_run

            err = msg if exc is not None else remote_message or f"rank {failed_rank} failed"
            ranks = [got[r][0] if isinstance(got.get(r), tuple) else got.get(r)
                     for r in range(rt.size)]
            finish_run(rt.spec, rt.plan, rt.opts, ranks,
                       status="failed", error=err, result=None)
        except Exception as werr:  # noqa: BLE001
            print(f"streampipe: could not write the run file: {werr}", file=sys.stderr, flush=True)
    else:
        try:
            t.send(0, CONTROL, FAIL_EDGE, stats)
        except Exception:  # noqa: BLE001
            pass
        time.sleep(grace + 3.0)  # rank 0 aborts everyone once the run file is written
    sys.stderr.flush()
    rt.comm.Abort(1)
