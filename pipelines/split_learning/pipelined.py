"""Run a pipeline schedule (:mod:`streampipe.schedule`) over model stages in one process.

:class:`StageWorker` is what one pipeline stage does for the actions ``F``, ``B`` and ``S``; an
MPI executor gives each rank its workers and moves the activations and gradients between ranks.
:func:`run_schedule_local` moves them through dicts instead, running each rank's actions in its
own order as soon as their inputs exist (the same rule as ``schedule.simulate``), and is the
reference an MPI executor must match.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from streampipe.schedule import Action, Schedule, ScheduleError, stage_ranks, validate

from .layers import Sequential
from .loss import softmax_cross_entropy
from .trainer import microbatch_bounds

__all__ = ["StageWorker", "run_schedule_local"]


class StageWorker:
    """One stage's side of pipelined training with the summed-gradient convention.

    Call :meth:`begin` once per minibatch, then ``forward``/``backward`` per microbatch in any
    schedule's order, then :meth:`step`. The last stage computes the loss itself from ``labels``.
    """

    def __init__(self, stage: Sequential, opt: Any, *, last: bool) -> None:
        self.stage, self.opt, self.last = stage, opt, last
        self._labels: dict[Hashable, Any] = {}
        self._grad_out: dict[Hashable, Any] = {}
        self.loss = 0.0
        self._n = 0

    def begin(self, n_samples: int, labels: dict[Hashable, Any] | None = None) -> None:
        """Start a minibatch of ``n_samples``; the last stage needs the microbatch ``labels``."""
        if self.last and labels is None:
            raise ValueError("labels: the last stage needs each microbatch's labels")
        self.stage.zero_grad()
        self._labels = dict(labels or {})
        self._n, self.loss = n_samples, 0.0

    def set_label(self, mb: Hashable, labels: Any) -> None:
        """Hand the last stage the labels of ``mb`` when they arrive after :meth:`begin`."""
        self._labels[mb] = labels

    def forward(self, mb: Hashable, x: Any) -> Any:
        """Forward microbatch ``mb``; returns the activation to send on (None on the last stage)."""
        out = self.stage.forward(x, mb)
        if not self.last:
            return out
        loss, self._grad_out[mb] = softmax_cross_entropy(out, self._labels[mb], reduction="sum")
        self.loss += float(loss)
        return None

    def backward(self, mb: Hashable, grad: Any = None) -> Any:
        """Backward microbatch ``mb`` (the last stage uses its own loss gradient)."""
        if self.last:
            grad = self._grad_out.pop(mb)
        return self.stage.backward(grad, mb)

    def step(self) -> None:
        """Divide the summed gradients by the minibatch size once, then update the weights."""
        for g in self.stage.grads:
            g /= self._n
        self.opt.step(self.stage.params, self.stage.grads)


def run_schedule_local(schedule: Schedule, stages: Sequence[Sequential], opts: Sequence[Any],
                       X: Any, y: Any) -> float:
    """One minibatch step of ``schedule`` over ``stages`` (stage i uses ``opts[i]``).

    The minibatch ``(X, y)`` is cut with :func:`microbatch_bounds` into as many microbatches as
    the schedule has. Returns the minibatch's summed loss.
    """
    validate(schedule)
    owner = stage_ranks(schedule)
    if len(stages) != len(owner) or len(opts) != len(owner):
        raise ScheduleError(
            f"stages/opts: the schedule has {len(owner)} stages, got {len(stages)} stages and "
            f"{len(opts)} optimizers"
        )
    n_mb = 1 + max(a.microbatch for acts in schedule.values() for a in acts
                   if a is not None and a.kind == "F")
    bounds = microbatch_bounds(len(y), n_mb)
    last = len(stages) - 1
    workers = [StageWorker(st, op, last=(i == last))
               for i, (st, op) in enumerate(zip(stages, opts, strict=True))]
    for i, w in enumerate(workers):
        w.begin(len(y), {m: y[a:b] for m, (a, b) in enumerate(bounds)} if i == last else None)

    acts: dict[tuple[int, int], Any] = {(0, m): X[a:b] for m, (a, b) in enumerate(bounds)}
    grads: dict[tuple[int, int], Any] = {}

    def run(a: Action) -> bool:
        s, m = a.stage, a.microbatch
        if a.kind == "F":
            if (s, m) not in acts:
                return False
            out = workers[s].forward(m, acts.pop((s, m)))
            if s < last:
                acts[(s + 1, m)] = out
        elif a.kind == "B":
            if s < last and (s, m) not in grads:
                return False
            g = workers[s].backward(m, grads.pop((s, m), None))
            if s > 0:
                grads[(s - 1, m)] = g
        else:
            workers[s].step()
        return True

    todo = {r: [a for a in acts_r if a is not None] for r, acts_r in schedule.items()}
    ptr = dict.fromkeys(todo, 0)
    while any(ptr[r] < len(todo[r]) for r in todo):
        moved = False
        for r in todo:
            while ptr[r] < len(todo[r]) and run(todo[r][ptr[r]]):
                ptr[r] += 1
                moved = True
        if not moved:  # validate() already proved the schedule deadlock-free
            raise AssertionError("run_schedule_local: no progress on a validated schedule")
    return workers[last].loss
