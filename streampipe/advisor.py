"""Choose replicas and capacity for a rank budget, verified with the simulator.

Replicas: start from one replica per stage and give the next rank to the stage with the lowest
bound (replicas / (mean service time x items it sees per source item), a merge join seeing the
items of all its inputs), as long as the budget allows; every step is
simulated and the best simulated layout wins (a step that does not pay, e.g. because the source
is the bottleneck, is not taken). A ``route = "key"`` stage with a measured key distribution
(``keys``, :mod:`streampipe.keyshare`) is bounded by its hottest replica instead: 1 / (that
replica's share x mean time x items per source item); it only steps to replica counts that
divide 2520 (the counts whose shares the buckets give: 1..10, 12, 14, 15, 18, 20, ...), several
ranks at a time past 10, and the advice says when one key bucket caps what replicas can do.
Capacity: the smallest capacity whose simulated throughput is
within 2% of the best over a ladder of capacities: the knee of throughput against queue length
(Little's law: more capacity past it only adds items in flight, L = λW, and latency W).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import keyshare
from .job import JobSpec
from .plan import make_plan
from .report import fixed_replicas
from .sim import Dist, simulate
from .simgraph import per_round

__all__ = ["Advice", "advise"]

CAPACITIES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
KNEE = 0.02


@dataclass
class Advice:
    """The advised layout and what the simulator expects from it."""

    spec: JobSpec
    replicas: dict[str, int]
    capacity: int
    baseline: float  # simulated items/s of the job as given
    expected: float  # simulated items/s of the advice
    budget: int
    steps: list[tuple[dict[str, int], float]]
    notes: list[str] = field(default_factory=list)  # key-routed stages: skew, caps, caveats

    @property
    def gain(self) -> float:
        return self.expected / self.baseline if self.baseline > 0 else float("inf")

    def overrides(self) -> list[str]:
        """``--set`` arguments that apply the advice."""
        out = [f"stages.{n}.replicas={r}" for n, r in self.replicas.items()]
        return out + [f"pipeline.capacity={self.capacity}"]

    def format(self) -> str:
        lines = [f"advice for {self.budget} ranks:"]
        shown = self.steps if len(self.steps) <= 8 else self.steps[:3] + self.steps[-4:]
        for reps, rate in shown:
            lines.append("  " + ", ".join(f"{n}={r}" for n, r in reps.items())
                         + f"  -> {rate:.1f} items/s")
        lines.append(f"capacity {self.capacity} (smallest within {100 * KNEE:.0f}% of the best "
                     "throughput: the Little's-law knee)")
        lines.extend(self.notes)
        lines.append(make_plan(self.spec).format())
        lines.append(f"expected {self.expected:.1f} items/s vs {self.baseline:.1f} now "
                     f"(x{self.gain:.2f});  run with: "
                     + " ".join(f"--set {o}" for o in self.overrides()))
        return "\n".join(lines)


def _with(spec: JobSpec, replicas: Mapping[str, int], capacity: int | None = None) -> JobSpec:
    s = copy.copy(spec)
    s.stages = [copy.copy(st) for st in spec.stages]
    for st in s.stages:
        st.replicas = replicas.get(st.name, st.replicas)
        if capacity is not None:
            st.capacity = None
    if capacity is not None:
        s.capacity = capacity
    return s


Keys = Mapping[str, Mapping[int, int]]


def _rate(spec: JobSpec, times: Mapping[str, Dist], n_items: int, seed: int,
          keys: Keys | None = None) -> float:
    return simulate(make_plan(spec), times, n_items, seed=seed, keep_events=False,
                    keys=keys).throughput


def _key_notes(keyed: Keys, plain: list[str], reps: Mapping[str, int],
               mean: Mapping[str, float]) -> list[str]:
    """What the advice owes about key-routed stages: a hot bucket that caps replication, and
    the stages weighed without a measured key distribution."""
    notes = []
    for s, counts in keyed.items():
        r, top = reps[s], max(counts.values())
        hot = keyshare.hot_share(counts, r)
        if hot <= 1.01 / r:
            continue  # the keys spread (about) evenly at this count
        # a bucket never splits, so no count goes below its share; the first count reaching it
        floor = next(d for d in range(1, keyshare.BUCKETS + 1) if keyshare.divides(d)
                     and keyshare.replica_counts(counts, d).max() == top)
        b = keyshare.hottest(counts)
        notes.append(f"stage {s!r}: its hottest replica gets {100 * hot:.0f}% of "
                     f"its items at {r} replicas; one key bucket holds {100 * b:.0f}%, so it "
                     f"needs at least {1e3 * b * mean[s]:.3g} ms per source item "
                     f"({1 / (b * mean[s]) if mean[s] > 0 else float('inf'):.1f}/s) and more "
                     f"than {floor} replicas cannot help")
    for s in plain:
        notes.append(f"stage {s!r}: routed by key without a measured key distribution "
                     "(simulate --from a run of this version): weighed as if its keys spread "
                     "evenly")
    return notes


def advise(spec: JobSpec, times: Mapping[str, Dist], budget: int, n_items: int = 2000,
           seed: int = 0, keys: Keys | None = None) -> Advice:
    """Replicas per stage maximising simulated throughput within ``budget`` ranks, then the
    capacity at the Little's-law knee. The source stays single when the pipeline is ordered
    (a replicated source has no single order); group sizes are kept. ``keys``: the measured
    key distribution of ``route = "key"`` stages (:func:`streampipe.sim.keys_from_run`)."""
    need = sum(st.group for st in spec.stages)
    if budget < need:
        raise ValueError(f"--advise: a budget of {budget} ranks is less than the {need} ranks "
                         "one replica per stage needs")
    plan = make_plan(spec)
    # time per source item: a merge join sees the items of all its inputs
    mean = {st.name: times.get(st.name, Dist("const")).mean * m
            for st, m in zip(plan.stages, per_round(plan.stages), strict=True)}
    fixed = set(fixed_replicas(plan))  # what the report's advice leaves alone too
    keys = keys or {}
    keyed = {st.name: keys[st.name] for st in plan.stages
             if st.route == "key" and keys.get(st.name)}
    plain = [st.name for st in plan.stages if st.route == "key" and st.name not in keyed]
    reps = {st.name: 1 for st in spec.stages}
    group = {st.name: st.group for st in spec.stages}

    def bound(s: str) -> float:
        if mean[s] <= 0:
            return float("inf")
        if s in keyed:
            return 1 / (keyshare.hot_share(keyed[s], reps[s]) * mean[s])
        return reps[s] / mean[s]

    def step(s: str) -> int:  # the next replica count a stage can take
        r = reps[s] + 1
        while s in keyed and not keyshare.divides(r):
            r += 1
        return r

    baseline = _rate(spec, times, n_items, seed, keys)
    best_reps, best_rate = dict(reps), _rate(_with(spec, reps), times, n_items, seed, keys)
    steps = [(dict(reps), best_rate)]
    used = need
    while True:
        open_ = [s for s in reps if s not in fixed and mean[s] > 0
                 and used + group[s] * (step(s) - reps[s]) <= budget]
        if not open_:
            break
        # the bottleneck among all stages; stop if it cannot be replicated
        slowest = min(reps, key=bound)
        if slowest not in open_:
            break
        nxt = step(slowest)
        used += group[slowest] * (nxt - reps[slowest])
        reps[slowest] = nxt
        rate = _rate(_with(spec, reps), times, n_items, seed, keys)
        steps.append((dict(reps), rate))
        if rate > best_rate * 1.001:
            best_reps, best_rate = dict(reps), rate
    rates = {c: _rate(_with(spec, best_reps, c), times, n_items, seed, keys) for c in CAPACITIES}
    top = max(rates.values())
    cap = min(c for c, r in rates.items() if r >= (1 - KNEE) * top)
    final = _with(spec, best_reps, cap)
    return Advice(final, best_reps, cap, baseline, rates[cap], budget, steps,
                  _key_notes(keyed, plain, best_reps, mean))
