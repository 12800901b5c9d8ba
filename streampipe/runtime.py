"""One rank's part of a stream job: set up, run the stage loop, end the stream, report.

Data flows one way: an :class:`~streampipe.channel.InPort` hands batches of records to the stage
loop (:mod:`streampipe.loops`), which sends outputs on through an
:class:`~streampipe.channel.OutPort`. Every wait goes through :meth:`RankRuntime.wait` (hand over
what is done, send everything batched, return owed credits, then the transport's sleeping poll),
and every exception ends the whole job within seconds with one message naming stage, replica,
rank and item. The end-of-run collection is :mod:`streampipe.collect`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from . import config
from . import metrics as M
from .abort import abort
from .channel import FeedbackIn, InPort, OutPort, Taken
from .collect import Collector
from .edges import GROUP, LIVE, data_edge, feedback_edge
from .faults import Fault
from .feedback import Feedback
from .finish import finish_run, rank_record
from .gpu import gpu_node_rank, record_gpu_memory, resolve_device, wire_hooks
from .job import JobSpec, instantiate, resolve_uses
from .keyshare import sparse
from .live import LiveCollector, LiveSender, live_path
from .loops import Loop
from .plan import Plan, Role, make_plan
from .resume import Checkpointer, ResumePoint, identity
from .routing import BUCKETS, key_hash
from .stage import Context, Sink, Source
from .staging import Staging
from .startup import stamp, stamps
from .transport import CONTROL, AbortRequested, Transport, WaitHistory

__all__ = ["RunOptions", "run_rank", "resolve_options"]


@dataclass
class RunOptions:
    """Settings of one run that are not part of the job itself.

    The knobs left at None are resolved at the start of the run (:func:`streampipe.config.
    resolve_run`): a value given here beats the job file, which beats the environment."""

    out: str | None = None
    faults: list[Fault] = field(default_factory=list)
    event_limit: int | None = None
    max_delay: float | None = None  # seconds
    feedback_limit: int | None = None
    feedback_timeout: float | None = None  # seconds
    checkpoint_every: float | None = None  # seconds between sink checkpoints
    spin_us: float | None = None
    recv: str | None = None
    live: bool | None = None
    resume: ResumePoint = field(default_factory=ResumePoint)  # --resume: where each part starts
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
        self.max_delay = plan.max_delay
        self.faults = [f for f in opts.faults if f.stage == self.sp.name and
                       (f.replica is None or f.replica == self.role.replica)]
        # control messages can arrive at any time, even before this rank has opened its ports
        # (a rank failing in setup still reports to rank 0)
        self.collector = Collector(self.t, self.size)
        self.control: list[Any] = []
        self.t.register(GROUP, lambda src, kind, payload: self.control.append(payload))
        self.inp: InPort | None = None
        self.outs: list[OutPort] = []
        # items sent per key bucket, per receiving stage routed by key (docs/graphs.md)
        self.key_buckets: dict[str, list[int]] = {}
        # the state of the wait this rank is in (None: not waiting); an upstream's progress mark
        # that arrives during any wait is passed on (see _input_progress)
        self.waiting: int | None = None
        # the stream's recurring waits, each with its own history (transport.WaitHistory)
        self.histories = {M.STARVED: WaitHistory(), M.BLOCKED: WaitHistory()}
        self.feedback: Feedback | None = None
        self.staging: Any = None  # host <-> device staging of a GPU stage (staging.py)
        self.ckpt: Any = None
        self.loop: Loop | None = None
        self.stage: Any = None
        # the live view (with a run file): a snapshot a second from every rank to rank 0, which
        # writes one record a second to RUN.h5.live.jsonl
        self.live_in: LiveCollector | None = None
        self.live_out: LiveSender | None = None
        if opts.out and opts.live:
            if self.rank == 0:
                live = self.live_in = LiveCollector(plan, live_path(opts.out), self.m.wall0)
                self.t.register(LIVE, lambda src, kind, snap: live.receive(src, snap))
                self.live_out = LiveSender(self.m, lambda snap: live.receive(0, snap))
            else:
                self.live_out = LiveSender(
                    self.m, lambda snap: self.t.send(0, CONTROL, LIVE, snap))
        self.progress = (Progress() if opts.progress and self.sp.kind == "sink"
                         and self.role.replica == 0 and self.role.is_root else None)

    # ------------------------------------------------------------------ setup
    def _open_ports(self) -> None:
        role, plan, sp = self.role, self.plan, self.sp
        t, m = self.t, self.m
        if role.inputs:
            # a zip stage counts the items it forms, not the records it gets
            self.inp = InPort(t, [(data_edge(e), rs) for e, rs in role.inputs],
                              capacity=sp.capacity, merge=plan.merge_kind(sp.index),
                              on_arrival=None if sp.join == "zip" else m.arrived,
                              join=sp.join is not None)
            self.inp.on_progress = self._input_progress
        marks = plan.reads_marks(self.spec.checkpoint)
        for e, dests in role.outputs:
            nxt = plan.stages[plan.edges[e].dst]
            buckets = (self.key_buckets.setdefault(nxt.name, [0] * BUCKETS)
                       if nxt.route == "key" else None)
            self.outs.append(OutPort(t, data_edge(e), dests, nxt.capacity, plan.batch,
                                     m.edge(nxt.name), max_delay=self.max_delay,
                                     on_sent=m.sent, progress=marks[nxt.index],
                                     route=self._route(nxt), buckets=buckets))
        fb_out = fb_in = None
        if role.feedback_out:
            target = plan.stages[sp.feedback_to]
            fb_out = OutPort(t, feedback_edge(sp.index), role.feedback_out,
                             self.opts.feedback_limit, plan.batch,
                             m.edge(f"feedback:{target.name}"), broadcast=True)
        if role.feedback_in:
            src = next(s for s in plan.stages if s.feedback_to == sp.index)
            fb_in = FeedbackIn(t, feedback_edge(src.index), role.feedback_in,
                               self.opts.feedback_limit, sp.name)
        if fb_out is not None or fb_in is not None:
            self.feedback = Feedback(sp.name, fb_out, fb_in, plan.sends_watermark(sp.index),
                                     self.opts.feedback_timeout, self.wait)

    def _route(self, st: Any) -> Any:
        """``route(key, value) -> routing hash`` into stage ``st``, whose replica is the hash
        modulo its replicas (None: by credit). A key-routed stage gets one even with a single
        replica: its sender counts the key buckets (what the simulator replays at any count)."""
        if st.route == "key":
            fn = self.spec.stages[st.index].key
            if not callable(fn):
                sspec = self.spec.stages[st.index]
                fn = resolve_uses(fn, f"stages[{st.index}].key", base=sspec.base or self.spec.path)
            return lambda key, value: key_hash(fn(value))
        if st.join == "zip" and st.replicas > 1:  # a source item's records meet on one replica
            return lambda key, value: key_hash(key[0])
        return None

    def _make_stage(self) -> Any:
        sp = self.sp
        stage = instantiate(self.sspec, f"stages[{sp.index}]")
        # collective (a split of the world by node): every rank calls it once, GPU stage or not
        self.t.join_node(self.opts.spin_us, self.opts.recv)
        self.m.extra.update(self.t.waits.as_dict())
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
            self.staging = Staging(wire_hooks(ctx), self.m)
            if self.feedback is not None and self.feedback.inp is not None:
                self.feedback.inp.convert = self.staging.inbound
        return stage

    # ------------------------------------------------------------------ waits
    def flush(self) -> None:
        """Send everything batched and return every owed credit (before any wait)."""
        loop = self.loop
        if loop is not None:
            loop.set_marks()
        for out in self.outs:
            out.flush()
        if self.feedback is not None and self.feedback.out is not None:
            self.feedback.out.flush()
        if self.inp is not None:
            self.inp.flush_credits()
        self.m.settle(loop.oldest_row() if loop is not None else None)

    def _input_progress(self) -> None:
        """An upstream said how far it got: pass it on while this rank waits (its own receivers
        may be waiting for exactly that). Not only a wait for input: a replica waiting inside
        process() for feedback has handed its earlier items over, and its mark is the item it
        is on; a merge after it needs that mark to take the item the feedback waits for."""
        if self.waiting is not None and self.loop is not None:
            self.loop.set_marks()
            for out in self.outs:
                out.flush()
            fb = self.feedback
            if fb is not None:
                fb.before_wait(self.waiting, self.loop.mark())
                if fb.out is not None:
                    fb.out.flush()  # the consumer may be waiting for exactly this watermark

    def wait(self, until: Any, state: int, what: str) -> None:
        """Wait (charged to ``state``) until ``until()``, keeping communication going."""
        if self.loop is not None:
            self.loop.before_wait()
        if self.feedback is not None and self.loop is not None:
            self.feedback.before_wait(state, self.loop.mark())
        self.flush()
        prev = self.m.enter(state)
        # the per-item timeout measures the stage's own time: a wait for credit (a slow stage
        # downstream) or for feedback must not count, or the wrong stage would be blamed
        t_item, self.item_t0 = self.item_t0, None
        t_wait = time.perf_counter()
        if self.live_out is not None:
            cond = until

            def until() -> bool:  # a waiting rank still reports once a second
                self._live(time.perf_counter())
                return cond()
        outer, self.waiting = self.waiting, state
        try:
            self.t.wait(until, what=what, history=self.histories.get(state))
        finally:
            self.waiting = outer
            self.m.enter(prev)
            if t_item is not None:
                self.item_t0 = t_item + (time.perf_counter() - t_wait)

    def wait_input(self, held: Callable[[], Taken | None] | None = None) -> Taken | None:
        """Wait for the next records (starved); None at the end of the stream. ``held``: items
        the stage holds back that an upstream's progress can release (a zip's groups)."""
        inp, box = self.inp, []

        def ready() -> bool:
            got = inp.take(self.plan.batch)
            if got is None and held is not None:
                got = held()
            if got is not None:
                box.append(got)
                return True
            return inp.exhausted

        self.wait(ready, M.STARVED, "waiting for input")
        return box[0] if box else None

    def tick(self, now: float) -> None:
        """Between batches: take in credits, data and aborts (a rank that never waits too)."""
        self.t.poll()
        if self.live_out is not None:
            self._live(now)
        if self.progress is not None:
            self.progress.tick(self.m.items_in, now)

    def _live(self, now: float) -> None:
        self.live_out.tick(now)
        if self.live_in is not None:
            self.live_in.tick(self.m.wall0 + (now - self.m.t0))

    # ------------------------------------------------------------------ feedback API (ctx)
    def _feedback(self) -> Feedback:
        if self.feedback is None:
            raise RuntimeError(f"stage {self.sp.name!r} has no feedback edge: give it "
                               "feedback_to (to send) or name it in a later stage's feedback_to "
                               "(to receive)")
        return self.feedback

    def send_feedback(self, seq: int | None, value: Any) -> None:
        fb = self._feedback()
        if self.staging is not None:  # device arrays go home first, like data values
            self.staging.done()
            value = self.staging.outbound([value])[0]
        fb.send(seq, value)

    def wait_feedback(self, current: int | None, seq: int) -> Any:
        return self._feedback().wait_for(current, seq)

    def release_feedback(self, seq: int) -> None:
        if self.feedback is not None:
            self.feedback.release(seq)

    # ------------------------------------------------------------------ the run
    def run(self) -> Any:
        self._open_ports()
        self.stage = stage = self._make_stage()
        stamp("node")  # ports open, node discovery and device choice done (collectives)
        self._start_watchdog()
        stage.setup(stage.ctx)
        stamp("ready")
        self.seq = None
        if isinstance(stage, Sink) and self.spec.checkpoint:
            name = self.sp.name
            hwm, state = self.opts.resume.sinks.get(name, (self.plan.start_seq, None))
            one = len(self.plan.sinks) == 1
            self.ckpt = Checkpointer(self.opts.out, None if one else name, hwm,
                                     self.opts.checkpoint_every, identity(self.spec))
            if state is not None:
                stage.restore(state)
            # at once: a resume finds a checkpoint of every sink, even of one that had not
            # consumed anything yet when another failed (the first mark is saved at once too)
            self.ckpt.save(stage)
        self.loop = loop = Loop(self)
        if not self.role.is_root:
            loop.run_member(stage)
        elif isinstance(stage, Source):
            loop.run_source(stage)
        else:
            loop.run_stage(stage)
        if self.progress is not None:
            self.progress.close()
        if stage.ctx.device == "gpu":
            record_gpu_memory(self.m.extra, stage.ctx.xp)
        self.seq = "shutdown"
        self._shutdown()
        return stage.result() if isinstance(stage, Sink) and self.role.is_root else None

    def _shutdown(self) -> None:
        fb = self.feedback
        outs = self.outs + ([fb.out] if fb is not None and fb.out is not None else [])
        if self.loop is not None:
            self.loop.set_marks()
        for port in outs:
            port.put_eos()
        inp, fb_in = self.inp, fb.inp if fb else None

        def done() -> bool:
            if fb_in is not None:
                fb_in.values.clear()
            return (all(p.done for p in outs) and (inp is None or inp.exhausted)
                    and (fb_in is None or fb_in.exhausted))

        self.wait(done, M.OTHER, "waiting for end of stream")
        self.wait(lambda: not self.t.sends_pending, M.OTHER, "waiting for sends")

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
                    abort(self.comm)

        threading.Thread(target=watch, daemon=True, name="streampipe-watchdog").start()

    def describe(self, what: str) -> str:
        sp = self.sp
        item = f"item seq {self.seq}" if isinstance(self.seq, int) else f"{self.seq or 'idle'}"
        return (f"streampipe: stage {sp.name!r} (replica {self.role.replica} of {sp.replicas}) "
                f"on rank {self.rank} ({self.host}) failed at {item}: {what}")

    def stats(self) -> dict[str, Any]:
        """What this rank measured, as the run file stores it."""
        d = self.m.dump()
        t = self.t
        d.update(rank=self.rank, stage=self.sp.name, stage_index=self.sp.index,
                 replica=self.role.replica, group_rank=self.role.group_rank, host=self.host,
                 cpus=os.cpu_count() or 0, bytes_sent=t.bytes_sent,
                 bytes_received=t.bytes_received, messages_sent=t.messages_sent,
                 messages_received=t.messages_received, startup=stamps())
        if self.key_buckets:
            d["key_buckets"] = {k: sparse(v) for k, v in self.key_buckets.items()}
        return d


def resolve_options(opts: RunOptions, spec: JobSpec) -> RunOptions:
    """``opts`` with every knob it leaves at None resolved (job file > environment > default);
    a bad value is a :class:`~streampipe.config.ConfigError` naming the setting."""
    given = {n: getattr(opts, n) for n in config.RUN_SETTINGS}
    return replace(opts, **config.resolve_run(given, spec.settings))


def run_rank(spec: JobSpec, comm: Any, opts: RunOptions | None = None) -> Any:
    """Run this rank's part of ``spec``; return the sink's result (on every rank).

    On failure anywhere, every rank ends the process with a non-zero exit (MPI_Abort) after the
    failing rank has printed one message naming stage, replica, rank and item.
    """
    opts = resolve_options(opts or RunOptions(), spec)
    plan = make_plan(spec, start_seq=opts.resume.start, max_delay=opts.max_delay)
    size, rank = comm.Get_size(), comm.Get_rank()
    if size != plan.size:
        # every rank says it: under a batch system each rank's stderr may land in its own file
        # one write per line: several ranks' lines interleave on a shared stderr otherwise
        sys.stderr.write(f"streampipe: rank {rank}: job {spec.name!r} needs {plan.size} ranks "
                         f"(sum of replicas x group over its stages) but was started with "
                         f"{size}\n")
        sys.stderr.flush()
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
    try:
        return _finish(rt, result)
    except AbortRequested as exc:
        # a rank that finished its stream early (a source) learns of a later failure here
        _fail(rt, None, exc.source, exc.message)
    except BaseException as exc:  # noqa: BLE001 - the others wait for this rank: never leave
        _fail(rt, exc, rank)


def _finish(rt: RankRuntime, result: Any) -> Any:
    """Collect every rank's metrics and results on rank 0, write the run file, share results."""
    rt.m.close()
    wait = lambda until, what: rt.t.wait(until, what=what)  # noqa: E731
    record = rank_record(rt.stats(), rt.opts.out, rt.rank)
    sink = rt.sp.name if rt.sp.kind == "sink" and rt.role.is_root else None
    got = rt.collector.gather((record, sink, result), wait)
    final = None
    if got is not None:
        final = _results(rt.plan, [(g[1], g[2]) for g in got])
        finish_run(rt.spec, rt.plan, rt.opts, [g[0] for g in got], status="ok", error=None,
                   result=final, live=rt.live_in)
    final = rt.collector.share(final, wait)
    rt.t.drain_sends()
    rt.t.close()
    return final


def _results(plan: Plan, got: list[tuple[str | None, Any]]) -> Any:
    """The job's result: the sink's (a list over its replicas when it has several); with
    several sinks, a dict sink name -> that."""
    per: dict[str, list[Any]] = {}
    for name, res in got:
        if name is not None:
            per.setdefault(name, []).append(res)
    one = {k: v[0] if len(v) == 1 else v for k, v in per.items()}
    if len(one) == 1:
        return next(iter(one.values()))
    return {s.name: one.get(s.name) for s in plan.sinks}


def _fail(rt: RankRuntime, exc: BaseException | None, failed_rank: int,
          remote_message: str = "") -> NoReturn:
    """Stop the job: print (if this rank failed), save what we have, and abort everyone.

    Never returns: after ``MPI_Abort`` (which ends the process) it raises SystemExit, so a
    caller can never fall through to the normal end of the run."""
    if threading.current_thread() is threading.main_thread():
        # stopping already: a later SIGINT (mpiexec passes Ctrl-C on after the terminal did, or
        # arrives after rank 0's "interrupted") must not cut the partial run file short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if rt.loop is not None:
        rt.loop.abandon()  # the items of a partly finished batch are recorded too
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
    grace = 2.0
    try:
        record = rank_record(rt.stats(), rt.opts.out, rt.rank)
    except Exception:  # noqa: BLE001 - no shard (disk full?): the events travel instead
        record = rt.stats()
    got = rt.collector.gather_failed(record, grace)
    if got is not None:
        try:
            err = msg if exc is not None else remote_message or f"rank {failed_rank} failed"
            ranks = [g[0] if isinstance(g, tuple) else g for g in got]  # DONE or FAIL payloads
            finish_run(rt.spec, rt.plan, rt.opts, ranks, status="failed", error=err,
                       result=None, live=rt.live_in)
        except Exception as werr:  # noqa: BLE001
            print(f"streampipe: could not write the run file: {werr}", file=sys.stderr, flush=True)
    else:
        time.sleep(grace + 3.0)  # rank 0 aborts everyone once the run file is written
    abort(rt.comm)
