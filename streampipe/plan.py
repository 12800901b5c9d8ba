"""JobSpec -> Plan: which rank runs which stage replica, and the edges between them.

Plain data without MPI, so ``streampipe plan``, the simulator and the tests share exactly what the
runtime executes. Ranks are given in stage order; a replica of a group stage is ``group``
consecutive ranks whose first one (the root) does all channel traffic. An edge joins a stage to
one of the stages that read it (docs/runtime.md, "Graphs"); its receiving side decides how items
reach the replicas (``route``) and how several inputs meet (``join``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from . import config
from .graph import Graph, build_graph
from .job import JobSpec

__all__ = ["Plan", "StagePlan", "EdgePlan", "Role", "make_plan"]


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
    inputs: tuple[int, ...] = ()  # the stages it reads, in declared order
    join: str | None = None  # "merge" | "zip" (several inputs)
    route: str = "balance"  # "balance" | "key": how items reach its replicas
    source: int | None = None  # a source's number: its item i has seq i * n_sources + source

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
        if "inputs" in kw:
            kw["inputs"] = tuple(int(j) for j in kw["inputs"])
        return cls(**kw)


@dataclass(frozen=True)
class EdgePlan:
    """Items of stage ``src`` read by stage ``dst`` (as its input number ``port``)."""

    index: int
    src: int
    dst: int
    port: int


@dataclass(frozen=True)
class Role:
    """What one rank does: its stage, replica, place in the group, and its edges."""

    rank: int
    stage: int
    replica: int
    group_rank: int
    group: tuple[int, ...]
    inputs: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (edge, root ranks sending on it)
    outputs: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (edge, root ranks receiving)
    feedback_out: tuple[int, ...] = ()  # roots of the stage this one feeds back to
    feedback_in: tuple[int, ...] = ()  # roots of the stage feeding back to this one

    @property
    def is_root(self) -> bool:
        return self.group_rank == 0

    @property
    def upstream(self) -> tuple[int, ...]:
        """Every root rank sending data to this rank (empty for a source)."""
        return tuple(r for _, rs in self.inputs for r in rs)

    @property
    def downstream(self) -> tuple[int, ...]:
        """Every root rank this rank sends data to (empty for a sink)."""
        return tuple(r for _, rs in self.outputs for r in rs)


@dataclass
class Plan:
    """The executable layout of a job: stages, ranks and edges."""

    name: str
    stages: list[StagePlan]
    ordered: bool
    batch: int
    start_seq: int = 0
    max_delay: float = 1e-3  # seconds a small record may wait for its batch
    edges: list[EdgePlan] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(s.ranks) for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what a run file stores); :meth:`from_dict` reads it back."""
        return {"name": self.name, "stages": [asdict(s) for s in self.stages],
                "ordered": self.ordered, "batch": self.batch, "start_seq": self.start_seq,
                "edges": [asdict(e) for e in self.edges]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A Plan from :meth:`to_dict` data, also from older run files (no ``name`` or
        ``edges``: a chain) and training run files (one pseudo-stage per rank, extra keys
        ignored)."""
        stages = [StagePlan.from_dict(s) for s in d["stages"]]
        if "edges" in d:
            edges = [EdgePlan(**{k: int(e[k]) for k in ("index", "src", "dst", "port")})
                     for e in d["edges"]]
        else:  # a run file from before graphs: stage i reads stage i - 1
            edges = [EdgePlan(i - 1, i - 1, i, 0) for i in range(1, len(stages))]
            stages = [replace(s, inputs=(s.index - 1,) if s.index else ()) for s in stages]
        return cls(name=d.get("name", ""), stages=stages,
                   ordered=bool(d.get("ordered", True)), batch=int(d.get("batch", 1)),
                   start_seq=int(d.get("start_seq", 0)), edges=edges)

    def rank_stage(self) -> dict[int, StagePlan]:
        """Rank -> the stage it runs."""
        return {r: s for s in self.stages for r in s.ranks}

    @property
    def n_sources(self) -> int:
        return sum(1 for s in self.stages if s.kind == "source")

    @property
    def sinks(self) -> list[StagePlan]:
        return [s for s in self.stages if s.kind == "sink"]

    def stage_of(self, rank: int) -> StagePlan:
        for s in self.stages:
            if rank in s.ranks:
                return s
        raise ValueError(f"rank {rank} is outside the plan (size {self.size})")

    def edges_into(self, i: int) -> list[EdgePlan]:
        return sorted((e for e in self.edges if e.dst == i), key=lambda e: e.port)

    def edges_out_of(self, i: int) -> list[EdgePlan]:
        return [e for e in self.edges if e.src == i]

    def merge_kind(self, i: int) -> str | None:
        """How stage ``i`` orders its input: ``None`` (arrival order: one sending rank, or an
        unordered pipeline) or ``"heads"`` (the streams of several sending ranks merged by
        position, each sender telling how far it has got)."""
        senders = sum(self.stages[e.src].replicas for e in self.edges_into(i))
        return "heads" if self.ordered and senders > 1 else None

    def sends_watermark(self, i: int) -> bool:
        """Whether stage ``i`` feeds back and reports how far it got: only a single replica with
        ordered input handles seqs in order, so only then does a watermark mean anything."""
        st = self.stages[i]
        return self.ordered and st.feedback_to is not None and st.replicas == 1

    def reads_marks(self, checkpoint: bool = False) -> list[bool]:
        """Per stage: whether the ranks sending to it tell it how far they have got (progress
        marks). An ordered stage needs them where it merges several sending ranks by position
        (after replicas, at a join), where it checkpoints (the sink's high-water mark), where it
        sends feedback watermarks, and where a stage it feeds needs its marks (it can only say
        how far it has got when its own senders do). Elsewhere a mark is a message nobody reads:
        one per batch on every edge of a plain chain."""
        need = [False] * len(self.stages)
        if not self.ordered:
            return need
        order = Graph(tuple(s.name for s in self.stages),
                      tuple(tuple(e.src for e in self.edges_into(s.index))
                            for s in self.stages)).order()
        for i in reversed(order):  # every stage after the stages it feeds
            st = self.stages[i]
            need[i] = (self.merge_kind(i) == "heads" or self.sends_watermark(i)
                       or (checkpoint and st.kind == "sink")
                       or any(need[e.dst] for e in self.edges_out_of(i)))
        return need

    def role(self, rank: int) -> Role:
        st = self.stage_of(rank)
        rep, grank = next((i, g.index(rank)) for i, g in enumerate(st.groups) if rank in g)
        i = st.index
        if grank:
            return Role(rank, i, rep, grank, st.groups[rep])
        ins = tuple((e.index, self.stages[e.src].roots) for e in self.edges_into(i))
        outs = tuple((e.index, self.stages[e.dst].roots) for e in self.edges_out_of(i))
        fb_out = self.stages[st.feedback_to].roots if st.feedback_to is not None else ()
        fb_in = tuple(r for s in self.stages if s.feedback_to == i for r in s.roots)
        return Role(rank, i, rep, grank, st.groups[rep], ins, outs, fb_out, fb_in)

    def format(self) -> str:
        """A printable table of the plan: one line per stage replica, then the edges."""
        head = f"plan {self.name!r}: {self.size} ranks, ordered={self.ordered}, batch={self.batch}"
        lines = [head,
                 f"{'stage':<16}{'kind':<8}{'replica':>8}  {'ranks':<14}{'capacity':>9}  edges"]
        for s in self.stages:
            outs = [self.stages[e.dst].name for e in self.edges_out_of(s.index)]
            fb = f", feedback -> {self.stages[s.feedback_to].name}" if s.feedback_to is not None \
                else ""
            for r, g in enumerate(s.groups):
                ranks = ",".join(map(str, g))
                lines.append(f"{s.name:<16}{s.kind:<8}{r:>8}  {ranks:<14}{s.capacity:>9}"
                             f"  -> {', '.join(outs) or '-'}{fb}")
        if not self.is_chain:
            lines.append("graph:")
            for s in self.stages:
                ins = [self.stages[j].name for j in s.inputs]
                if not ins:
                    continue
                how = f"join {s.join}" if len(ins) > 1 else "reads"
                route = f", route {s.route}" if s.replicas > 1 else ""
                lines.append(f"  {' + '.join(ins)} -> {s.name}  ({how}{route}, "
                             f"{s.replicas} replica{'s' if s.replicas > 1 else ''})")
        return "\n".join(lines)

    @property
    def is_chain(self) -> bool:
        """Every stage reads only the stage before it (a plan built without edges counts as
        one: stage i after stage i - 1)."""
        if not self.edges:
            return True
        return all(s.inputs == ((s.index - 1,) if s.index else ()) for s in self.stages)


def _graph(spec: JobSpec) -> Graph:
    if spec.graph is not None:
        return spec.graph
    # a spec validated without its classes (or built by hand): inputs as declared, defaults
    # by position
    return build_graph([s.name for s in spec.stages], [s.inputs for s in spec.stages],
                       [s.inputs == [] for s in spec.stages])


def make_plan(spec: JobSpec, start_seq: int = 0, max_delay: float | None = None) -> Plan:
    """Lay the stages of ``spec`` out over ranks 0..N-1 in stage order (``max_delay``: the run's
    explicit setting, if any)."""
    graph = _graph(spec)
    consumers = graph.consumers
    sources = [i for i in range(len(spec.stages)) if not graph.inputs[i]]
    stages: list[StagePlan] = []
    rank = 0
    names = [s.name for s in spec.stages]
    for i, s in enumerate(spec.stages):
        groups = []
        for _ in range(s.replicas):
            groups.append(tuple(range(rank, rank + s.group)))
            rank += s.group
        ins = graph.inputs[i]
        kind = "source" if not ins else "sink" if not consumers[i] else "stage"
        stages.append(StagePlan(
            index=i, name=s.name, kind=kind, replicas=s.replicas, group=s.group,
            capacity=s.capacity or spec.capacity, groups=tuple(groups),
            feedback_to=names.index(s.feedback_to) if s.feedback_to else None,
            device=s.device, timeout=s.timeout, inputs=ins,
            join=(s.join or "merge") if len(ins) > 1 else None, route=s.route,
            source=sources.index(i) if not ins else None,
        ))
    edges: list[EdgePlan] = []
    for i in range(len(stages)):
        for port, j in enumerate(graph.inputs[i]):
            edges.append(EdgePlan(len(edges), j, i, port))
    return Plan(spec.name, stages, spec.ordered, spec.batch, start_seq,
                max_delay=config.resolve("max_delay", max_delay, spec.settings), edges=edges)
