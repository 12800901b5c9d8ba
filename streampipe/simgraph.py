"""The simulator's recurrence on a graph: forks, merge and zip joins, several sources and sinks.

Same model as the chain recurrence in :mod:`streampipe.sim` (a replica is one server; an item is
sent once every receiver has a credit for it; a credit comes back when the receiver starts the
item it was spent on), taken one *round* at a time: round ``i`` is source item ``i`` of every
source and everything that descends from it. A stage sees ``per_round`` items per round: one
from a source, the sum over its inputs at a merge join (input 0's first, then input 1's: the
ordered merge's key order ``(seq, input)``), the first input's count at a zip join (the ``s``-th
item of the round from each input form one tuple, available when the last of them arrives).

Within a round the stages are visited in topological order, so every time an item needs (its
inputs' send times, its replica's free time, the credit its receivers gave back ``bound``
items earlier) is known when it is computed::

    S = max(A, F)   E = S + t   D = max(E, max over receivers of G)

A fork waits for the credit of every receiver (its outputs advance side by side). On a chain this
is the chain recurrence item by item, which ``tests/unit/test_sim.py`` checks to rounding.

Replicas: a round's items at a stage go to its replicas in the order they become free (the first
free replica takes the first item, as on a chain). ``route = "key"``: with the key distribution a
run measured (``/keys/{stage}`` of its run file, :mod:`streampipe.keyshare`), in its proportions
for the replica count: a smooth weighted round-robin over the replicas' measured item counts
(``assign``), exact over every period and independent of the random times; without it, or for a
replica count that does not divide 2520, evenly by position (the caller says which stages).
Credits into a replica
are pooled over its upstream ranks (``capacity x`` the upstream replicas; per input at a zip,
whose inputs are credited separately).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import Graph

__all__ = ["Totals", "per_round", "run_graph"]


@dataclass
class Totals:
    """Per-stage totals of a simulated run, chain or graph (what the summary rows are made of)."""

    counts: np.ndarray  # items each stage saw
    busy: np.ndarray
    blocked: np.ndarray
    sojourn: np.ndarray
    wait: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    events: dict[str, np.ndarray]  # stage -> (items, 5) like a run's, when kept

    @classmethod
    def empty(cls, ns: int) -> Totals:
        """Zero totals for ``ns`` stages (a stage nothing reaches keeps them)."""
        return cls(np.zeros(ns, dtype=np.int64), *(np.zeros(ns) for _ in range(6)), {})

    def put(self, a: int, part: Totals) -> None:
        """Take in ``part``, the totals of the stages ``a, a + 1, ...`` of a chain."""
        b = a + len(part.busy)
        for name in ("counts", "busy", "blocked", "sojourn", "wait", "t_first", "t_last"):
            getattr(self, name)[a:b] = getattr(part, name)
        self.events.update(part.events)


def _order(stages: Sequence[Any]) -> tuple[int, ...]:
    """Stages in an order where each comes after the stages it reads."""
    return Graph(tuple(s.name for s in stages), tuple(s.inputs for s in stages)).order()


def per_round(stages: Sequence[Any]) -> list[int]:
    """Items each stage sees per source item (per round): a merge join sees every input's."""
    m = [0] * len(stages)
    for k in _order(stages):
        ins = stages[k].inputs
        if not ins:
            m[k] = 1
        elif stages[k].join == "merge":
            m[k] = sum(m[j] for j in ins)
        else:  # one input, or a zip: one tuple per item of the first input
            m[k] = m[ins[0]]
    return m


def run_graph(stages: Sequence[Any], dists: Sequence[Any], n: int, rng: np.random.Generator,
              chunk: int, latency: float, keep: bool,
              assign: Sequence[np.ndarray | None] | None = None) -> Totals:
    """Simulate ``n`` rounds of the graph ``stages`` (StagePlans with ``inputs``/``join``).
    ``assign[k]`` (or None): the replica of each of stage ``k``'s ``n x per_round`` items, for
    a key-routed stage whose key distribution is known (:func:`streampipe.keyshare.assign`)."""
    ns = len(stages)
    order = _order(stages)
    m = per_round(stages)
    reps = [s.replicas for s in stages]
    # receivers of each stage: (receiver, offset of this input's items among the receiver's
    # items of a round, credits per receiver replica for this input)
    recv: list[list[tuple[int, int, int]]] = [[] for _ in range(ns)]
    for c, st in enumerate(stages):
        off = 0
        for p in st.inputs:
            zipped = st.join == "zip"
            bound = st.capacity * (reps[p] if zipped else sum(reps[q] for q in st.inputs))
            recv[p].append((c, 0 if zipped else off, bound))
            off += 0 if zipped else m[p]
    free = [np.zeros(r) for r in reps]
    starts: list[list[list[float]]] = [[[] for _ in range(r)] for r in reps]  # per replica
    busy, blocked, sojourn, wait = (np.zeros(ns) for _ in range(4))
    t_first, t_last = np.full(ns, np.inf), np.zeros(ns)
    ev = [np.empty((n * m[k], 5)) for k in range(ns)] if keep else None
    D: list[list[float]] = [[] for _ in range(ns)]  # this round's send times per stage
    where: list[list[int]] = [[] for _ in range(ns)]  # this round's replica per item
    for c0 in range(0, n, chunk):
        mc = min(chunk, n - c0)
        T = [d.sample(rng, mc * m[k], c0 * m[k]) for k, d in enumerate(dists)]
        for j in range(mc):
            i = c0 + j
            for k in range(ns):  # replicas for the round, fixed before any item is sent
                r = reps[k]
                if r == 1:
                    where[k] = [0] * m[k]
                elif assign is not None and assign[k] is not None:
                    where[k] = assign[k][i * m[k]:(i + 1) * m[k]].tolist()
                elif stages[k].route == "key":
                    where[k] = [(i * m[k] + s) % r for s in range(m[k])]
                else:
                    first = np.argsort(free[k], kind="stable")
                    where[k] = [int(first[s % r]) for s in range(m[k])]
            for k in order:
                st = stages[k]
                ins = st.inputs
                t = T[k][j * m[k]:(j + 1) * m[k]]
                if not ins:
                    arr = None
                elif st.join == "zip":
                    arr = [max(D[p][s] for p in ins) + latency for s in range(m[k])]
                else:
                    arr = [d + latency for p in ins for d in D[p]]
                out = []
                for s in range(m[k]):
                    rep = where[k][s]
                    F = float(free[k][rep])
                    A = F if arr is None else arr[s]
                    S = max(A, F)
                    E = S + float(t[s])
                    Dk = E
                    for c, off, bound in recv[k]:
                        x = off + s  # this output's place among the receiver's items
                        rc = where[c][x]
                        # its credit: the item ``bound`` earlier at that replica has started
                        # (an earlier item of this very round not yet visited counts as not
                        # holding one back: only possible when a round brings more than
                        # ``bound`` items to one replica)
                        q = len(starts[c][rc]) + where[c][:x].count(rc) - bound
                        if 0 <= q < len(starts[c][rc]):
                            Dk = max(Dk, starts[c][rc][q])
                    free[k][rep] = Dk
                    starts[k][rep].append(S)
                    out.append(Dk)
                    busy[k] += E - S
                    blocked[k] += Dk - E
                    sojourn[k] += Dk - S
                    wait[k] += S - A
                    t_first[k] = min(t_first[k], A)
                    t_last[k] = max(t_last[k], Dk)
                    if ev is not None:
                        ev[k][i * m[k] + s] = (i, A, S, E, Dk)
                D[k] = out
    counts = np.array([n * x for x in m], dtype=np.int64)
    events = {stages[k].name: ev[k] for k in range(ns)} if ev is not None else {}
    return Totals(counts, busy, blocked, sojourn, wait, t_first, t_last, events)
