"""The dependency schedule of the encoder's closed loop, and the encode order that minimises its
bubble.

Motion estimation of a P or B frame cannot start before the transform stage has reconstructed
the anchors it predicts from (they come back over the feedback edge), and the transform stage
takes frames in encode order.  With anchors-first order (lookahead 0) the next anchor's motion
estimation waits for the previous anchor's reconstruction while the B frames between them are
all that is left to do: the ME replicas idle in a *bubble*.  A lookahead ``k`` codes the B frames
of an interval after ``k`` more anchors (:func:`.gop.encode_order`), so their work overlaps with
the anchor chain.

:func:`simulate_order` runs a small list-scheduling model of that loop (``replicas`` ME ranks
taking items in encode order, each going to the replica that is free first and waiting there
for its references; one transform rank in encode order; a feedback latency), and
:func:`best_lookahead` picks the lookahead with the shortest makespan for a number of ME
replicas.  ``python -m pipelines.video.bubble`` prints the comparison.  The framework's
``streampipe simulate`` does not model feedback waits, hence this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .gop import MAX_LOOKAHEAD, encode_order

__all__ = ["Costs", "Schedule", "simulate_order", "best_lookahead", "table"]


@dataclass(frozen=True)
class Costs:
    """Seconds per frame of each type in motion estimation and in the transform stage, and the
    feedback latency (transform end -> the reconstruction usable by ME).

    The defaults are CPU times measured on the 352x288 pan of the benchmarks (quality 50, one
    process, medians): ME of a B frame searches two references, an I frame needs none.
    """

    me: tuple[float, float, float] = (0.0001, 0.070, 0.093)  # I, P, B
    transform: tuple[float, float, float] = (0.027, 0.0185, 0.016)
    latency: float = 0.001

    def of(self, costs: tuple[float, float, float], ftype: str) -> float:
        return costs["IPB".index(ftype)]


@dataclass(frozen=True)
class Schedule:
    """What :func:`simulate_order` finds: ``makespan`` (s), ``bound`` (s, the makespan without
    dependencies: the busier of the ME replicas' and the transform's total work), ``bubble``
    (fraction of the ME replicas' time spent waiting for references) and the anchors a replica
    holds at once."""

    lookahead: int
    replicas: int
    makespan: float
    bound: float
    bubble: float
    anchors: int
    frames: int

    @property
    def throughput(self) -> float:
        """Frames per second."""
        return 0.0 if self.makespan <= 0 else self.frames / self.makespan


def simulate_order(n_frames: int, gop: int, bframes: int, lookahead: int, replicas: int,
                   costs: Costs | None = None) -> Schedule:
    """Simulate the closed loop for one encode order (see the module docstring)."""
    if replicas < 1:
        raise ValueError(f"replicas: must be >= 1, got {replicas}")
    c = costs or Costs()
    slots = encode_order(n_frames, gop, bframes, lookahead)
    me_free = [0.0] * replicas
    tq_free = 0.0
    usable: dict[int, float] = {}  # seq -> when its reconstruction reaches ME
    waited = 0.0
    for s in slots:
        rep = min(range(replicas), key=me_free.__getitem__)
        ready = max((usable[r] for r in s.ref_seqs), default=0.0)
        start = max(me_free[rep], ready)
        waited += start - me_free[rep]
        me_free[rep] = start + c.of(c.me, s.type)
        tq_start = max(me_free[rep], tq_free)
        tq_free = tq_start + c.of(c.transform, s.type)
        usable[s.seq] = tq_free + c.latency
    me_work = sum(c.of(c.me, s.type) for s in slots)
    bound = max(me_work / replicas, sum(c.of(c.transform, s.type) for s in slots))
    return Schedule(lookahead, replicas, tq_free, bound,
                    waited / (replicas * tq_free) if tq_free > 0 else 0.0, lookahead + 2,
                    len(slots))


@lru_cache(maxsize=256)
def best_lookahead(gop: int, bframes: int, replicas: int, costs: Costs | None = None,
                   max_lookahead: int = 4) -> int:
    """The lookahead (0..``max_lookahead``) with the shortest simulated makespan over four GOPs
    for ``replicas`` ME replicas; ties go to the smaller one (fewer anchors held)."""
    n = 4 * gop + 1
    best = min(range(min(max_lookahead, MAX_LOOKAHEAD) + 1),
               key=lambda k: (round(simulate_order(n, gop, bframes, k, replicas, costs)
                                    .makespan, 9), k))
    return best


def table(n_frames: int, gop: int, bframes: int, replicas: list[int],
          costs: Costs | None = None) -> str:
    """The comparison as a Markdown table: anchors-first vs the min-bubble order per replica
    count (and every lookahead up to 3, for reference)."""
    lines = ["| ME replicas | order | lookahead | makespan s | bound s | makespan/bound | "
             "ME bubble | anchors held |", "|---|---|---|---|---|---|---|---|"]
    for r in replicas:
        best = best_lookahead(gop, bframes, r, costs)
        for k in sorted({0, 1, 2, 3, best}):
            s = simulate_order(n_frames, gop, bframes, k, r, costs)
            name = "anchors-first" if k == 0 else "min-bubble" if k == best else "lookahead"
            lines.append(f"| {r} | {name} | {k} | {s.makespan:.3f} | {s.bound:.3f} | "
                         f"{s.makespan / s.bound:.2f} | {100 * s.bubble:.0f}% | {s.anchors} |")
    return "\n".join(lines)
