"""The ``[train]`` job driver: one rank's whole training run.

:func:`run_train` validates the job, opens the wire and runs a :class:`Session`: build the model
(every rank the same; a checksum of the initial weights is compared across ranks), cut it
(``cuts = "auto"``: rank 0 profiles each layer on a microbatch and balances by time, then tells
the others), make the stage workers of this rank's stage copies, load the data, run the epochs
of minibatch steps (:class:`~streampipe.train.executor.Executor`), checkpoint after each epoch,
and at the end send measurements and final weights to rank 0, which evaluates every path on the
test data, writes the run file and prints the report. A failure anywhere ends every rank with a
message naming the rank and the step, action and microbatch it was in.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from typing import Any

import numpy as np

from ..abort import abort
from ..events import as_events
from ..runfile import versions, write
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .config import TrainConfig, parse_train
from .data import Dataset, load_source
from .executor import Executor
from .local import microbatch_bounds
from .model import check_cuts, load_model
from .partition import balance_by_time
from .replicas import make_reducer, split_groups
from .results import boundaries, crossed, plan_stages, report_text, summary
from .wire import CKPT_EDGE, OTHER, STATES, AbortRequested, Wire

__all__ = ["run_train", "train_ranks", "Session"]


def share_cores(ranks_on_node: int) -> None:
    """Give each rank's BLAS pool its share of the node's cores.

    OpenBLAS and MKL default to one thread per core in every process; several stage ranks on a
    node then oversubscribe the cores and their spinning threads slow small matrix products by
    an order of magnitude (measured: 10x on 2 ranks of 2 cores). Uses threadpoolctl when it is
    installed; ``OPENBLAS_NUM_THREADS`` and friends set by the user win.
    """
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "MKL_NUM_THREADS")):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(max(1, (os.cpu_count() or 1) // max(ranks_on_node, 1)), user_api="blas")


def train_ranks(spec: Any) -> int:
    """Number of MPI ranks a ``[train]`` job needs."""
    return parse_train(spec.train, base=spec.path).layout().size


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
        elif ex is not None and ex.n_f:
            where = "between steps"
        return (f"streampipe train: {self.name} (rank {self.rank}, {self.host}) failed at "
                f"{where}: {what}")


def run_train(spec: Any, comm: Any, opts: Any) -> Any:
    """Run this rank's part of a ``[train]`` job; rank 0 returns the result dict."""
    cfg = parse_train(spec.train, base=spec.path)
    layout = cfg.layout()
    rank, size = comm.Get_rank(), comm.Get_size()
    if size != layout.size:
        if rank == 0:
            print(f"streampipe: training job {spec.name!r} needs {layout.size} ranks but was "
                  f"started with {size}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    wire = Wire(comm)
    fail = _Failure(rank, layout.rank_name(rank), socket.gethostname())
    ex = Executor(wire, {f.item for f in getattr(opts, "faults", []) if f.stage == fail.name})
    try:
        wire.open(layout.links(), layout.capacity())
        return Session(cfg, layout, spec, comm, wire, ex, opts, fail.host).run()
    except AbortRequested as exc:
        print(f"streampipe train: {fail.name} (rank {rank}) stopped: rank {exc.source} failed",
              file=sys.stderr, flush=True)
    except BaseException as exc:  # noqa: BLE001 - any failure ends the whole job
        msg = fail.describe(ex, f"{type(exc).__name__}: {exc}")
        # bad input found once the model or data is built: the message says it all
        setup_error = isinstance(exc, ValueError) and not ex.n_f
        tb = "" if setup_error else "\n" + "".join(traceback.format_exception(exc))
        print(f"{msg}{tb}", file=sys.stderr, flush=True)
        wire.abort_others(msg)
        time.sleep(0.5)  # let the abort messages leave before MPI_Abort tears everything down
    abort(comm)


class Session:
    """One rank's training run (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, layout: Any, spec: Any, comm: Any, wire: Wire,
                 ex: Executor, opts: Any, host: str) -> None:
        self.cfg, self.layout, self.spec, self.comm, self.wire, self.ex = (
            cfg, layout, spec, comm, wire, ex)
        self.opts, self.host = opts, host
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local, on_node = wire.join_node()
        share_cores(on_node)
        self.model = load_model(cfg, local)
        if self.model.kind == "torch":
            from .torch_adapter import limit_threads

            limit_threads(on_node)
        sums = comm.allgather(self.model.checksum())
        if any(s != sums[0] for s in sums):
            bad = [r for r, s in enumerate(sums) if s != sums[0]]
            raise ValueError(f"train.model: ranks {bad} built other initial weights than rank 0 "
                             "(the build function must be deterministic given the seed)")
        data = load_source(cfg.data.get("source", ""), cfg.base, cfg.loss) \
            if layout.uses_source(cfg) else None
        shards, test = layout.load_data(cfg, data)
        self.sizes = {p: len(d.y) for p, d in shards.items()}
        for p, n in self.sizes.items():
            if n < cfg.minibatch:
                raise ValueError(f"train.minibatch: {layout.path_name(p)} has only {n} samples, "
                                 f"fewer than one minibatch of {cfg.minibatch}")
        self.mine = {p: d for p, d in shards.items() if self.rank in layout.data_ranks(p)}
        self.test = test if self.rank == 0 else None
        self.cuts, self.layer_times = self._cuts(shards)
        check_cuts(self.model, self.cuts)
        self.names = layout.copies(self.rank)
        self.workers = {s: self._worker(s) for s in self.names}
        groups = layout.replica_groups()
        if groups:
            sub = split_groups(comm, groups)
            if sub is not None:
                for s in self.names:
                    self.ex.reducers[s] = make_reducer(sub, wire, f"stage {s}")
        self.start_epoch = 0
        if cfg.resume:
            self._resume()
        self.boxes: dict[int, dict[int, Any]] = {}
        wire.on_root(CKPT_EDGE, lambda src, p: self.boxes.setdefault(p[0], {}).__setitem__(
            src, p[1]))
        self.stats: dict[int, Any] = {}

    # ------------------------------------------------------------------ setup
    def _cuts(self, shards: dict[int, Dataset]) -> tuple[list[int], list[float]]:
        cfg = self.cfg
        if not cfg.auto_cuts:
            return list(cfg.cuts), []
        times = None
        if cfg.layer_times:
            times = [float(t) for t in cfg.layer_times]
        elif self.rank == 0:
            n = max(1, cfg.minibatch // cfg.microbatches)
            times = self.model.layer_times(shards[0].X[:n], repeats=3)
        times = self.comm.bcast(times, root=0)  # one decision for every rank
        if len(times) != self.model.n_layers:
            raise ValueError(f"train.layer_times: needs one time per layer "
                             f"({self.model.n_layers}), got {len(times)}")
        return balance_by_time(times, cfg.n_stages), times

    def _bounds(self, s: int) -> tuple[int, int]:
        b = [0, *self.cuts, self.model.n_layers]
        return b[s], b[s + 1]

    def _worker(self, s: int) -> Any:
        a, b = self._bounds(s)
        return self.model.worker(a, b, optimizer=self.cfg.optimizer,
                                 loss=self.cfg.loss if s == self.layout.last else None,
                                 recompute=self.cfg.recompute)

    def _resume(self) -> None:
        stages, epoch, seed = load_checkpoint(self.cfg.resume)
        if seed != self.cfg.seed:
            raise ValueError(f"train.resume: checkpoint has seed {seed}, the job {self.cfg.seed}")
        for s, name in self.names.items():
            if name not in stages:
                raise ValueError(f"train.resume: checkpoint has no stage {name!r}")
            self.workers[s].load_state(stages[name], f"/stages/{name}")
        self.start_epoch = epoch

    def _states(self) -> dict[str, Any]:
        """This rank's stage states by name (replicas after the first send nothing)."""
        first = self.layout.first_holder
        return {name: self.workers[s].state() for s, name in self.names.items()
                if first(name) == self.rank}

    @staticmethod
    def _state_bytes(states: dict[str, Any]) -> int:
        total, stack = 0, list(states.values())
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.values())
            else:
                total += int(getattr(v, "nbytes", 0))
        return total

    # ------------------------------------------------------------------ the loop
    def run(self) -> Any:
        cfg, layout, ex = self.cfg, self.layout, self.ex
        bounds = microbatch_bounds(cfg.minibatch, cfg.microbatches)
        owners = {p: layout.owner(p) for p in range(layout.n_paths)}
        losses: list[float] = []
        steps = 0
        self.wire.enter(OTHER)
        base = self.wire.totals()  # the time split of the training loop alone, for the report
        t_train0, cpu0 = time.perf_counter(), time.process_time()
        step_id = 0
        for epoch in range(self.start_epoch, cfg.epochs):
            loss = 0.0
            for path, idx in layout.steps(epoch, self.sizes):
                acts = layout.actions(self.rank, path)
                if acts:
                    X = y = None
                    if path in self.mine:
                        d = self.mine[path]
                        Xb = self.model.as_input(d.X[idx])
                        yb = self.model.as_target(d.y[idx], cfg.loss)
                        own = owners[path]
                        X = {m: Xb[a:b] for m, (a, b) in enumerate(bounds)
                             if own[(0, m)] == self.rank}
                        y = {m: yb[a:b] for m, (a, b) in enumerate(bounds)
                             if own[(0, m)] == self.rank}
                    ws = {s: self.workers[s] for s in {a.stage for a in acts}}
                    ex.run_step(step_id, acts, owners[path], ws, cfg.minibatch,
                                cfg.microbatches, X, y)
                    if layout.last in ws:
                        loss += ws[layout.last].loss
                step_id += 1
                steps += 1
            losses.append(loss)
            if cfg.checkpoint:
                self._checkpoint(epoch + 1)
        self.wire.enter(OTHER)
        train_time = time.perf_counter() - t_train0
        self.train_cpu = time.process_time() - cpu0  # less sensitive to a busy machine than wall
        split = {st: self.wire.totals()[i] - base[i] for i, st in enumerate(STATES)}
        self.wire.close()
        return self._finish(losses, steps, train_time, split)

    def _checkpoint(self, epoch: int) -> None:
        states = self._states()
        self.wire.to_root(CKPT_EDGE, (epoch, states), self._state_bytes(states))
        if self.rank == 0:
            box = self.boxes
            self.wire.wait(lambda: len(box.get(epoch, {})) == self.size, OTHER,
                           f"collecting the epoch-{epoch} checkpoint")
            merged = {k: v for part in box.pop(epoch).values() for k, v in part.items()}
            save_checkpoint(self.cfg.checkpoint, merged, epoch, self.cfg.seed,
                            self.layout.rng_note(self.cfg.seed, epoch))

    # ------------------------------------------------------------------ the end
    def _finish(self, losses: list[float], steps: int, train_time: float,
                split: dict[str, float]) -> Any:
        ex = self.ex
        extra = self.layout.finish(self)
        own = {name: self.workers[s].state() for s, name in self.names.items()}
        states = {n: st for n, st in own.items() if self.layout.first_holder(n) == self.rank}
        d = self.wire.dump()
        ev = as_events(ex.events)
        d.update(
            events=ev, rank=self.rank, stage=self.layout.rank_name(self.rank), stage_index=0,
            replica=0, group_rank=0, host=self.host, items_in=ex.n_f, items_out=ex.n_b,
            held_area=ex.held_area, held_peak=ex.peak_live, peak_live=ex.peak_live,
            peak_live_bytes=ex.peak_bytes, steps=steps, train_time=train_time,
            step_time=train_time / max(steps, 1), train_split=split, train_cpu=self.train_cpu,
            stages=list(self.names.values()), loss_sums=losses,
            bytes_sent=self.wire.bytes_sent, bytes_received=self.wire.bytes_received,
            replica_checksum={n: self._checksum(st) for n, st in own.items()},
            device=self.model.device_name, **self._gpu_figures(), **extra,
        )
        # the audit includes this final message (weights for evaluation and the checkpoint)
        if self.rank != 0 and states:
            self.wire.note("sent", "weights", 0, self._state_bytes(states))
        d["wire"] = self.wire.audit
        got = self.wire.gather((d, states))
        if got is None:
            return None
        self.stats = dict(enumerate(got))
        return self._report()

    def _gpu_figures(self) -> dict[str, Any]:
        """The workers' device figures (peak pool bytes, pinned staging bytes), rank-wide."""
        out: dict[str, Any] = {}
        for w in self.workers.values():
            for k, v in getattr(w, "gpu", {}).items():
                if isinstance(v, (int, float)):
                    out[k] = max(out.get(k, 0), v)
        return out

    def _checksum(self, state: dict[str, Any]) -> float:
        total, stack = 0.0, [state]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v[k] for k in sorted(v))
            elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
                total = total * 1.000001 + float(v.sum())
        return total

    def _evaluate(self, merged: dict[str, Any]) -> tuple[list[float], list[float]]:
        """Accuracy (cross_entropy) or mean test loss (mse) of each path's model."""
        if self.test is None:
            return [], []
        layout, cfg = self.layout, self.cfg
        acc, tl = [], []
        X = self.model.as_input(self.test.X)
        y = self.model.as_target(self.test.y, cfg.loss)
        for p in range(layout.n_paths):
            out = None
            for s, name in enumerate(layout.path_copies(p)):
                w = self._worker(s)
                w.load_state(merged[name], f"/stages/{name}")
                out = w.predict(w.from_wire(X) if s == 0 else out)
            out = np.asarray(w.to_wire(out))
            if cfg.loss == "cross_entropy":
                acc.append(float(np.mean(np.argmax(out, axis=1) == self.test.y)))
            else:
                from .losses import mse

                tl.append(float(mse(out, np.asarray(y, out.dtype), reduction="mean")[0]))
        return acc, tl

    def _report(self) -> dict[str, Any]:
        cfg, layout = self.cfg, self.layout
        ranks = [self.stats[r][0] for r in range(self.size)]
        merged = {k: v for r in range(self.size) for k, v in self.stats[r][1].items()}
        self._check_replicas(ranks)
        if cfg.checkpoint and cfg.epochs == self.start_epoch:
            save_checkpoint(cfg.checkpoint, merged, cfg.epochs, cfg.seed,
                            layout.rng_note(cfg.seed, cfg.epochs))
        acc, test_loss = self._evaluate(merged)
        n_epochs = cfg.epochs - self.start_epoch
        seen = ranks[0]["steps"] // max(n_epochs, 1) * cfg.minibatch
        epoch_loss = [sum(r["loss_sums"][e] for r in ranks) / max(seen, 1)
                      for e in range(n_epochs)]
        result = {
            "accuracy": acc, "test_loss": test_loss, "epoch_loss": epoch_loss,
            "epochs": cfg.epochs, "start_epoch": self.start_epoch, "steps": ranks[0]["steps"],
            "step_time": max(r["step_time"] for r in ranks),
            "path_names": [layout.path_name(p) for p in range(layout.n_paths)],
            "crossed": crossed(layout, ranks), "boundaries": boundaries(layout, ranks),
            "peak_live": [r["peak_live"] for r in ranks],
            "peak_live_bytes": [r["peak_live_bytes"] for r in ranks],
            "cuts": self.cuts, "cuts_measured": bool(cfg.auto_cuts and not cfg.layer_times),
            "layer_times": self.layer_times, "model": self.model.kind,
            **layout.result(ranks),
        }
        rows = summary(ranks)
        if self.opts.out:
            meta = {
                "status": "ok", "error": "", "job_name": self.spec.name,
                "job_text": self.spec.text, "kind": "train",
                "plan": {"train": layout.describe(), "schedule": cfg.schedule,
                         "virtual": cfg.virtual, "microbatches": cfg.microbatches,
                         "cuts": self.cuts, "ordered": False, "batch": 1, "start_seq": 0,
                         "stages": plan_stages(layout, cfg.microbatches)},
                **versions(), "ranks": self.size, "hosts": [r["host"] for r in ranks],
                "start_time": min(r["wall0"] for r in ranks),
                "wall_time": max(r["elapsed"] for r in ranks), "result": result,
            }
            write(self.opts.out, meta, ranks, {k: r.to_dict() for k, r in rows.items()})
        if not getattr(self.opts, "quiet", False):
            print(report_text(layout, ranks, result), flush=True)
            if self.opts.out:
                print(f"run file: {self.opts.out}  (streampipe report {self.opts.out})",
                      flush=True)
        return result

    def _check_replicas(self, ranks: list[dict]) -> None:
        """Replicas of a stage must end with the same weights (the all-reduce's promise)."""
        seen: dict[str, tuple[int, float]] = {}
        for r, d in enumerate(ranks):
            for name, c in d["replica_checksum"].items():
                if name in seen and seen[name][1] != c:
                    raise RuntimeError(f"replicas of {name} diverged: rank {seen[name][0]} and "
                                       f"rank {r} hold different weights")
                seen.setdefault(name, (r, c))

