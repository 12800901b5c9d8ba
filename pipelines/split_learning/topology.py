"""Who runs what in split learning: client and server ranks, stage owners, per-rank schedules.

The model is cut into ``S`` pipeline stages. Stage 0 (the bottom, next to the raw data) always
runs on the client whose turn it is; with ``u_shape`` the last stage (the head, next to the
labels) does too, so labels never leave the client. The stages in between run on server ranks,
one stage per rank (the server side may itself be a pipeline). Ranks: clients ``0..C-1``, then
the server stages in order.

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

from streampipe.schedule import Action, Schedule, gpipe, one_f_one_b, simulate, validate

__all__ = ["Topology", "SCHEDULES"]

SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b}
LINK_KINDS = ("activation", "gradient", "label")


@dataclass(frozen=True)
class Topology:
    """Ranks and per-minibatch schedules of a split-learning job (see the module docstring)."""

    n_stages: int
    clients: int
    u_shape: bool
    schedule: str
    microbatches: int

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule: must be one of {sorted(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.clients < 1:
            raise ValueError(f"train.clients: must be >= 1, got {self.clients}")
        need = 3 if self.u_shape else 2
        if self.n_stages < need:
            raise ValueError(
                f"train.cuts: {'a U-shaped' if self.u_shape else 'a'} split needs at least "
                f"{need} stages (client bottom, server{', client head' if self.u_shape else ''}),"
                f" got {self.n_stages} stage(s) from {self.n_stages - 1} cut(s)")

    # ------------------------------------------------------------------ ranks
    @property
    def last(self) -> int:
        return self.n_stages - 1

    @property
    def client_stages(self) -> tuple[int, ...]:
        return (0, self.last) if self.u_shape else (0,)

    @property
    def server_stages(self) -> tuple[int, ...]:
        return tuple(range(1, self.last if self.u_shape else self.n_stages))

    @property
    def size(self) -> int:
        """Number of MPI ranks: one per client plus one per server stage."""
        return self.clients + len(self.server_stages)

    def is_client(self, rank: int) -> bool:
        return rank < self.clients

    def owner(self, client: int) -> dict[int, int]:
        """Stage -> rank while ``client`` has its turn."""
        out = {s: self.clients + i for i, s in enumerate(self.server_stages)}
        for s in self.client_stages:
            out[s] = client
        return dict(sorted(out.items()))

    def stages_of(self, rank: int) -> tuple[int, ...]:
        """The stages a rank holds weights for (a client holds them whether active or not)."""
        if self.is_client(rank):
            return self.client_stages
        return (self.server_stages[rank - self.clients],)

    def rank_name(self, rank: int) -> str:
        if self.is_client(rank):
            return f"client{rank}"
        return f"server{rank - self.clients + 1}"

    def stage_name(self, stage: int, client: int | None = None) -> str:
        """Checkpoint name of a stage's weights: client stages exist once per client."""
        if stage in self.client_stages:
            part = "bottom" if stage == 0 else "head"
            return f"client{client}_{part}"
        return f"server_stage{stage}"

    # ------------------------------------------------------------------ schedules
    @cached_property
    def template(self) -> Schedule:
        """The schedule over stages, one virtual rank per stage."""
        return SCHEDULES[self.schedule](self.n_stages, self.microbatches)

    @cached_property
    def _starts(self) -> dict[Action, float]:
        sim = simulate(self.template)
        return {a: start for ev in sim.events.values() for a, start, _ in ev}

    def physical(self, client: int = 0) -> Schedule:
        """Rank -> actions while ``client`` has its turn (other clients have no actions)."""
        owner = self.owner(client)
        starts = self._starts
        out: Schedule = {}
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
        lines = [f"split learning: {self.clients} client(s), {len(self.server_stages)} server "
                 f"stage rank(s), {'U-shaped' if self.u_shape else 'labels sent to the server'}"
                 f"; schedule {self.schedule}, {self.microbatches} microbatches"]
        for r in range(self.size):
            st = ", ".join(str(s) for s in self.stages_of(r))
            lines.append(f"  rank {r:>2}  {self.rank_name(r):<10} stage(s) {st}")
        return "\n".join(lines)
