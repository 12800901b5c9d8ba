"""Run a pipeline schedule over stage workers in one process: the MPI executor's reference.

Values move through dicts instead of the wire, each rank's actions run in its own order as soon
as their inputs exist (the rule of :func:`streampipe.schedule.simulate`). Used by the tests to
check every schedule (GPipe, 1F1B, interleaved, ZB-H1) and every worker kind against serial
training without MPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..schedule import Action, Schedule, ScheduleError, stage_ranks, validate
from .worker import StageWorker

__all__ = ["microbatch_bounds", "run_schedule_local"]


def microbatch_bounds(minibatch: int, n_micro: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of ``n_micro`` near-equal microbatches of a minibatch."""
    if not isinstance(n_micro, int) or not 1 <= n_micro <= minibatch:
        raise ValueError(
            f"n_micro: must be an integer in 1..minibatch={minibatch}, got {n_micro!r}"
        )
    edges = [(minibatch * i) // n_micro for i in range(n_micro + 1)]
    return list(zip(edges, edges[1:], strict=False))


def run_schedule_local(schedule: Schedule, workers: Sequence[StageWorker], X: Any, y: Any
                       ) -> float:
    """One minibatch step of ``schedule`` over ``workers`` (worker ``i`` runs stage ``i``).

    ``(X, y)`` are host arrays, cut with :func:`microbatch_bounds` into as many microbatches as
    the schedule has and handed to the workers through ``from_wire``. Returns the minibatch's
    summed loss (the last worker's).
    """
    validate(schedule)
    owner = stage_ranks(schedule)
    if len(workers) != len(owner):
        raise ScheduleError(f"workers: the schedule has {len(owner)} stages, got {len(workers)}")
    n_mb = 1 + max(a.microbatch for acts in schedule.values() for a in acts
                   if a is not None and a.kind == "F")
    bounds = microbatch_bounds(len(y), n_mb)
    last = len(workers) - 1
    for w in workers:
        w.begin(len(y))
    acts: dict[tuple[int, int], Any] = {(0, m): workers[0].from_wire(X[a:b])
                                        for m, (a, b) in enumerate(bounds)}
    targets = {m: workers[last].from_wire(y[a:b]) for m, (a, b) in enumerate(bounds)}
    grads: dict[tuple[int, int], Any] = {}

    def run(a: Action) -> bool:
        s, m, w = a.stage, a.microbatch, workers[a.stage]
        if a.kind == "F":
            if (s, m) not in acts:
                return False
            out = w.forward(m, acts.pop((s, m)), targets[m] if s == last else None)
            if s < last:
                acts[(s + 1, m)] = out
        elif a.kind in ("B", "I"):
            if s < last and (s, m) not in grads:
                return False
            g = grads.pop((s, m), None)
            gin = w.backward(m, g) if a.kind == "B" else w.backward_input(m, g)
            if s > 0:
                grads[(s - 1, m)] = gin
        elif a.kind == "W":
            w.backward_weight(m)
        else:
            w.step()
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
