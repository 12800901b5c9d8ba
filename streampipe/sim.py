"""Simulate the Plan the runtime executes, with given per-stage time distributions (no MPI).

Model (what the runtime does, reduced to timing):

* every stage replica is one server; a group stage's replica is one server too (its time
  distribution is that of the whole group);
* an item is *received* when its upstream rank sends it, *started* when its replica is free,
  *ended* after its service time, and *sent* once the downstream replica has a credit: the
  stage is blocked after service, exactly like a rank waiting in ``OutPort``;
* a receiving replica holds ``capacity`` credits per upstream rank; a credit is taken when an
  item is sent and comes back when the receiver starts it. With several upstream ranks the
  per-pair bounds are pooled into one bound of ``capacity x upstream ranks`` per replica;
* a replicated stage takes each item on the replica that becomes free first (a ``route =
  "key"`` stage whose key distribution a run measured: on the replicas in its proportions,
  :mod:`streampipe.keyshare`; else as if its keys spread evenly, named in the result); every stage
  handles items in source order (the ordered merge; an unordered pipeline is simulated as if
  ordered, which is pessimistic by at most one item's service time per merge);
* ``L`` and ``W`` mean what the run report measures: items a rank holds from taking them in to
  sending them on (the runtime receives a message only between items, so a queued item is not
  yet "held"); the queue in front of each stage is reported separately as ``Lq``/``Wq``;
* a stage passes on ``ratio`` items per input (fan-out, drops; :class:`Flow`), or is a
  *barrier* whose outputs all come from ``finish()``, ``finish`` seconds after its last input
  was handled. The pipeline is cut after each such stage and the 1:1 pieces run in turn, the
  next piece's arrivals being the outputs' send times; across a cut there is no back-pressure
  (exact for a barrier, which holds everything anyway);
* a graph (forks, joins, several sources or sinks) goes through :mod:`streampipe.simgraph`,
  the same model one source item ("round") at a time;
* feedback waits are not modelled separately (measured service times from a run file include
  them), and message latency is one constant per hop (``latency``; ``--from`` measures its
  median).

For one item the departure times of all stages follow a max-plus recurrence that is linear along
the pipeline::

    D[k] = max(D[k-1] + t[k],  F[k] + t[k],  G[k])

with ``F[k]`` the time the chosen replica becomes free and ``G[k]`` the time the credit for the
send is returned (both fixed by earlier items). Unrolled, ``D = C + max(0, cummax(H - C))`` with
``C = cumsum(t)`` and ``H = max(F + t, G)``, so one item costs a few NumPy calls over all stages
and 1,000 stages x 100,000 items run in seconds. ``tests/unit/test_sim.py`` checks it against an
independent event-driven simulation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import keyshare, runfile
from .events import SEQ, T_END, T_RECV, T_SENT, T_START, as_events, empty, on_wall
from .plan import Plan, StagePlan
from .simgraph import Totals, per_round, run_graph
from .summary import StageRow, pipeline_rate, rows

__all__ = ["Dist", "Flow", "SimResult", "parse_time", "parse_dist", "parse_times", "parse_flows",
           "times_from_run", "flows_from_run", "latency_from_run", "simulate", "pipeline_rate",
           "format_result", "job_times", "job_flows", "keys_from_run", "job_keys"]

UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
KINDS = ("const", "normal", "lognormal", "exp", "empirical", "trace")


def parse_time(text: str, where: str = "time") -> float:
    """``"8ms"`` -> 0.008; units s, ms, us/µs, ns; a bare number is seconds."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(s|ms|us|µs|ns)?\s*", text)
    try:
        value = float(m.group(1)) * UNITS[m.group(2) or "s"] if m else None
    except ValueError:
        value = None
    if value is None or not np.isfinite(value) or value < 0:
        raise ValueError(f"{where}: expected a time >= 0 like 8ms, 250us or 0.01, got {text!r}")
    return value


@dataclass
class Dist:
    """A service-time distribution. ``a``/``b`` are mean and standard deviation (seconds) for
    normal and lognormal, the mean for const and exp. ``empirical`` draws from ``samples`` with
    replacement; ``trace`` replays them in order (item i gets ``samples[i % n]``), which is how a
    run file's own items are re-simulated."""

    kind: str
    a: float = 0.0
    b: float = 0.0
    samples: np.ndarray | None = None

    @property
    def mean(self) -> float:
        if self.kind in ("empirical", "trace"):
            return float(np.mean(self.samples)) if len(self.samples) else 0.0
        return self.a

    def sample(self, rng: np.random.Generator, n: int, start: int = 0) -> np.ndarray:
        """Service times of items ``start .. start + n - 1`` (never negative)."""
        if self.kind == "const":
            return np.full(n, self.a)
        if self.kind == "exp":
            return rng.exponential(self.a, n)
        if self.kind == "normal":
            return np.maximum(rng.normal(self.a, self.b, n), 0.0)
        if self.kind == "lognormal":
            if self.a <= 0:
                return np.zeros(n)
            s2 = np.log1p((self.b / self.a) ** 2)  # moments -> parameters of the log
            return rng.lognormal(np.log(self.a) - s2 / 2, np.sqrt(s2), n)
        if self.samples is None or not len(self.samples):
            return np.zeros(n)
        if self.kind == "trace":
            return self.samples[np.arange(start, start + n) % len(self.samples)]
        return rng.choice(self.samples, n)  # bootstrap: the run's own per-item times

    def __str__(self) -> str:
        if self.kind in ("empirical", "trace"):
            return f"{self.kind}(n={len(self.samples)}, mean={1e3 * self.mean:.3g}ms)"
        if self.kind in ("normal", "lognormal"):
            return f"{self.kind}({1e3 * self.a:.3g}ms, {1e3 * self.b:.3g}ms)"
        return f"{self.kind}({1e3 * self.a:.3g}ms)"


@dataclass
class Flow:
    """How a stage passes items on: ``ratio`` outputs per input (fan-out > 1, drops < 1) and,
    for a *barrier* (outputs come from ``finish()``), all outputs released ``finish`` seconds
    after the stage handled its last input."""

    ratio: float = 1.0
    barrier: bool = False
    finish: float = 0.0

    @property
    def changes(self) -> bool:
        """Whether the items after this stage are not the items before it (a 1:1 cut)."""
        return self.barrier or self.ratio != 1.0

    def __str__(self) -> str:
        text = f"x{self.ratio:.4g}"
        return text + (f" barrier(finish {1e3 * self.finish:.3g}ms)" if self.barrier else "")


def parse_dist(text: str, where: str = "time") -> Dist:
    """``8ms`` | ``const(8ms)`` | ``normal(8ms,1ms)`` | ``lognormal(8ms,4ms)`` | ``exp(8ms)``."""
    m = re.fullmatch(r"\s*([a-z]+)\s*\((.*)\)\s*", text)
    if not m:
        return Dist("const", parse_time(text, where))
    kind, args = m.group(1), [a for a in m.group(2).split(",")]
    want = {"const": 1, "exp": 1, "normal": 2, "lognormal": 2}
    if kind not in want:
        raise ValueError(f"{where}: unknown distribution {kind!r} "
                         f"(use const, normal, lognormal, exp or a plain time)")
    if len(args) != want[kind]:
        raise ValueError(f"{where}: {kind} takes {want[kind]} argument(s), got {text!r}")
    vals = [parse_time(a, f"{where}.{kind}[{i}]") for i, a in enumerate(args)]
    return Dist(kind, vals[0], vals[1] if len(vals) > 1 else 0.0)


def _split_times(spec: str) -> list[tuple[str, str, list[str]]]:
    """``STAGE=TIME[:xRATIO][:finish(TIME)]`` items -> (stage, time text, suffixes)."""
    out = []
    for part in re.split(r",(?![^()]*\))", spec.strip()):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--times: expected STAGE=TIME, got {part.strip()!r}")
        name, value = (s.strip() for s in part.split("=", 1))
        value, *suffixes = (v.strip() for v in value.split(":"))
        out.append((name, value, suffixes))
    return out


def parse_times(spec: str) -> dict[str, Dist]:
    """``"value=normal(8ms,1ms),scenarios=2ms"`` -> {stage: Dist}; commas inside () belong to
    the distribution. Flow suffixes (``:x0.5``, ``:finish(5ms)``) are read by
    :func:`parse_flows`."""
    return {name: parse_dist(value, f"--times {name}")
            for name, value, _ in _split_times(spec)}


def parse_flows(spec: str) -> dict[str, Flow]:
    """The flow suffixes of a --times string: ``sort=1ms:x0.5`` (0.5 outputs per input) and
    ``sort=1ms:finish(20ms)`` (a barrier: outputs come from finish(), which takes 20 ms)."""
    out: dict[str, Flow] = {}
    for name, _, suffixes in _split_times(spec):
        if not suffixes:
            continue
        f = out[name] = Flow()
        for sfx in suffixes:
            m = re.fullmatch(r"x([0-9.eE+-]+)|finish\((.*)\)", sfx)
            if not m:
                raise ValueError(f"--times {name}: unknown suffix {sfx!r} "
                                 f"(use :xRATIO or :finish(TIME))")
            if m.group(2) is not None:
                f.barrier, f.finish = True, parse_time(m.group(2), f"--times {name}.finish")
                continue
            try:
                f.ratio = float(m.group(1))
            except ValueError:
                f.ratio = -1.0
            if not np.isfinite(f.ratio) or f.ratio < 0:
                raise ValueError(f"--times {name}: ratio must be a number >= 0, got {sfx!r}")
    return out


RunData = Mapping[str, Any]  # what streampipe.runfile.read returns


def _run(run: str | RunData) -> RunData:
    return runfile.read(run) if isinstance(run, str) else run


def _stage_roots(run: RunData) -> list[tuple[StagePlan, list[Mapping[str, Any]]]]:
    """Per stage of the run's plan: the records of its replica roots that reported."""
    plan = Plan.from_dict(run["meta"]["plan"])
    ranks = run["ranks"]
    return [(st, [ranks[r] for r in st.roots if r < len(ranks) and ranks[r] is not None])
            for st in plan.stages]


def times_from_run(run: str | RunData, kind: str = "trace") -> dict[str, Dist]:
    """Service times (``t_end - t_start`` of every item, plus the rank's transfer time spread
    over its items) per stage of a run file, in sequence order: ``trace`` replays them item by
    item, ``empirical`` resamples them."""
    dists = {}
    for st, roots in _stage_roots(_run(run)):
        parts = []
        for d in roots:
            ev = as_events(d["events"])
            # time the rank spent moving data (pickling, copies, rendezvous) also occupies it,
            # and so does a GPU stage's wait for its kernels when it fell outside the item's
            # events (gpu_sync_lazy_s, docs/gpu.md)
            xfer = (d.get("time", {}).get("transfer", 0.0)
                    + d.get("gpu_sync_lazy_s", 0.0)) / max(len(ev), 1)
            parts.append((ev[:, SEQ], ev[:, T_END] - ev[:, T_START] + xfer))
        if not parts:
            continue
        seq = np.concatenate([p[0] for p in parts])
        service = np.concatenate([p[1] for p in parts])
        dists[st.name] = Dist(kind, samples=service[np.argsort(seq, kind="stable")])
    return dists


def latency_from_run(run: str | RunData) -> float:
    """Median delay from an item's send at one stage to its receipt at the next (wall clock),
    over the items that found their rank idle (a busy rank takes messages in only between
    items, and that wait is queueing, which the simulation adds itself)."""
    sent: dict[tuple[int, float], float] = {}
    ranks = []
    for st, roots in _stage_roots(_run(run)):
        for d in roots:
            ev = on_wall(d)
            if not len(ev):
                continue
            sent.update({(st.index, q): t for q, t in zip(ev[:, SEQ], ev[:, T_SENT],
                                                          strict=True)})
            ranks.append((st.index, ev[np.argsort(ev[:, T_RECV])]))
    gaps = []
    for k, ev in ranks:
        prev_sent = np.concatenate([[-np.inf], ev[:-1, T_SENT]])
        for q, r, p in zip(ev[:, SEQ], ev[:, T_RECV], prev_sent, strict=True):
            if (k - 1, q) in sent and r > p:  # the rank was waiting for this item
                gaps.append(r - max(sent[(k - 1, q)], p))
    return max(float(np.median(gaps)), 0.0) if gaps else 0.0


def flows_from_run(run: str | RunData) -> dict[str, Flow]:
    """Each stage's outputs per input (``items_out / items`` of the run summary) and whether it
    is a barrier, for the stages where the items change.

    A barrier emits from ``finish()``: the runtime sends those outputs after its loop, so the
    next stage's first item arrives after this stage ended its last input, which a 1:1 or
    fan-out stage (sending as it goes) never shows with two or more items. Its finish time is
    that gap less one hop's latency: the runtime charges ``finish()`` itself as busy but not
    the steps of a generator it returns, so busy time minus per-item times would miss the
    merge a sorter does between yields (the larger of the two is taken).
    """
    run = _run(run)
    stages = [(st, roots) for st, roots in _stage_roots(run) if roots]
    summary = rows(run["summary"])
    ev = {st.index: np.concatenate([on_wall(d) for d in roots]) for st, roots in stages}
    last = max((st.index for st, _ in stages), default=-1)
    lat = None
    out: dict[str, Flow] = {}
    for st, roots in stages:
        row = summary.get(st.name)
        n_in, n_out = (row.items, row.items_out) if row else (0, 0)
        if st.index == last or n_in == 0:
            continue
        f = Flow(ratio=n_out / n_in)
        mine, nxt = ev[st.index], ev.get(st.index + 1, empty())
        if n_in >= 2 and n_out > 0 and len(mine) and len(nxt):
            last_end = float(mine[:, T_END].max())
            first_down = float(nxt[:, T_RECV].min())
            if first_down > last_end:
                lat = latency_from_run(run) if lat is None else lat
                work = sum(d["time"].get("busy", 0.0) + d["time"].get("io", 0.0)
                           for d in roots) - float((mine[:, T_END] - mine[:, T_START]).sum())
                f = Flow(f.ratio, True, max(first_down - last_end - lat, work, 0.0))
        if f.changes:
            out[st.name] = f
    return out


@dataclass
class SimResult:
    """A simulated run: the report's per-stage summary plus the raw times when kept."""

    summary: dict[str, StageRow]
    makespan: float
    items: int
    events: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> (n, 5) like a run
    # key-routed replicated stages simulated without their key distribution, and why
    even: dict[str, str] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return pipeline_rate(self.summary)


def _check_names(plan: Plan, names: Iterable[str], what: str) -> None:
    unknown = set(names) - {s.name for s in plan.stages}
    if unknown:
        raise ValueError(f"{what}: no stage named {', '.join(sorted(unknown))} in "
                         f"{plan.name!r} (stages: {', '.join(s.name for s in plan.stages)})")


def _stage_dists(plan: Plan, times: Mapping[str, Dist] | Sequence[Dist]) -> list[Dist]:
    if isinstance(times, Mapping):
        _check_names(plan, times, "times")
        return [times.get(s.name, Dist("const", 0.0)) for s in plan.stages]
    if len(times) != len(plan.stages):
        raise ValueError(f"times: {len(times)} distributions for {len(plan.stages)} stages")
    return list(times)


def _stage_flows(plan: Plan, flow: Mapping[str, Flow] | None) -> list[Flow]:
    flow = flow or {}
    _check_names(plan, flow, "flow")
    return [flow.get(s.name, Flow()) for s in plan.stages]


def _out_counts(n: int, ratio: float) -> np.ndarray:
    """Outputs of each of ``n`` inputs at ``ratio`` outputs per input, spread evenly: inputs
    0..i have emitted floor((i + 1) x ratio) in all (a ratio out/in from a run gives out)."""
    # the nudge keeps 28 x (13/28) from flooring to 12
    done = np.floor(np.arange(1, n + 1) * ratio * (1 + 1e-12) + 1e-9).astype(np.int64)
    return np.diff(done, prepend=0)


def _run_chain(stages: Sequence[Any], dists: Sequence[Dist], n: int, rng: np.random.Generator,
               chunk: int, latency: float, keep: bool,
               arrivals: np.ndarray | None = None,
               assign: Sequence[np.ndarray | None] | None = None,
               ) -> tuple[Totals, np.ndarray, np.ndarray]:
    """The max-plus recurrence over a run of 1:1 stages. ``arrivals`` (per item, or None for a
    source at the head) is when each item reaches the first stage; nothing after the last stage
    holds it back (the caller cuts chains only where the item count changes). ``assign[k]``:
    the replica of each item at a key-routed stage ``k`` (else the first free one).

    Returns the stages' totals and, per item, the end of service and the send time at the last
    stage (what the next piece of a cut chain starts from)."""
    ns = len(stages)
    reps = np.array([s.replicas for s in stages])
    roff = np.concatenate([[0], np.cumsum(reps)[:-1]])  # first server slot of each stage
    # credit bound into stage k: capacity per upstream rank, pooled over the upstream replicas
    bound = np.array([s.capacity * (reps[k - 1] if k else 1) for k, s in enumerate(stages)])
    boff = np.concatenate([[0], np.cumsum(reps * bound)[:-1]])  # ring of each (stage, replica)
    free = np.zeros(int(reps.sum()))  # time each server becomes free (sent its last item)
    count = np.zeros(len(free), dtype=np.int64)  # items each server has taken
    ring = np.full(int((reps * bound).sum()), -np.inf)  # start times of the last `bound` items
    ring_base = np.repeat(boff, reps) + np.concatenate([np.arange(r) * b for r, b in
                                                        zip(reps, bound, strict=True)])
    bound_of = np.repeat(bound, reps)
    multi = [(k, int(roff[k]), int(reps[k])) for k in range(ns) if reps[k] > 1
             and (assign is None or assign[k] is None)]
    keyed = [(k, int(roff[k]), assign[k]) for k in range(ns)
             if assign is not None and assign[k] is not None and reps[k] > 1]
    idx = roff.copy()
    busy, blocked = np.zeros(ns), np.zeros(ns)
    sojourn = np.zeros(ns)  # start -> sent: what the runtime's W measures
    wait = np.zeros(ns)  # sent upstream -> started: the queue in front of the stage
    t_first, t_last = np.full(ns, np.inf), np.zeros(ns)
    ev = np.empty((5, ns, n)) if keep else None
    end_last, sent_last = np.empty(n), np.empty(n)
    G = np.full(ns, -np.inf)
    A = np.empty(ns)
    hop = np.full(ns, float(latency))
    hop[0] = 0.0  # D[k] = max(D[k-1] + latency + t[k], F[k] + t[k], G[k])
    for c0 in range(0, n, chunk):
        m = min(chunk, n - c0)
        T = np.stack([d.sample(rng, m, c0) for d in dists], axis=1)  # (m, stages), rows contiguous
        for j in range(m):
            i = c0 + j
            t = T[j]
            for k, o, r in multi:  # the replica that becomes free first
                idx[k] = o + int(np.argmin(free[o:o + r]))
            for k, o, a in keyed:  # routed by key: the measured share
                idx[k] = o + int(a[i])
            F = free[idx]
            cnt = count[idx]
            pos = ring_base[idx] + cnt % bound_of[idx]
            G[:-1] = ring[pos[1:]]  # credit into stage k+1 comes back when that item started
            H = np.maximum(F + t, G)
            C = np.cumsum(t + hop)
            if arrivals is not None:
                C += arrivals[i]  # "D[-1] + latency" of the head stage
            D = C + np.maximum(np.maximum.accumulate(H - C), 0.0)
            A[1:] = D[:-1] + latency
            # a source item is "received" when generation starts
            A[0] = F[0] if arrivals is None else arrivals[i]
            S = np.maximum(A, F)
            E = S + t
            free[idx] = D
            ring[pos] = S
            count[idx] = cnt + 1
            busy += t
            blocked += D - E
            sojourn += D - S
            wait += S - A
            np.minimum(t_first, A, out=t_first)
            np.maximum(t_last, D, out=t_last)
            end_last[i], sent_last[i] = E[-1], D[-1]
            if ev is not None:
                ev[1:, :, i] = A, S, E, D
    events: dict[str, np.ndarray] = {}
    if ev is not None:
        ev[0] = np.arange(n)
        events = {s.name: ev[:, k, :].T.copy() for k, s in enumerate(stages)}
    counts = np.full(ns, n, dtype=np.int64)
    tot = Totals(counts, busy, blocked, sojourn, wait, t_first, t_last, events)
    return tot, end_last, sent_last


def _key_weights(plan: Plan, keys: Mapping[str, Mapping[int, int]] | None
                 ) -> tuple[list[np.ndarray | None], dict[str, str]]:
    """Per stage, its replicas' measured item counts (key-routed, replicated, known); and the
    key-routed replicated stages without them, with the reason."""
    keys = keys or {}
    _check_names(plan, keys, "keys")
    weights: list[np.ndarray | None] = []
    even: dict[str, str] = {}
    for s in plan.stages:
        w = keyshare.counts_for(keys, s.name, s.route, s.replicas)
        weights.append(w)
        if w is None and s.route == "key" and s.replicas > 1:
            even[s.name] = ("no key counts" if not keys.get(s.name) else
                            f"{s.replicas} replicas do not divide {keyshare.BUCKETS}")
    return weights, even


def _assign(weights: Sequence[np.ndarray | None], counts: Sequence[int]
            ) -> list[np.ndarray | None] | None:
    """Each key-routed stage's replica per item, for ``counts[k]`` items at stage ``k``."""
    if all(w is None for w in weights):
        return None
    return [None if w is None else keyshare.assign(w, int(c))
            for w, c in zip(weights, counts, strict=True)]


def simulate(plan: Plan, times: Mapping[str, Dist] | Sequence[Dist], n_items: int = 1000,
             seed: int = 0, keep_events: bool | None = None, chunk: int = 512,
             latency: float = 0.0, flow: Mapping[str, Flow] | None = None,
             keys: Mapping[str, Mapping[int, int]] | None = None) -> SimResult:
    """Simulate ``n_items`` source items through ``plan``; see the module docstring.

    ``keep_events`` (default: when stages x items <= 2e6) keeps per-item
    (seq, t_recv, t_start, t_end, t_sent) arrays per stage, as a run file has. ``latency`` is
    added to every hop between stages (message delivery, batching). ``flow`` gives stages that
    fan out, drop or emit from ``finish()`` (:class:`Flow`; :func:`flows_from_run`). ``keys``
    gives the key distribution of ``route = "key"`` stages (stage -> {bucket: items};
    :func:`keys_from_run`): their items reach the replicas in the measured proportions; a
    key-routed stage without it is simulated as if its keys spread evenly
    (:attr:`SimResult.even` names those).
    """
    if n_items < 1:
        raise ValueError(f"items: must be >= 1, got {n_items}")
    dists = _stage_dists(plan, times)
    flows = _stage_flows(plan, flow)
    weights, even = _key_weights(plan, keys)
    ns = len(plan.stages)
    keep = keep_events if keep_events is not None else ns * n_items <= 2_000_000
    rng = np.random.default_rng(seed)
    if not plan.is_chain:
        res = _simulate_graph(plan, dists, flows, n_items, rng, chunk, latency, keep, weights)
        res.even = even
        return res
    # cut the pipeline after every stage that changes the item count: each piece is 1:1
    cuts = [k + 1 for k in range(ns - 1) if flows[k].changes]
    tot = Totals.empty(ns)
    n, arrivals = n_items, None
    for a, b in zip([0, *cuts], [*cuts, ns], strict=True):
        if n == 0:  # everything dropped upstream: these stages see nothing
            continue
        part, end_last, sent_last = _run_chain(plan.stages[a:b], dists[a:b], n, rng, chunk,
                                               latency, keep, arrivals,
                                               _assign(weights[a:b], [n] * (b - a)))
        tot.put(a, part)
        if b == ns:
            break
        f = flows[b - 1]
        per_input = _out_counts(n, f.ratio)
        if f.barrier:
            # everything comes out of finish(): after the last input was handled, plus its time
            tot.busy[b - 1] += f.finish
            release = float(end_last.max()) + f.finish
            n = int(per_input.sum())
            arrivals = np.full(n, release + latency)
        else:
            arrivals = np.repeat(sent_last, per_input) + latency
            n = len(arrivals)
    outs = [int(_out_counts(int(tot.counts[k]), flows[k].ratio).sum()) if k + 1 < ns
            else int(tot.counts[k]) for k in range(ns)]
    res = _result(plan, n_items, tot, outs, weights)
    res.even = even
    return res


def _simulate_graph(plan: Plan, dists: list[Dist], flows: list[Flow], n_items: int,
                    rng: np.random.Generator, chunk: int, latency: float,
                    keep: bool, weights: Sequence[np.ndarray | None]) -> SimResult:
    """A plan with forks or joins: :func:`streampipe.simgraph.run_graph`, one round per source
    item. Its stages pass items on 1:1 (a merge join's extra items come from its inputs)."""
    feeds = {e.src for e in plan.edges}
    for k, f in enumerate(flows):
        if f.changes and k in feeds:
            raise ValueError(f"simulate: stage {plan.stages[k].name!r} {f} on a graph: the "
                             "graph simulator models stages that pass items on one for one "
                             "(fan-out, drops and finish() outputs are modelled on linear "
                             "pipelines only)")
    assign = _assign(weights, [n_items * m for m in per_round(plan.stages)])
    g = run_graph(plan.stages, dists, n_items, rng, chunk, latency, keep, assign)
    return _result(plan, n_items, g, [int(c) for c in g.counts], weights)


def _result(plan: Plan, n_items: int, tot: Totals, outs: Sequence[int],
            weights: Sequence[np.ndarray | None]) -> SimResult:
    """The report's per-stage rows from a simulation's per-stage totals (``outs``: the items
    each stage passed on; ``weights``: a key-routed stage's items per replica, whose hottest
    replica sets its bound as in a run's report)."""
    counts, busy, blocked, sojourn = tot.counts, tot.busy, tot.blocked, tot.sojourn
    wait, t_first, t_last = tot.wait, tot.t_first, tot.t_last
    makespan = float(t_last.max())
    summary = {}
    for k, s in enumerate(plan.stages):
        nk = int(counts[k])
        out = outs[k]
        per = max(nk, 1)
        window = max(float(t_last[k] - t_first[k]), 1e-12)
        lam = nk / window
        W = float(sojourn[k]) / per
        service = float(busy[k]) / per
        span = max(makespan * s.replicas, 1e-12)  # every rank lives for the whole run
        b, bl = float(busy[k]) / span, float(blocked[k]) / span
        w = weights[k]
        extra = {} if w is None else {"key_spread": float(w.sum() / w.max())}
        spread = extra.get("key_spread", s.replicas)
        summary[s.name] = StageRow(
            kind=s.kind, replicas=s.replicas, group=s.group, capacity=s.capacity, items=nk,
            items_out=out, window=window, t_first=float(t_first[k]), t_last=float(t_last[k]),
            throughput=lam, service=service, cost=service,
            bound=spread / service if service > 0 else float("inf"),
            L=lam * W, lam=lam, W=W, queue_W=float(wait[k]) / per,
            queue_L=lam * float(wait[k]) / per, busy=b, starved=max(0.0, 1.0 - b - bl),
            blocked=bl, extra=extra)
    return SimResult(summary, makespan, n_items, tot.events)


def format_result(res: SimResult, title: str) -> str:
    """A table like the run report's, for a simulated run, with the pipeline rate on top."""
    head = (f"{'stage':<14}{'rep':>4}{'items/s':>10}{'busy':>6}{'starv':>6}{'block':>6}"
            f"{'t_i ms':>9}{'bound/s':>10}{'L':>7}{'W ms':>8}{'Lq':>7}{'Wq ms':>8}")
    lines = [f"{title}: {res.items} items in {res.makespan:.4g} s simulated, "
             f"{res.throughput:.1f} items/s", head, "-" * len(head)]
    for name, r in res.summary.items():
        lines.append(
            f"{name[:13]:<14}{r.replicas:>4}{r.throughput:>10.1f}"
            + "".join(f"{100 * x:>5.0f}%" for x in (r.busy, r.starved, r.blocked))
            + f"{1e3 * r.service:>9.3f}{r.bound:>10.1f}{r.L:>7.2f}{1e3 * r.W:>8.2f}"
            f"{r.queue_L:>7.2f}{1e3 * r.queue_W:>8.2f}")
    # per source item, a stage needs t_i x (items it sees per source item) / replicas (its
    # hottest replica's share, routed by key): on a chain without fan-out that is 1 / bound; a
    # merge join or a fan-out sees more items
    per = {n: r.service * r.items / max(res.items, 1) / r.spread
           for n, r in res.summary.items()}
    slow = max(per, key=lambda n: per[n])
    lines.append(f"bottleneck: stage {slow!r} ({1e3 * per[slow]:.3g} ms per source item, "
                 f"bound {1 / per[slow] if per[slow] > 0 else float('inf'):.1f} source items/s, "
                 f"busy {100 * res.summary[slow].busy:.0f}% per replica)")
    if res.even:
        lines.append("key-routed, simulated as if the keys spread evenly over the replicas: "
                     + ", ".join(f"{k} ({why})" for k, why in res.even.items()))
    return "\n".join(lines)


def job_times(plan: Plan, times: str = "", run: RunData | None = None) -> dict[str, Dist]:
    """Stage times for ``plan`` from a run file's data and/or a --times string (which wins)."""
    out: dict[str, Dist] = {}
    if run is not None:
        measured = times_from_run(run)
        out.update({s.name: measured[s.name] for s in plan.stages if s.name in measured})
    given = parse_times(times)
    _check_names(plan, given, "--times")
    out.update(given)
    return out


def job_flows(plan: Plan, times: str = "", run: RunData | None = None) -> dict[str, Flow]:
    """Stage flows (fan-out, drops, barriers) from a run file's data and/or --times suffixes
    (which win)."""
    out: dict[str, Flow] = {}
    if run is not None:
        measured = flows_from_run(run)
        out.update({s.name: measured[s.name] for s in plan.stages if s.name in measured})
    out.update(parse_flows(times))
    return out


def keys_from_run(run: str | RunData) -> dict[str, dict[int, int]]:
    """The key distribution a run measured: per ``route = "key"`` stage, items per bucket
    ``key_hash % 2520`` summed over its senders (``/keys`` of the run file; {} for a run file
    written before it was recorded)."""
    return {k: dict(v) for k, v in (_run(run).get("keys") or {}).items()}


def job_keys(plan: Plan, run: RunData | None = None) -> dict[str, dict[int, int]]:
    """Key distributions for the key-routed stages of ``plan`` from a run file's data."""
    if run is None:
        return {}
    measured = keys_from_run(run)
    return {s.name: measured[s.name] for s in plan.stages
            if s.route == "key" and measured.get(s.name)}
