"""JobSpec -> Plan: which rank runs which stage replica, and the edges between them.

Plain data without MPI, so ``streampipe plan``, the simulator and the tests share exactly what the
runtime executes. Ranks are given in stage order; a replica of a group stage is ``group``
consecutive ranks whose first one (the root) does all channel traffic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import config
from .job import JobSpec

__all__ = ["Plan", "StagePlan", "Role", "make_plan"]


@dataclass(frozen=True)
class StagePlan:
    """One stage: its index, kind and, per replica, the ranks of its group (root first)."""

    index: int
    name: str
    kind: str  # "source" | "stage" | "sink"
    replicas: int
    group: int
    capacity: int
    groups: tuple[tuple[int, ...], ...]
    feedback_to: int | None = None
    device: str = "cpu"
    timeout: float | None = None

    @property
    def roots(self) -> tuple[int, ...]:
        return tuple(g[0] for g in self.groups)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(r for g in self.groups for r in g)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagePlan:
        """The inverse of ``asdict``; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["groups"] = tuple(tuple(int(r) for r in g) for g in d["groups"])
        return cls(**kw)


@dataclass(frozen=True)
class Role:
    """What one rank does: its stage, replica, place in the group, and its edges."""

    rank: int
    stage: int
    replica: int
    group_rank: int
    group: tuple[int, ...]
    upstream: tuple[int, ...]  # root ranks sending data to this rank (empty for the source)
    downstream: tuple[int, ...]  # root ranks this rank sends data to (empty for the sink)
    feedback_out: tuple[int, ...] = ()  # roots of the stage this one feeds back to
    feedback_in: tuple[int, ...] = ()  # roots of the stage feeding back to this one

    @property
    def is_root(self) -> bool:
        return self.group_rank == 0


@dataclass
class Plan:
    """The executable layout of a job: stages, ranks and edge ids."""

    name: str
    stages: list[StagePlan]
    ordered: bool
    batch: int
    start_seq: int = 0
    markers: list[bool] = field(default_factory=list)
    max_delay: float = 1e-3  # seconds a small record may wait for its batch

    @property
    def size(self) -> int:
        return sum(len(s.ranks) for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what a run file stores); :meth:`from_dict` reads it back."""
        return {"name": self.name, "stages": [asdict(s) for s in self.stages],
                "ordered": self.ordered, "batch": self.batch, "start_seq": self.start_seq,
                "markers": list(self.markers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A Plan from :meth:`to_dict` data, also from older run files (no ``name`` or
        ``markers``) and training run files (one pseudo-stage per rank, extra keys ignored)."""
        return cls(name=d.get("name", ""), stages=[StagePlan.from_dict(s) for s in d["stages"]],
                   ordered=bool(d.get("ordered", True)), batch=int(d.get("batch", 1)),
                   start_seq=int(d.get("start_seq", 0)),
                   markers=[bool(m) for m in d.get("markers", [])])

    def rank_stage(self) -> dict[int, StagePlan]:
        """Rank -> the stage it runs."""
        return {r: s for s in self.stages for r in s.ranks}

    def stage_of(self, rank: int) -> StagePlan:
        for s in self.stages:
            if rank in s.ranks:
                return s
        raise ValueError(f"rank {rank} is outside the plan (size {self.size})")

    def merge_kind(self, i: int) -> str | None:
        """How stage ``i`` orders input from several upstream ranks: ``None`` (FIFO: one
        upstream rank, or unordered), ``"cursor"`` (this replica sees the whole stream and
        follows the key tree) or ``"heads"`` (a replica sees part of the stream: merge the sorted
        upstream streams by their heads)."""
        if not self.ordered or i == 0 or self.stages[i - 1].replicas == 1:
            return None
        return "cursor" if self.stages[i].replicas == 1 else "heads"

    def sends_watermark(self, i: int) -> bool:
        """Whether stage ``i`` feeds back and reports how far it got: only a single replica with
        ordered input handles seqs in order, so only then does a watermark mean anything."""
        st = self.stages[i]
        return self.ordered and st.feedback_to is not None and st.replicas == 1

    def role(self, rank: int) -> Role:
        st = self.stage_of(rank)
        rep, grank = next((i, g.index(rank)) for i, g in enumerate(st.groups) if rank in g)
        i = st.index
        up = self.stages[i - 1].roots if i > 0 else ()
        down = self.stages[i + 1].roots if i + 1 < len(self.stages) else ()
        fb_out = self.stages[st.feedback_to].roots if st.feedback_to is not None else ()
        fb_in = tuple(r for s in self.stages if s.feedback_to == i for r in s.roots)
        if grank:
            up = down = fb_out = fb_in = ()
        return Role(rank, i, rep, grank, st.groups[rep], up, down, fb_out, fb_in)

    def format(self) -> str:
        """A printable table of the plan: one line per stage replica."""
        head = f"plan {self.name!r}: {self.size} ranks, ordered={self.ordered}, batch={self.batch}"
        lines = [head,
                 f"{'stage':<16}{'kind':<8}{'replica':>8}  {'ranks':<14}{'capacity':>9}  edges"]
        for s in self.stages:
            for r, g in enumerate(s.groups):
                nxt = self.stages[s.index + 1].name if s.index + 1 < len(self.stages) else "-"
                fb = ""
                if s.feedback_to is not None:
                    fb = f", feedback -> {self.stages[s.feedback_to].name}"
                ranks = ",".join(map(str, g))
                lines.append(f"{s.name:<16}{s.kind:<8}{r:>8}  {ranks:<14}{s.capacity:>9}"
                             f"  -> {nxt}{fb}")
        return "\n".join(lines)


def make_plan(spec: JobSpec, start_seq: int = 0, max_delay: float | None = None) -> Plan:
    """Lay the stages of ``spec`` out over ranks 0..N-1 in stage order (``max_delay``: the run's
    explicit setting, if any)."""
    stages: list[StagePlan] = []
    rank = 0
    n = len(spec.stages)
    names = [s.name for s in spec.stages]
    for i, s in enumerate(spec.stages):
        groups = []
        for _ in range(s.replicas):
            groups.append(tuple(range(rank, rank + s.group)))
            rank += s.group
        kind = "source" if i == 0 else "sink" if i == n - 1 else "stage"
        stages.append(StagePlan(
            index=i, name=s.name, kind=kind, replicas=s.replicas, group=s.group,
            capacity=s.capacity or spec.capacity, groups=tuple(groups),
            feedback_to=names.index(s.feedback_to) if s.feedback_to else None,
            device=s.device, timeout=s.timeout,
        ))
    plan = Plan(spec.name, stages, spec.ordered, spec.batch, start_seq,
                max_delay=config.resolve("max_delay", max_delay, spec.settings))
    # Order markers (tombstones, fan-out ends) are only needed by a cursor merge downstream;
    # a FIFO or a heads merge keeps order without them.
    cursor = [plan.merge_kind(i) == "cursor" for i in range(n)]
    plan.markers = [spec.ordered and any(cursor[i + 1:]) for i in range(n)]
    # A single-replica feedback producer with ordered input reports how far it got (a watermark),
    # so a consumer waiting for a value that will never come fails instead of waiting: dropped
    # items between the two must reach the producer as tombstones.
    for st in stages:
        if plan.sends_watermark(st.index):
            for j in range(st.feedback_to, st.index):
                plan.markers[j] = True
    return plan
