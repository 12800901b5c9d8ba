"""Pipelined training over MPI: run a schedule of F/B/S actions with the stream transport.

Communication is implicit in the schedule (:mod:`streampipe.schedule`): after ``F`` on stage
``s`` the activation goes to the rank of stage ``s + 1``; ``F`` on ``s > 0`` first receives it;
gradients mirror that for ``B``. Every (sender, receiver, kind) pair that ever carries data is a
*link* with its own edge id, an :class:`~streampipe.channel.OutPort` on the sender and an
:class:`~streampipe.channel.InPort` on the receiver: the same credit-bounded, sleeping-poll
transport as stream pipelines, so a rank that waits costs no CPU. A rank may run several stages
(U-shape client; interleaved 1F1B, ``virtual`` chunks per rank): consecutive stages on the same
rank hand over in memory, and one link carries every stage pair between its two ranks (keys
``(step, stage, microbatch)`` tell them apart; in interleaved 1F1B the last server rank's link
back to the client is the wrap-around). A link's capacity is ``microbatches * virtual``, the most
one minibatch step puts on it (a stage can only start the next step after its own optimizer
step, which needs every backward of this step), so credits never limit a valid schedule and
never deadlock it.

Every message is recorded by kind (activation, gradient, label, input, weights) on both ends:
the privacy audit. :func:`run_train` is the ``[train]`` job driver (split learning,
:mod:`pipelines.split_learning`): per-rank busy/idle time, peak live activations (count and
bytes) and step time go into an HDF5 run file that ``streampipe report`` reads.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from . import metrics as M
from .channel import ITEM, InPort, OutPort
from .collect import Collector
from .edges import TRAIN_BASE, TRAIN_CHECKPOINT
from .schedule import Action
from .transport import CONTROL, AbortRequested, Transport

__all__ = ["Wire", "Executor", "run_train", "train_ranks", "plan_text", "WIRE_KINDS"]

WIRE_KINDS = ("activation", "gradient", "label", "input", "weights")
EDGE_BASE = TRAIN_BASE  # link i uses edge id EDGE_BASE + i (stream jobs use small ids)
CKPT_EDGE = TRAIN_CHECKPOINT  # rank -> rank 0 after each epoch: weights for the checkpoint


def _nbytes(value: Any) -> int:
    return int(getattr(value, "nbytes", 0))


class Wire:
    """This rank's ends of the training links, with the message audit."""

    def __init__(self, transport: Transport, links: list[tuple[int, int, str]], capacity: int,
                 rec: M.Recorder) -> None:
        self.t, self.rec = transport, rec
        me = transport.rank
        self.out: dict[tuple[int, str], OutPort] = {}
        self.inp: dict[tuple[int, str], InPort] = {}
        self.box: dict[tuple[int, str], dict[Hashable, Any]] = {}
        for i, (src, dst, kind) in enumerate(links):
            edge = EDGE_BASE + i
            if src == me:
                self.out[(dst, kind)] = OutPort(transport, edge, (dst,), capacity, 1,
                                                rec.edge(f"{kind}->{dst}"))
            elif dst == me:
                self.inp[(src, kind)] = InPort(transport, edge, (src,), capacity, merge=False,
                                               start_seq=0, on_arrival=lambda n, now: None)
                self.box[(src, kind)] = {}
        # audit: direction -> kind -> peer -> [messages, bytes]
        self.audit: dict[str, dict[str, dict[int, list[int]]]] = {"sent": {}, "received": {}}

    def note(self, direction: str, kind: str, peer: int, nbytes: int) -> None:
        """Record one message in the audit (also used for weights sent outside the links)."""
        row = self.audit[direction].setdefault(kind, {}).setdefault(peer, [0, 0])
        row[0] += 1
        row[1] += nbytes

    def wait(self, until: Callable[[], bool], state: int, what: str) -> None:
        """Return owed credits, then poll (sleeping) until ``until()``; time goes to ``state``."""
        for port in self.inp.values():
            port.flush_credits()
        prev = self.rec.enter(state)
        try:
            self.t.wait(until, what=what)
        finally:
            self.rec.enter(prev)

    def send(self, dst: int, kind: str, key: Hashable, value: Any) -> None:
        port = self.out[(dst, kind)]
        if not port.has_credit():
            self.wait(port.has_credit, M.BLOCKED, f"waiting for credit to send {kind} to {dst}")
        port.put((ITEM, key, value))
        self.note("sent", kind, dst, _nbytes(value))

    def _drain(self, src: int, kind: str) -> None:
        port, box = self.inp[(src, kind)], self.box[(src, kind)]
        while (got := port.next()) is not None:
            _, (_, key, value) = got
            box[key] = value
            self.note("received", kind, src, _nbytes(value))

    def recv(self, src: int, kind: str, key: Hashable) -> Any:
        """The value sent as ``key`` by ``src`` on its ``kind`` link (waits for it)."""
        box = self.box[(src, kind)]

        def ready() -> bool:
            self._drain(src, kind)
            return key in box

        if not ready():
            self.wait(ready, M.STARVED, f"waiting for {kind} {key} from rank {src}")
        return box.pop(key)

    def close(self) -> None:
        """End every link: EOS out, wait for the receivers' closing acks and our inputs' ends."""
        for port in self.out.values():
            port.put_eos()

        def done() -> bool:
            for (src, kind) in self.inp:
                self._drain(src, kind)
            return (all(p.done for p in self.out.values())
                    and all(p.exhausted for p in self.inp.values()))

        self.wait(done, M.OTHER, "waiting for the training links to close")
        self.wait(lambda: not self.t.sends_pending, M.OTHER, "waiting for sends")
        left = {k: list(b) for k, b in self.box.items() if b}
        if left:
            raise RuntimeError(f"rank {self.t.rank}: messages never consumed: {left}")


def _held(stages: list[Any]) -> tuple[int, int]:
    """(microbatches in flight, bytes of arrays kept for their backwards) on these stages."""
    count, seen, total = 0, set(), 0
    for st in stages:
        count += st.live
        for layer in st.layers:
            stack = list(layer._saved.values())
            while stack:
                v = stack.pop()
                if isinstance(v, tuple):
                    stack.extend(v)
                elif hasattr(v, "nbytes") and id(v) not in seen:
                    seen.add(id(v))
                    total += int(v.nbytes)
    return count, total


class Executor:
    """Runs one rank's actions of a minibatch step, moving tensors over a :class:`Wire`.

    ``workers`` maps each stage this rank runs to a
    :class:`~pipelines.split_learning.pipelined.StageWorker`-like object (``begin``,
    ``set_label``, ``forward``, ``backward``, ``step``, ``stage``). Labels live with stage 0's
    data; when the last stage runs elsewhere they are sent to it as ``label`` messages.
    """

    def __init__(self, wire: Wire, rec: M.Recorder, faults: set[int] | None = None) -> None:
        self.wire, self.rec = wire, rec
        self.rank = wire.t.rank
        self.where: tuple[int, Action | None] | None = None
        self.peak_live = 0
        self.peak_bytes = 0
        self.n_f = self.n_b = 0
        self.events: list[tuple[float, float, float, float, float]] = []
        self.held_area = 0.0
        self.faults = faults or set()

    def run_step(self, step: int, actions: list[Action], owner: dict[int, int],
                 workers: dict[int, Any], n_samples: int, n_micro: int,
                 X: dict[int, Any] | None = None, y: dict[int, Any] | None = None) -> None:
        wire, me, rec = self.wire, self.rank, self.rec
        last = max(owner)
        self.where = (step, None)
        if X is not None and y is not None and owner[last] != me:
            for mb, lab in sorted(y.items()):
                wire.send(owner[last], "label", (step, last, mb), lab)
        for s, w in workers.items():
            w.begin(n_samples, labels=(y if owner[0] == me else {}) if s == last else None)
        local: dict[tuple[str, int, int], Any] = {}
        f_start: dict[tuple[int, int], tuple[float, float]] = {}
        stages = [w.stage for w in workers.values()]
        perf = time.perf_counter
        for a in actions:
            self.where = (step, a)
            s, mb, w = a.stage, a.microbatch, workers[a.stage]
            if a.kind == "F":
                if s == 0:
                    x = X[mb]
                elif owner[s - 1] == me:
                    x = local.pop(("act", s, mb))
                else:
                    x = wire.recv(owner[s - 1], "activation", (step, s, mb))
                if s == last and owner[0] != me:
                    w.set_label(mb, wire.recv(owner[0], "label", (step, s, mb)))
                t_recv = perf()
                if step * n_micro + mb in self.faults:
                    raise RuntimeError(f"injected fault (kind=raise) at microbatch "
                                       f"{step * n_micro + mb}")
                prev = rec.enter(M.BUSY)
                out = w.forward(mb, x)
                rec.enter(prev)
                f_start[(s, mb)] = (t_recv, t_recv)
                self.n_f += 1
                live, nbytes = _held(stages)
                self.peak_live = max(self.peak_live, live)
                self.peak_bytes = max(self.peak_bytes, nbytes)
                if s < last:
                    if owner[s + 1] == me:
                        local[("act", s + 1, mb)] = out
                    else:
                        wire.send(owner[s + 1], "activation", (step, s + 1, mb), out)
            elif a.kind == "B":
                if s == last:
                    g = None
                elif owner[s + 1] == me:
                    g = local.pop(("grad", s, mb))
                else:
                    g = wire.recv(owner[s + 1], "gradient", (step, s, mb))
                prev = rec.enter(M.BUSY)
                gin = w.backward(mb, g)
                rec.enter(prev)
                t_end = perf()
                t_recv, t_start = f_start.pop((s, mb))
                self.n_b += 1
                self.held_area += t_end - t_start
                self.events.append((step * n_micro + mb, t_recv - rec.t0, t_start - rec.t0,
                                    t_end - rec.t0, t_end - rec.t0))
                if s > 0:
                    if owner[s - 1] == me:
                        local[("grad", s - 1, mb)] = gin
                    else:
                        wire.send(owner[s - 1], "gradient", (step, s - 1, mb), gin)
            else:
                prev = rec.enter(M.BUSY)
                w.step()
                rec.enter(prev)
        self.where = None
        if local:
            raise RuntimeError(f"rank {me} step {step}: values left unconsumed: {sorted(local)}")


# ---------------------------------------------------------------------------- job driver


def _config(spec: Any) -> Any:
    from pipelines.split_learning.splitnn import parse_train

    return parse_train(spec.train)


def train_ranks(spec: Any) -> int:
    """Number of MPI ranks a ``[train]`` job needs (clients + server stage ranks)."""
    return _config(spec).topology.size


def plan_text(spec: Any) -> str:
    """``streampipe plan`` for a training job: ranks, schedule grid, time-balanced cuts."""
    from pipelines.split_learning.layers import Sequential
    from pipelines.split_learning.partition import (
        balance_by_time,
        measure_layer_times,
        stage_times,
    )
    from pipelines.split_learning.splitnn import build_stages

    from .schedule import format_grid, simulate

    cfg = _config(spec)
    topo = cfg.topology
    lines = [topo.describe(), "", f"schedule ({cfg.schedule}) of one minibatch step on client "
             "0's turn, unit-time dry run (<stage><F|B|S><microbatch>, S takes no time):"]
    sim = simulate(topo.physical(0))
    lines.append(format_grid(sim))
    lines.append(f"unit-time dry run: makespan {sim.makespan:g}, peak live activations per "
                 f"stage {sim.peak_activations}, per rank {sim.rank_peak_activations}")
    if cfg.layer_times:
        times, how = [float(t) for t in cfg.layer_times], "train.layer_times"
    else:
        model = Sequential([ly for st in build_stages(cfg) for ly in st.layers])
        x = np.random.default_rng(0).random((cfg.minibatch, 64)).astype(cfg.np_dtype)
        times, how = measure_layer_times(model, x), "measured on a random minibatch"
    best = balance_by_time(times, topo.n_stages)
    lines += ["", f"layer times ({how}): " + ", ".join(f"{1e6 * t:.0f}" for t in times) + " us",
              f"cuts {cfg.cuts}: stage times " + ", ".join(
                  f"{1e6 * t:.0f}" for t in stage_times(times, cfg.cuts)) + " us",
              f"balance_by_time: cuts {best}: stage times " + ", ".join(
                  f"{1e6 * t:.0f}" for t in stage_times(times, best)) + " us"]
    return "\n".join(lines)


class _Failure:
    """What :func:`run_train` reports when a rank fails."""

    def __init__(self, rank: int, name: str, host: str) -> None:
        self.rank, self.name, self.host = rank, name, host

    def describe(self, ex: Executor | None, what: str) -> str:
        where = "setup"
        if ex is not None and ex.where is not None:
            step, a = ex.where
            if a is None:
                where = f"step {step}"
            elif a.kind == "S":
                where = f"step {step}, optimizer step of stage {a.stage}"
            else:
                where = f"step {step}, {a.kind} of stage {a.stage} microbatch {a.microbatch}"
        elif ex is not None:
            where = "between steps"
        return (f"streampipe train: {self.name} (rank {self.rank}, {self.host}) failed at "
                f"{where}: {what}")


def run_train(spec: Any, comm: Any, opts: Any) -> Any:
    """Run this rank's part of a ``[train]`` job; rank 0 returns the result dict."""
    from pipelines.split_learning.splitnn import parse_train

    cfg = parse_train(spec.train)
    topo = cfg.topology
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != topo.size:
        if rank == 0:
            print(f"streampipe: training job {spec.name!r} needs {topo.size} ranks "
                  f"({cfg.clients} clients + {topo.server_ranks} server ranks) but was "
                  f"started with {size}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    rec = M.Recorder()
    t = Transport(comm, on_transfer=rec.add_transfer)
    fail = _Failure(rank, topo.rank_name(rank), socket.gethostname())
    ex: Executor | None = None
    try:
        wire = Wire(t, topo.links(), max(2, cfg.microbatches * cfg.virtual), rec)
        faults = {f.item for f in getattr(opts, "faults", []) if f.stage == fail.name}
        ex = Executor(wire, rec, faults)
        return _Session(cfg, spec, comm, t, wire, ex, rec, opts, fail.host).run()
    except AbortRequested as exc:
        print(f"streampipe train: {fail.name} (rank {rank}) stopped: rank {exc.source} failed",
              file=sys.stderr, flush=True)
    except BaseException as exc:  # noqa: BLE001 - any failure ends the whole job
        msg = fail.describe(ex, f"{type(exc).__name__}: {exc}")
        print(f"{msg}\n{''.join(traceback.format_exception(exc))}", file=sys.stderr, flush=True)
        t.abort_others(msg, size)
        time.sleep(0.5)  # let the abort messages leave before MPI_Abort tears everything down
    sys.stderr.flush()
    comm.Abort(1)
    return None


class _Session:
    """One rank's training run: data, stages, epochs, checkpoints, the final collection."""

    def __init__(self, cfg: Any, spec: Any, comm: Any, t: Transport, wire: Wire, ex: Executor,
                 rec: M.Recorder, opts: Any, host: str) -> None:
        from pipelines.split_learning.splitnn import initial_state, load_data

        self.cfg, self.spec, self.comm, self.t, self.wire, self.ex = cfg, spec, comm, t, wire, ex
        self.rec, self.opts, self.host = rec, opts, host
        self.topo = topo = cfg.topology
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        # every rank derives the step order from the shard sizes; only clients keep data
        shards, test = load_data(cfg)
        self.sizes = [len(s.y) for s in shards]
        self.client = self.rank if topo.is_client(self.rank) else None
        self.data = shards[self.rank] if self.client is not None else None
        self.test = test if self.rank == 0 else None
        state = initial_state(cfg)
        names = {s: topo.stage_name(s, self.client) for s in topo.stages_of(self.rank)}
        self.mine = {s: state[n] for s, n in names.items()}
        self.names = names
        self.start_epoch = 0
        if cfg.resume:
            self._resume()
        self.boxes: dict[int, dict[int, Any]] = {}
        t.register(CKPT_EDGE, lambda src, kind, p: self.boxes.setdefault(p[0], {}).__setitem__(
            src, p[1]))
        self.stats: dict[int, Any] = {}
        self.collector = Collector(t, self.size)

    def _resume(self) -> None:
        from pipelines.split_learning import checkpoint

        stages, epoch, seed = checkpoint.load(self.cfg.resume)
        if seed != self.cfg.seed:
            raise ValueError(f"train.resume: checkpoint has seed {seed}, the job {self.cfg.seed}")
        for s, name in self.names.items():
            if name not in stages:
                raise ValueError(f"train.resume: checkpoint has no stage {name!r}")
            st, opt = self.mine[s]
            checkpoint.load_stage_state(st, opt, stages[name], f"/stages/{name}")
        self.start_epoch = epoch

    def _states(self) -> dict[str, Any]:
        from pipelines.split_learning.checkpoint import stage_state

        return {self.names[s]: stage_state(st, opt) for s, (st, opt) in self.mine.items()}

    def _send0(self, edge: int, payload: Any, nbytes: int) -> None:
        if self.rank == 0:
            self.t.handlers[edge](0, CONTROL, payload)
        else:
            self.t.send(0, CONTROL, edge, payload)
            self.wire.note("sent", "weights", 0, nbytes)

    @staticmethod
    def _state_bytes(states: dict[str, Any]) -> int:
        return sum(a.nbytes for st in states.values() for ly in st["layers"].values()
                   for a in ly.values())

    def run(self) -> Any:
        from pipelines.split_learning.pipelined import StageWorker
        from pipelines.split_learning.splitnn import client_minibatches, round_robin
        from pipelines.split_learning.trainer import microbatch_bounds

        cfg, topo, ex = self.cfg, self.topo, self.ex
        last = topo.last
        workers = {s: StageWorker(st, opt, last=(s == last)) for s, (st, opt) in self.mine.items()}
        bounds = microbatch_bounds(cfg.minibatch, cfg.microbatches)
        losses: list[float] = []
        steps = 0
        self.rec.enter(M.OTHER)
        base = list(self.rec.totals)  # the time split of the training loop alone, for the report
        t_train0 = time.perf_counter()
        step_id = 0
        for epoch in range(self.start_epoch, cfg.epochs):
            mine_b = (client_minibatches(self.sizes[self.client], cfg.minibatch, epoch, cfg.seed,
                                         self.client) if self.client is not None else None)
            loss = 0.0
            for c, j in round_robin(self.sizes, cfg.minibatch, epoch):
                acts = topo.actions(self.rank, c)
                if acts:
                    X = y = None
                    if c == self.client:
                        idx = mine_b[j]
                        Xb, yb = self.data.X[idx], self.data.y[idx]
                        X = {m: Xb[a:b] for m, (a, b) in enumerate(bounds)}
                        y = {m: yb[a:b] for m, (a, b) in enumerate(bounds)}
                    ws = {s: workers[s] for s in {a.stage for a in acts}}
                    ex.run_step(step_id, acts, topo.owner(c), ws, cfg.minibatch,
                                cfg.microbatches, X, y)
                    if last in ws:
                        loss += ws[last].loss
                step_id += 1
                steps += 1
            losses.append(loss)
            if cfg.checkpoint:
                self._checkpoint(epoch + 1)
        self.rec.enter(M.OTHER)
        train_time = time.perf_counter() - t_train0
        split = {st: self.rec.totals[i] - base[i] for i, st in enumerate(M.STATES)}
        self.wire.close()
        return self._finish(losses, steps, train_time, split)

    def _checkpoint(self, epoch: int) -> None:
        states = self._states()
        self._send0(CKPT_EDGE, (epoch, states), self._state_bytes(states))
        if self.rank == 0:
            from pipelines.split_learning import checkpoint

            box = self.boxes
            self.wire.wait(lambda: len(box.get(epoch, {})) == self.size, M.OTHER,
                           f"collecting the epoch-{epoch} checkpoint")
            merged = {k: v for part in box.pop(epoch).values() for k, v in part.items()}
            checkpoint.save(self.cfg.checkpoint, merged, epoch, self.cfg.seed)

    def _dcor(self) -> float | None:
        from pipelines.split_learning.dcor import dcor2_u

        if self.client is None:
            return None
        n = min(self.cfg.audit_samples, len(self.data.y))
        if n < 4:
            return None
        bottom = self.mine[0][0]
        X = self.data.X[:n]
        act = bottom.forward(X, mb=("audit",))
        for layer in bottom.layers:
            layer._saved.pop(("audit",), None)
        return dcor2_u(X, act)

    def _finish(self, losses: list[float], steps: int, train_time: float,
                split: dict[str, float]) -> Any:
        rec, ex = self.rec, self.ex
        dcor = self._dcor()
        states = self._states()
        rec.close()
        d = rec.dump()
        ev = np.asarray(ex.events, dtype=np.float64).reshape(-1, 5)
        d.update(
            events=ev, rank=self.rank, stage=self.topo.rank_name(self.rank), stage_index=0,
            replica=0, group_rank=0, host=self.host, items_in=ex.n_f, items_out=ex.n_b,
            held_area=ex.held_area, held_peak=ex.peak_live, peak_live=ex.peak_live,
            peak_live_bytes=ex.peak_bytes, steps=steps, train_time=train_time,
            step_time=train_time / max(steps, 1), train_split=split,
            stages=list(self.names.values()),
            loss_sums=losses, dcor2_u=dcor if dcor is not None else float("nan"),
            bytes_sent=self.t.bytes_sent, bytes_received=self.t.bytes_received,
        )
        # the audit includes this final message (weights for evaluation and the checkpoint)
        if self.rank != 0:
            self.wire.note("sent", "weights", 0, self._state_bytes(states))
        d["wire"] = self.wire.audit
        got = self.collector.gather(
            (d, states), lambda until, what: self.wire.wait(until, M.OTHER, what))
        if got is None:
            self.t.drain_sends()
            self.t.close()
            return None
        self.stats = dict(enumerate(got))
        result = self._report()
        self.t.close()
        return result

    def _report(self) -> dict[str, Any]:
        from pipelines.split_learning import checkpoint
        from pipelines.split_learning.splitnn import evaluate_clients, initial_state

        cfg, topo = self.cfg, self.topo
        ranks = [self.stats[r][0] for r in range(self.size)]
        merged = {k: v for r in range(self.size) for k, v in self.stats[r][1].items()}
        if cfg.checkpoint and cfg.epochs == self.start_epoch:
            checkpoint.save(cfg.checkpoint, merged, cfg.epochs, cfg.seed)
        state = initial_state(cfg)
        for name, (st, opt) in state.items():
            checkpoint.load_stage_state(st, opt, merged[name], f"/stages/{name}")
        acc = evaluate_clients(cfg, state, self.test)
        n_epochs = cfg.epochs - self.start_epoch
        seen = sum(n // cfg.minibatch for n in self.sizes) * cfg.minibatch
        epoch_loss = [sum(r["loss_sums"][e] for r in ranks) / seen for e in range(n_epochs)]
        crossed = _crossed(topo, ranks)
        result = {
            "accuracy": acc, "epoch_loss": epoch_loss, "epochs": cfg.epochs,
            "start_epoch": self.start_epoch, "steps": ranks[0]["steps"],
            "step_time": max(r["step_time"] for r in ranks),
            "dcor2_u": [r["dcor2_u"] for r in ranks[:cfg.clients]],
            "crossed": crossed,
            "peak_live": [r["peak_live"] for r in ranks],
            "peak_live_bytes": [r["peak_live_bytes"] for r in ranks],
        }
        summary = _summary(ranks)
        if self.opts.out:
            from .runfile import versions, write

            meta = {
                "status": "ok", "error": "", "job_name": self.spec.name,
                "job_text": self.spec.text, "kind": "train",
                "plan": {"train": topo.describe(), "schedule": cfg.schedule,
                         "virtual": cfg.virtual, "microbatches": cfg.microbatches,
                         "ordered": False, "batch": 1, "start_seq": 0,
                         "stages": _plan_stages(topo, cfg.microbatches)},
                **versions(), "ranks": self.size, "hosts": [r["host"] for r in ranks],
                "start_time": min(r["wall0"] for r in ranks),
                "wall_time": max(r["elapsed"] for r in ranks), "result": result,
            }
            write(self.opts.out, meta, ranks, summary)
        if not getattr(self.opts, "quiet", False):
            print(report_text(topo, ranks, result), flush=True)
            if self.opts.out:
                print(f"run file: {self.opts.out}  (streampipe report {self.opts.out})",
                      flush=True)
        return result


def _plan_stages(topo: Any, capacity: int) -> list[dict[str, Any]]:
    """One pseudo-stage per rank, in the shape of :class:`streampipe.plan.StagePlan`, so that
    ``streampipe report`` can analyse a training run file like a stream run file."""
    return [{"index": r, "name": topo.rank_name(r), "kind": "stage", "replicas": 1, "group": 1,
             "capacity": capacity, "groups": [[r]], "feedback_to": None, "device": "cpu",
             "timeout": None} for r in range(topo.size)]


def _crossed(topo: Any, ranks: list[dict]) -> dict[str, dict[str, list[int]]]:
    """Per rank name: kind -> [messages, bytes] that left that rank."""
    out = {}
    for r, d in enumerate(ranks):
        sent = d["wire"]["sent"]
        out[topo.rank_name(r)] = {k: [sum(v[0] for v in peers.values()),
                                      sum(v[1] for v in peers.values())]
                                  for k, peers in sent.items()}
    return out


def _summary(ranks: list[dict]) -> dict[str, dict[str, Any]]:
    """One row per rank in the shape ``streampipe report`` prints (see report.short_text)."""
    out = {}
    for d in ranks:
        el = max(d["elapsed"], 1e-12)
        ev = d["events"]
        items = int(d["items_in"])
        window = float(ev[:, 4].max() - ev[:, 2].min()) if len(ev) else el
        window = max(window, 1e-12)
        W = float(np.mean(ev[:, 4] - ev[:, 2])) if len(ev) else 0.0
        lam = items / window
        L = d["held_area"] / window
        busy_t = d["time"]["busy"]
        row = {"kind": "train", "replicas": 1, "group": 1, "items": items,
               "items_out": int(d["items_out"]), "window": window, "throughput": lam,
               "service": busy_t / max(items, 1), "bound": items / busy_t if busy_t else 0.0,
               "L": L, "lam": lam, "W": W,
               "little_residual": abs(L - lam * W) / L if L > 0 else 0.0,
               "held_peak": int(d["peak_live"]), "io_bytes": 0,
               "peak_live_bytes": int(d["peak_live_bytes"]), "step_time": d["step_time"]}
        for state in M.STATES:
            row[state] = d["time"][state] / el
        row["edges"] = d.get("edges", {})
        out[d["stage"]] = row
    return out


def report_text(topo: Any, ranks: list[dict], result: dict[str, Any]) -> str:
    """The short report printed at the end of a training run."""
    # fractions of the training loop (setup and data loading left out)
    head = (f"{'rank':<12}{'stages':<28}{'F+B':>6}{'busy':>7}{'idle':>7}{'xfer':>7}"
            f"{'live':>6}{'live KiB':>10}{'step ms':>9}")
    lines = [head, "-" * len(head)]
    for r, d in enumerate(ranks):
        el = max(d["train_time"], 1e-12)
        tm = d["train_split"]
        idle = (tm["starved"] + tm["blocked"]) / el
        lines.append(f"{topo.rank_name(r):<12}{','.join(d['stages'])[:27]:<28}"
                     f"{d['items_in'] + d['items_out']:>6}{100 * tm['busy'] / el:>6.0f}%"
                     f"{100 * idle:>6.0f}%{100 * tm['transfer'] / el:>6.0f}%"
                     f"{d['peak_live']:>6}{d['peak_live_bytes'] / 1024:>10.1f}"
                     f"{1e3 * d['step_time']:>9.2f}")
    acc = ", ".join(f"client{c} {100 * a:.1f}%" for c, a in enumerate(result["accuracy"]))
    losses = ", ".join(f"{x:.4f}" for x in result["epoch_loss"])
    lines.append(f"epochs {result['start_epoch']}..{result['epochs']}: loss per epoch "
                 f"[{losses}]; test accuracy {acc}")
    for name, kinds in result["crossed"].items():
        what = ", ".join(f"{k} {v[0]} msgs/{v[1] / 1024:.1f} KiB" for k, v in sorted(kinds.items())
                         if v[0]) or "nothing"
        lines.append(f"wire: {name} sent {what}")
    for c in range(topo.clients):
        leaked = [k for k in ("label", "input") if result["crossed"][f"client{c}"].get(k, [0])[0]]
        lines.append(f"privacy: client{c} sent {' and '.join(leaked) if leaked else 'no'} "
                     f"label/input arrays; dCor²(raw input, cut activation) = "
                     f"{result['dcor2_u'][c]:.3f} (bias-corrected)")
    return "\n".join(lines)
