"""Who runs what in a training job: ranks, stage placement per step, links, step order.

A :class:`Layout` places the model's ``S`` stages on MPI ranks. The schedule (:mod:`streampipe.
schedule`) is built as a *template* over one virtual rank per stage (GPipe, 1F1B, ZB-H1) or per
pipeline position (interleaved 1F1B, stage ``s`` at position ``s % P``); a layout maps each
stage to a *position* and, for each *path*, each position to the ranks that run it. The actions
of stages that share a physical rank are merged in the order of the template's unit-time dry-run
start times: a topological order of every dependency, so the merged schedule cannot deadlock
(and it is validated anyway), and each stage keeps its own action order, so its gradients are
still added in microbatch order.

A position may have several ranks (*replicas*, data parallel inside the pipeline): replica ``j``
of ``k`` runs microbatches ``mb`` with ``mb % k == j`` of each of the position's stages, and the
replicas all-reduce their summed gradients before the optimizer step.

Paths exist for split learning (:mod:`pipelines.split_learning`): each client's turn puts stage
0 on that client's rank. The plain :class:`Pipeline` has one path. A layout also decides which
stage copies each rank holds (their checkpoint names), where the data lives and in which order
minibatches come (:meth:`Layout.steps`), and may add lines to the end-of-run report.

Pure Python apart from the data hooks: ``streampipe plan`` and the tests use it without MPI.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np

from ..schedule import GENERATORS, Action, Schedule, interleaved_1f1b, simulate, validate

__all__ = ["Layout", "Pipeline", "LINK_KINDS"]

LINK_KINDS = ("activation", "gradient", "label")


class Layout:
    """Base class: geometry from ``[train]``, placement from :meth:`position_ranks`.

    Subclasses set :attr:`KEYS` / :attr:`DATA_KEYS` (extra ``[train]`` / ``[train.data]`` keys
    they accept, name -> type) and override :meth:`position_ranks`, :meth:`stage_position`,
    :attr:`size`, :meth:`rank_name`, :meth:`copies` and the data hooks as needed.
    """

    KEYS: dict[str, Any] = {}
    DATA_KEYS: dict[str, Any] = {}
    title = "pipeline"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.n_stages: int = cfg.n_stages
        self.schedule: str = cfg.schedule
        self.microbatches: int = cfg.microbatches
        self.virtual: int = cfg.virtual
        self._check_schedule()

    # ------------------------------------------------------------------ geometry
    def _check_schedule(self) -> None:
        v, n = self.virtual, self.n_stages
        if not self.interleaved:
            if v != 1:
                raise ValueError(f"train.virtual: only schedule \"interleaved\" uses it; must "
                                 f"be 1 for schedule {self.schedule!r}, got {v}")
            return
        if not isinstance(v, int) or v < 2:
            raise ValueError(f"train.virtual: must be >= 2 for schedule \"interleaved\", got {v!r}")
        if n % v or n < 2 * v:
            raise ValueError(f"train.cuts: schedule \"interleaved\" with virtual = {v} needs a "
                             f"multiple of {v} stages, at least {2 * v} (two pipeline ranks), "
                             f"got {n} stage(s)")
        if self.microbatches % self.n_positions:
            raise ValueError(f"train.microbatches: must be a multiple of the number of pipeline "
                             f"ranks ({self.n_positions}) for schedule \"interleaved\", got "
                             f"{self.microbatches}")

    @property
    def last(self) -> int:
        return self.n_stages - 1

    @property
    def interleaved(self) -> bool:
        return self.schedule == "interleaved"

    @property
    def n_positions(self) -> int:
        """Pipeline positions: one per stage, or ``S / V`` when interleaved."""
        return self.n_stages // self.virtual if self.interleaved else self.n_stages

    def stage_position(self, stage: int) -> int:
        return stage % self.n_positions if self.interleaved else stage

    @property
    def n_paths(self) -> int:
        return 1

    @property
    def size(self) -> int:
        raise NotImplementedError

    def position_ranks(self, path: int, position: int) -> tuple[int, ...]:
        """The ranks (replicas) running ``position`` on ``path``."""
        raise NotImplementedError

    def rank_name(self, rank: int) -> str:
        raise NotImplementedError

    def copies(self, rank: int) -> dict[int, str]:
        """Stage -> checkpoint name of each stage copy whose weights ``rank`` holds."""
        raise NotImplementedError

    # ------------------------------------------------------------------ placement
    def route(self, path: int) -> dict[int, tuple[int, ...]]:
        """Stage -> replica ranks on ``path``."""
        return {s: self.position_ranks(path, self.stage_position(s))
                for s in range(self.n_stages)}

    def owner(self, path: int) -> dict[tuple[int, int], int]:
        """(stage, microbatch) -> the rank that runs it on ``path``."""
        return {(s, m): ranks[m % len(ranks)] for s, ranks in self.route(path).items()
                for m in range(self.microbatches)}

    @property
    def replicated(self) -> bool:
        return any(len(r) > 1 for p in range(self.n_paths) for r in self.route(p).values())

    @cached_property
    def template(self) -> Schedule:
        """The schedule over stages, one virtual rank per stage (interleaved: per position)."""
        if self.interleaved:
            return interleaved_1f1b(self.n_positions, self.microbatches, self.virtual)
        return GENERATORS[self.schedule](self.n_stages, self.microbatches)

    @cached_property
    def _starts(self) -> dict[Action, float]:
        sim = simulate(self.template)
        return {a: start for ev in sim.events.values() for a, start, _ in ev}

    def physical(self, path: int = 0) -> Schedule:
        """Rank -> actions in a minibatch step of ``path`` (ranks not on it have none)."""
        cached = self.__dict__.setdefault("_physical", {})
        if path in cached:
            return cached[path]
        route, starts = self.route(path), self._starts
        out: Schedule = {}
        for acts in self.template.values():
            for a in acts:
                if a is None:
                    continue
                ranks = route[a.stage]
                targets = ranks if a.kind == "S" else (ranks[a.microbatch % len(ranks)],)
                for r in targets:
                    out.setdefault(r, []).append(a)
        for r in out:
            out[r].sort(key=lambda a: (starts[a], a.stage))
        validate(out, replicated=self.replicated)
        cached[path] = out
        return out

    def actions(self, rank: int, path: int) -> list[Action]:
        """What ``rank`` does in a minibatch step of ``path``."""
        return [a for a in self.physical(path).get(rank, []) if a is not None]

    def replica_groups(self) -> list[tuple[int, ...]]:
        """Rank groups that all-reduce gradients (every position with more than one rank)."""
        groups = {ranks for p in range(self.n_paths) for ranks in self.route(p).values()
                  if len(ranks) > 1}
        return sorted(groups)

    def links(self) -> list[tuple[int, int, str]]:
        """Every (src, dst, kind) that carries data in some step, in a fixed order.

        Index ``i`` of this list is the link's edge id offset, so all ranks agree on edge ids.
        Labels go from the rank holding microbatch ``mb``'s input (stage 0's) to the last
        stage's.
        """
        found: set[tuple[int, int, str]] = set()
        for p in range(self.n_paths):
            own = self.owner(p)
            for m in range(self.microbatches):
                for s in range(self.last):
                    a, b = own[(s, m)], own[(s + 1, m)]
                    if a != b:
                        found.add((a, b, "activation"))
                        found.add((b, a, "gradient"))
                if own[(0, m)] != own[(self.last, m)]:
                    found.add((own[(0, m)], own[(self.last, m)], "label"))
        return sorted(found, key=lambda x: (x[0], x[1], LINK_KINDS.index(x[2])))

    def path_copies(self, path: int) -> list[str]:
        """The checkpoint names of ``path``'s stage copies, in stage order."""
        return [self.copies(ranks[0])[s] for s, ranks in self.route(path).items()]

    def path_name(self, path: int) -> str:
        return "model" if self.n_paths == 1 else f"path{path}"

    @cached_property
    def _holders(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in range(self.size):
            for name in self.copies(r).values():
                out.setdefault(name, r)
        return out

    def first_holder(self, name: str) -> int:
        """The rank whose copy of ``name`` is checkpointed (replicas hold the same weights)."""
        return self._holders[name]

    def capacity(self) -> int:
        """Credits per link: the most one step puts on one (every stage pair of two ranks)."""
        return max(2, self.microbatches * self.virtual)

    # ------------------------------------------------------------------ data and order
    def uses_source(self, cfg: Any) -> bool:
        """Whether ``[train.data] source`` is read by the framework (:mod:`.data`)."""
        return True

    def load_data(self, cfg: Any, data: Any) -> tuple[dict[int, Any], Any]:
        """(path -> its training data, test data or None) from the job's data source
        (``data`` is :func:`streampipe.train.data.load_source`'s, or None when
        :meth:`uses_source` says no)."""
        return {0: data.train}, data.test

    def rng_note(self, seed: int, epoch: int) -> str:
        """How the next epoch's minibatch order is drawn (the checkpoint's ``rng`` attribute)."""
        if not self.cfg.shuffle:
            return "file order (shuffle = false)"
        return f"default_rng([{seed}, {epoch}]) for the next epoch"

    def data_ranks(self, path: int) -> tuple[int, ...]:
        """Ranks holding ``path``'s inputs and labels (stage 0's ranks)."""
        return self.route(path)[0]

    def steps(self, epoch: int, sizes: dict[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(path, sample indices)`` of every minibatch step of ``epoch``."""
        from .data import minibatch_order

        for idx in minibatch_order(sizes[0], self.cfg.minibatch, epoch, self.cfg.seed,
                                   self.cfg.shuffle):
            yield 0, idx

    def describe(self) -> str:
        """A few lines for ``streampipe plan``: ranks, their stages, and the links."""
        sched = (f"{self.schedule} ({self.virtual} model chunks per rank)" if self.interleaved
                 else self.schedule)
        lines = [f"{self.title}: {self.size} rank(s); schedule {sched}, {self.microbatches} "
                 f"microbatches{self._describe_extra()}"]
        for r in range(self.size):
            st = ", ".join(str(s) for s in self.copies(r))
            lines.append(f"  rank {r:>2}  {self.rank_name(r):<10} stage(s) {st}")
        return "\n".join(lines)

    def _describe_extra(self) -> str:
        return ""

    # ------------------------------------------------------------------ end of run
    def finish(self, session: Any) -> dict[str, Any]:
        """Extra per-rank results measured at the end (on every rank; default none)."""
        return {}

    def result(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """Extra entries of the run's result (rank 0; default none)."""
        return {}

    def report_lines(self, result: dict[str, Any], ranks: list[dict[str, Any]]) -> list[str]:
        """Extra lines for the end-of-run report (rank 0)."""
        return []


class Pipeline(Layout):
    """The plain pipeline: position ``p`` on ``replicas[p]`` consecutive ranks, one path.

    Rank names are ``pipe{p}`` (``pipe{p}.{j}`` for replica ``j``); stage ``s``'s weights are
    checkpointed as ``stage{s}`` (replicas hold identical copies; the first one's is saved).
    """

    title = "pipeline-parallel training"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        reps = list(cfg.replicas) or [1] * self.n_positions
        if len(reps) != self.n_positions:
            raise ValueError(f"train.replicas: needs one count per pipeline position "
                             f"({self.n_positions}), got {len(reps)}")
        for i, k in enumerate(reps):
            if k > self.microbatches:
                raise ValueError(f"train.replicas[{i}]: {k} replicas need at least {k} "
                                 f"microbatches (each takes every {k}-th), got "
                                 f"{self.microbatches}")
        self.replicas = reps
        self._first = [sum(reps[:p]) for p in range(len(reps))]

    @property
    def size(self) -> int:
        return sum(self.replicas)

    def position_ranks(self, path: int, position: int) -> tuple[int, ...]:
        return tuple(range(self._first[position], self._first[position] + self.replicas[position]))

    def _position_of(self, rank: int) -> tuple[int, int]:
        for p, first in enumerate(self._first):
            if first <= rank < first + self.replicas[p]:
                return p, rank - first
        raise ValueError(f"rank {rank}: not in a job of {self.size} ranks")

    def rank_name(self, rank: int) -> str:
        p, j = self._position_of(rank)
        return f"pipe{p}" if self.replicas[p] == 1 else f"pipe{p}.{j}"

    def copies(self, rank: int) -> dict[int, str]:
        p, _ = self._position_of(rank)
        return {s: f"stage{s}" for s in range(self.n_stages) if self.stage_position(s) == p}

    def _describe_extra(self) -> str:
        if any(k > 1 for k in self.replicas):
            return f", replicas per position {self.replicas} (gradients all-reduced)"
        return ""
