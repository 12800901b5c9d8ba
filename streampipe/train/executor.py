"""Run one rank's actions of a minibatch step over the wire, calling its stage workers.

Communication is implicit in the schedule (:mod:`streampipe.schedule`): after ``F`` of stage
``s`` on microbatch ``mb`` the output goes to the rank that runs ``(s + 1, mb)``; ``F`` of
``s > 0`` first receives it; input gradients (``B`` or ``I``) mirror that towards ``s - 1``.
Consecutive stages on the same rank hand over in memory. Stage 0's inputs and the last stage's
targets come from the rank holding the step's data; targets go to the last stage's rank as
``label`` messages when that is another rank. ``S`` all-reduces a replicated stage's gradients
(:mod:`streampipe.train.replicas`) before its optimizer step.

Measured per rank: busy time per action (the rest is waiting), the peak number of microbatches
held for a pending backward and the peak bytes of what they hold (from the workers' ``held()``
after every forward), and per-microbatch (arrival, start, end) stamps for the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..schedule import Action
from .wire import BUSY, Wire
from .worker import StageWorker, SumFn

__all__ = ["Executor"]


class Executor:
    """One rank's actions of each minibatch step (see the module docstring)."""

    def __init__(self, wire: Wire, faults: set[int] | None = None) -> None:
        self.wire = wire
        self.rank = wire.rank
        self.where: tuple[int, Action | None] | None = None
        self.peak_live = 0
        self.peak_bytes = 0
        self.n_f = self.n_b = 0
        self.events: list[tuple[float, float, float, float, float]] = []
        self.held_area = 0.0
        self.faults = faults or set()
        self.reducers: dict[int, SumFn] = {}  # stage -> all-reduce over its replicas

    def _held(self, workers: dict[int, StageWorker]) -> None:
        live = nbytes = 0
        for w in workers.values():
            n, b = w.held()
            live, nbytes = live + n, nbytes + b
        self.peak_live = max(self.peak_live, live)
        self.peak_bytes = max(self.peak_bytes, nbytes)

    def run_step(self, step: int, actions: list[Action], owner: dict[tuple[int, int], int],
                 workers: dict[int, StageWorker], n_samples: int, n_micro: int,
                 X: dict[int, Any] | None = None, y: dict[int, Any] | None = None) -> None:
        """Run ``actions``; ``owner`` maps (stage, microbatch) to ranks, ``X``/``y`` hold the
        host inputs and targets of the microbatches whose data this rank has."""
        wire, me = self.wire, self.rank
        last = max(s for s, _ in owner)
        X, y = X or {}, y or {}
        self.where = (step, None)
        for mb, lab in sorted(y.items()):
            if owner[(last, mb)] != me:
                wire.send(owner[(last, mb)], "label", (step, last, mb), lab)
        for w in workers.values():
            w.begin(n_samples)
        local: dict[tuple[str, int, int], Any] = {}
        f_start: dict[tuple[int, int], float] = {}
        perf = time.perf_counter

        def timed(fn: Callable[..., Any], *args: Any) -> Any:
            prev = wire.enter(BUSY)
            try:
                return fn(*args)
            finally:
                wire.enter(prev)

        for a in actions:
            self.where = (step, a)
            s, mb, w = a.stage, a.microbatch, workers[a.stage]
            if a.kind == "F":
                if s == 0:
                    x = w.from_wire(X[mb])
                elif owner[(s - 1, mb)] == me:
                    x = local.pop(("act", s, mb))
                else:
                    x = w.from_wire(wire.recv(owner[(s - 1, mb)], "activation", (step, s, mb)))
                target = None
                if s == last:
                    src = owner[(0, mb)]
                    lab = y[mb] if src == me else wire.recv(src, "label", (step, s, mb))
                    target = w.from_wire(lab)
                t_recv = perf()
                if step * n_micro + mb in self.faults:
                    raise RuntimeError(f"injected fault (kind=raise) at microbatch "
                                       f"{step * n_micro + mb}")
                out = timed(w.forward, mb, x, target)
                f_start[(s, mb)] = t_recv
                self.n_f += 1
                self._held(workers)
                if s < last:
                    if owner[(s + 1, mb)] == me:
                        local[("act", s + 1, mb)] = out
                    else:
                        wire.send(owner[(s + 1, mb)], "activation", (step, s + 1, mb),
                                  w.to_wire(out))
            elif a.kind in ("B", "I"):
                if s == last:
                    g = None
                elif owner[(s + 1, mb)] == me:
                    g = local.pop(("grad", s, mb))
                else:
                    g = w.from_wire(wire.recv(owner[(s + 1, mb)], "gradient", (step, s, mb)))
                gin = timed(w.backward if a.kind == "B" else w.backward_input, mb, g)
                if a.kind == "B":
                    self._done(step * n_micro + mb, f_start.pop((s, mb)))
                if s > 0:
                    if owner[(s - 1, mb)] == me:
                        local[("grad", s - 1, mb)] = gin
                    else:
                        wire.send(owner[(s - 1, mb)], "gradient", (step, s - 1, mb),
                                  w.to_wire(gin))
            elif a.kind == "W":
                timed(w.backward_weight, mb)
                self._done(step * n_micro + mb, f_start.pop((s, mb)))
            else:
                # waiting inside the all-reduce is charged to blocked by the wire
                timed(w.step, self.reducers.get(s))
        self.where = None
        if local:
            raise RuntimeError(f"rank {me} step {step}: values left unconsumed: {sorted(local)}")

    def _done(self, seq: int, t_start: float) -> None:
        t_end = time.perf_counter()
        t0 = self.wire.t0
        self.n_b += 1
        self.held_area += t_end - t_start
        self.events.append((seq, t_start - t0, t_start - t0, t_end - t0, t_end - t0))
