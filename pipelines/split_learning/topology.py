"""Who runs what in split learning: client and server ranks, stage owners, per-rank schedules.

The model is cut into ``S`` pipeline stages. Stage 0 (the bottom, next to the raw data) always
runs on the client whose turn it is; with ``u_shape`` the last stage (the head, next to the
labels) does too, so labels never leave the client. The stages in between run on server ranks,
one stage per rank (the server side may itself be a pipeline). Ranks: clients ``0..C-1``, then
the server stages in order.

With ``schedule = "interleaved"`` (Megatron's interleaved 1F1B, ``virtual = V`` model chunks per
rank) the pipeline has ``P = S / V`` positions and stage ``s`` runs at position ``s % P``:
position 0 is the active client (stages ``0, P, 2P, ...``, one copy per client like the bottom),
positions ``1..P-1`` are the server ranks. Activations of stage ``s = kP + P - 1`` wrap around
from the last server rank back to the client. The per-position action lists of
:func:`streampipe.schedule.interleaved_1f1b` are used as they are (no merge needed).

The pipeline schedule (GPipe or 1F1B from :mod:`streampipe.schedule`) is built over the ``S``
stages as if each had its own rank, dry-run at unit time, and the actions of stages that share a
physical rank (the U-shape client) are merged in order of their dry-run start times. That order
is a topological order of every dependency, so the merged schedule cannot deadlock (and is
checked by :func:`streampipe.schedule.validate` anyway); each stage keeps its own action order,
so its gradients are still added in microbatch order.

Pure Python: no MPI, no numpy; ``streampipe plan`` and the tests use it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from streampipe.schedule import (
    Action,
    Schedule,
    gpipe,
    interleaved_1f1b,
    one_f_one_b,
    simulate,
    validate,
)

__all__ = ["Topology", "SCHEDULES"]

SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b, "interleaved": interleaved_1f1b}
LINK_KINDS = ("activation", "gradient", "label")


@dataclass(frozen=True)
class Topology:
    """Ranks and per-minibatch schedules of a split-learning job (see the module docstring)."""

    n_stages: int
    clients: int
    u_shape: bool
    schedule: str
    microbatches: int
    virtual: int = 1  # model chunks per rank (schedule "interleaved" only)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule: must be one of {sorted(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.clients < 1:
            raise ValueError(f"train.clients: must be >= 1, got {self.clients}")
        if self.interleaved:
            self._check_interleaved()
            return
        if self.virtual != 1:
            raise ValueError(f"train.virtual: only schedule \"interleaved\" uses it; must be 1 "
                             f"for schedule {self.schedule!r}, got {self.virtual}")
        need = 3 if self.u_shape else 2
        if self.n_stages < need:
            raise ValueError(
                f"train.cuts: {'a U-shaped' if self.u_shape else 'a'} split needs at least "
                f"{need} stages (client bottom, server{', client head' if self.u_shape else ''}),"
                f" got {self.n_stages} stage(s) from {self.n_stages - 1} cut(s)")

    def _check_interleaved(self) -> None:
        v, n = self.virtual, self.n_stages
        if not isinstance(v, int) or v < 2:
            raise ValueError(f"train.virtual: must be >= 2 for schedule \"interleaved\", got {v!r}")
        if self.u_shape:
            raise ValueError("train.u_shape: not supported with schedule \"interleaved\" (its "
                             "layout puts the last stage on the last server rank, not the client)")
        if n % v or n < 2 * v:
            raise ValueError(f"train.cuts: schedule \"interleaved\" with virtual = {v} needs a "
                             f"multiple of {v} stages, at least {2 * v} (a client and a server "
                             f"rank), got {n} stage(s) from {n - 1} cut(s)")
        if self.microbatches % self.pipeline_ranks:
            raise ValueError(f"train.microbatches: must be a multiple of the number of pipeline "
                             f"ranks ({self.pipeline_ranks}) for schedule \"interleaved\", got "
                             f"{self.microbatches}")

    # ------------------------------------------------------------------ ranks
    @property
    def last(self) -> int:
        return self.n_stages - 1

    @property
    def interleaved(self) -> bool:
        return self.schedule == "interleaved"

    @property
    def pipeline_ranks(self) -> int:
        """Ranks on one client's path: the active client plus the server ranks."""
        return self.n_stages // self.virtual if self.interleaved else 1 + self.server_ranks

    @property
    def client_stages(self) -> tuple[int, ...]:
        if self.interleaved:
            return tuple(range(0, self.n_stages, self.pipeline_ranks))
        return (0, self.last) if self.u_shape else (0,)

    @property
    def server_stages(self) -> tuple[int, ...]:
        mine = set(self.client_stages)
        return tuple(s for s in range(self.n_stages) if s not in mine)

    @property
    def server_ranks(self) -> int:
        """Server ranks: one per server stage, or ``P - 1`` when interleaved."""
        if self.interleaved:
            return self.pipeline_ranks - 1
        return len(self.server_stages)

    @property
    def size(self) -> int:
        """Number of MPI ranks: one per client plus the server ranks."""
        return self.clients + self.server_ranks

    def _position(self, stage: int) -> int:
        """Pipeline position of a stage: 0 = the active client, ``i >= 1`` = server rank i."""
        if self.interleaved:
            return stage % self.pipeline_ranks
        return 0 if stage in self.client_stages else self.server_stages.index(stage) + 1

    def is_client(self, rank: int) -> bool:
        return rank < self.clients

    def owner(self, client: int) -> dict[int, int]:
        """Stage -> rank while ``client`` has its turn."""
        return {s: client if (p := self._position(s)) == 0 else self.clients + p - 1
                for s in range(self.n_stages)}

    def stages_of(self, rank: int) -> tuple[int, ...]:
        """The stages a rank holds weights for (a client holds them whether active or not)."""
        if self.is_client(rank):
            return self.client_stages
        return tuple(s for s in self.server_stages
                     if self._position(s) == rank - self.clients + 1)

    def rank_name(self, rank: int) -> str:
        if self.is_client(rank):
            return f"client{rank}"
        return f"server{rank - self.clients + 1}"

    def stage_name(self, stage: int, client: int | None = None) -> str:
        """Checkpoint name of a stage's weights: client stages exist once per client."""
        if stage in self.client_stages:
            part = "bottom" if stage == 0 else "head" if stage == self.last else f"stage{stage}"
            return f"client{client}_{part}"
        return f"server_stage{stage}"

    # ------------------------------------------------------------------ schedules
    @cached_property
    def template(self) -> Schedule:
        """The schedule over stages, one virtual rank per stage (interleaved: per position)."""
        if self.interleaved:
            return interleaved_1f1b(self.pipeline_ranks, self.microbatches, self.virtual)
        return SCHEDULES[self.schedule](self.n_stages, self.microbatches)

    @cached_property
    def _starts(self) -> dict[Action, float]:
        sim = simulate(self.template)
        return {a: start for ev in sim.events.values() for a, start, _ in ev}

    def physical(self, client: int = 0) -> Schedule:
        """Rank -> actions while ``client`` has its turn (other clients have no actions)."""
        owner = self.owner(client)
        out: Schedule = {}
        if self.interleaved:  # one position per rank: keep each position's own order
            for pos, acts in self.template.items():
                out[owner[pos]] = [a for a in acts if a is not None]
            validate(out)
            return out
        starts = self._starts
        for rank in sorted(set(owner.values())):
            mine = [s for s, r in owner.items() if r == rank]
            acts = [a for s in mine for a in self.template[s] if a is not None]
            out[rank] = sorted(acts, key=lambda a: (starts[a], a.stage))
        validate(out)
        return out

    def actions(self, rank: int, client: int) -> list[Action]:
        """What ``rank`` does in a minibatch step of ``client``."""
        return self.physical(client).get(rank, [])

    def links(self) -> list[tuple[int, int, str]]:
        """Every (src, dst, kind) that carries data in some step, in a fixed order.

        Index ``i`` of this list is the link's edge id offset, so all ranks agree on edge ids.
        """
        found: set[tuple[int, int, str]] = set()
        for c in range(self.clients):
            own = self.owner(c)
            for s in range(self.last):
                a, b = own[s], own[s + 1]
                if a != b:
                    found.add((a, b, "activation"))
                    found.add((b, a, "gradient"))
            if own[0] != own[self.last]:
                found.add((own[0], own[self.last], "label"))
        return sorted(found, key=lambda x: (x[0], x[1], LINK_KINDS.index(x[2])))

    def describe(self) -> str:
        """A few lines for ``streampipe plan``: ranks, their stages, and the links."""
        sched = (f"{self.schedule} ({self.virtual} model chunks per rank)" if self.interleaved
                 else self.schedule)
        lines = [f"split learning: {self.clients} client(s), {self.server_ranks} server "
                 f"rank(s), {'U-shaped' if self.u_shape else 'labels sent to the server'}"
                 f"; schedule {sched}, {self.microbatches} microbatches"]
        for r in range(self.size):
            st = ", ".join(str(s) for s in self.stages_of(r))
            lines.append(f"  rank {r:>2}  {self.rank_name(r):<10} stage(s) {st}")
        return "\n".join(lines)
