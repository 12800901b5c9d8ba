"""Bottleneck analysis, the Little's-law audit and advice, from the ranks' raw records.

Analysis only: ``summarize`` turns per-rank records (collected at the end of a run or read back
from a run file) into one :class:`~streampipe.summary.StageRow` per stage; ``analyze`` adds the
pipeline view (period against its bound, edges, end to end, bottleneck, advice) as the JSON
document described in ``docs/diagnostics.md``. The renderings depend on this module, never the
other way round: ``textreport`` (the table ``streampipe run`` prints, the rich report), ``trace``
(Perfetto) and ``plot`` (PNG).

Times of different ranks are put on one axis through each rank's wall-clock start (``wall0``);
per-stage figures only use rank-local differences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import numpy as np

from . import keyshare
from .events import SEQ, T_END, T_RECV, T_SENT, T_START, as_events, empty, on_wall
from .metrics import STATES
from .plan import Plan, StagePlan
from .summary import StageRow, per_span

__all__ = ["SCHEMA_VERSION", "analyze", "bottleneck", "fixed_replicas", "per_host",
           "reduce_events", "serial_fraction", "summarize"]

SCHEMA_VERSION = 1
LITTLE_TOLERANCE = 0.05  # a larger |L - lambda W| / L is a measurement problem
WAITING = 0.3  # a stage blocked / starved this much of its time confirms a bottleneck
NOTICEABLE = 0.10  # the bottleneck starving this much while upstream blocks: capacity too small

Ranks = list[dict | None]


def _present(ranks: Ranks, rs: Any) -> list[dict]:
    return [ranks[r] for r in rs if r < len(ranks) and ranks[r] is not None]


def _roots(st: StagePlan, ranks: Ranks) -> list[dict]:
    """The records of the stage's replica roots that reported (the ranks that see the items)."""
    return _present(ranks, st.roots)


def _residual(L: float, lam: float, W: float) -> float:
    if not (math.isfinite(L) and math.isfinite(lam)):
        return math.nan  # no span measured: nothing to audit
    return abs(L - lam * W) / L if L > 0 else 0.0


def reduce_events(d: dict) -> dict[str, float]:
    """What the per-stage figures need from one rank's events (on the shared clock): their
    number, first arrival, first and last end, last send, and the sums of service time, time in
    the stage and time queued. A rank may send this instead of its events (``d["reduced"]``)."""
    if "reduced" in d:
        return d["reduced"]
    ev = as_events(d.get("events", ()))
    if not len(ev):
        return {"n": 0}
    w = d["wall0"]
    return {"n": len(ev), "t_recv_min": float(ev[:, T_RECV].min()) + w,
            "t_sent_max": float(ev[:, T_SENT].max()) + w,
            "t_end_min": float(ev[:, T_END].min()) + w, "t_end_max": float(ev[:, T_END].max()) + w,
            "service": float(np.sum(ev[:, T_END] - ev[:, T_START])),
            "sojourn": float(np.sum(ev[:, T_SENT] - ev[:, T_RECV])),
            "waiting": float(np.sum(ev[:, T_START] - ev[:, T_RECV]))}


def summarize(plan: Plan, ranks: Ranks) -> dict[str, StageRow]:
    """One row per stage that reported: items, throughput, time split, service time, bound, L,
    lambda, W (see :class:`~streampipe.summary.StageRow`)."""
    out: dict[str, StageRow] = {}
    for st in plan.stages:
        members = _present(ranks, st.ranks)
        roots = _roots(st, ranks)
        if not roots:
            continue
        red = [r for r in map(reduce_events, roots) if r["n"]]
        n_ev = sum(r["n"] for r in red)
        items = int(sum(d["items_in"] for d in roots))
        if red:
            t_first, t_last = min(r["t_recv_min"] for r in red), max(r["t_sent_max"] for r in red)
            t_end_first = min(r["t_end_min"] for r in red)
            t_end_last = max(r["t_end_max"] for r in red)
            service, sojourn, waiting = (sum(r[k] for r in red) / n_ev
                                         for k in ("service", "sojourn", "waiting"))
        else:  # items without stamps (a failed rank's record): no span to divide by
            t_first = t_last = t_end_first = t_end_last = math.nan
            service = 0.0
            sojourn = waiting = math.nan if items else 0.0
        window = t_last - t_first if t_last > t_first else math.nan
        lam = per_span(items, window)
        L = per_span(sum(d["held_area"] for d in roots), window)
        Lq = per_span(sum(d.get("queued_area", 0.0) for d in roots), window)
        xfer = sum(d["time"]["transfer"] for d in roots) / items if items else 0.0
        cost = service + xfer
        edges: dict[str, dict[str, float]] = {}
        for d in roots:
            for name, e in d.get("edges", {}).items():
                agg = edges.setdefault(name, {"L": 0.0, "peak": 0})
                agg["L"] += per_span(e["area"], window)
                agg["peak"] = max(agg["peak"], e["peak"])
        gpu = _gpu_row(members, roots, items)
        extra: dict[str, Any] = {"gpu": gpu} if gpu is not None else {}
        bound = st.replicas / cost if cost > 0 else math.inf
        if st.route == "key" and len(roots) > 1 and items:
            # the keys fix which replica gets an item: the hottest replica sets the stage's
            # rate, as if the stage had only items / (its items) replicas
            per = [int(d["items_in"]) for d in roots]
            extra["key_spread"] = items / max(per)
            extra["key_replica_items"] = per
            extra["key_busiest"] = max((d["time"]["busy"] + d["time"]["io"])
                                       / max(d["elapsed"], 1e-12) for d in roots)
            bound = extra["key_spread"] / cost if cost > 0 else math.inf
        out[st.name] = StageRow(
            kind=st.kind, replicas=st.replicas, group=st.group, capacity=st.capacity,
            items=items, items_out=int(sum(d["items_out"] for d in roots)), events=int(n_ev),
            events_dropped=int(sum(d.get("events_dropped", 0) for d in roots)),
            window=window, t_first=t_first, t_last=t_last, t_end_first=t_end_first,
            t_end_last=t_end_last, throughput=lam, service=service, cost=cost, bound=bound,
            L=L, lam=lam, W=sojourn, little_residual=_residual(L, lam, sojourn),
            queue_L=Lq, queue_W=waiting, queue_residual=_residual(Lq, lam, waiting),
            held_peak=int(max(d["held_peak"] for d in roots)),
            io_bytes=int(sum(d.get("io_bytes", 0) for d in members)), edges=edges,
            extra=extra,
            **{s: float(np.mean([d["time"][s] / max(d["elapsed"], 1e-12) for d in members]))
               for s in STATES})
    return out


def _gpu_row(members: list[dict], roots: list[dict], items: int) -> dict[str, Any] | None:
    """A GPU stage's device figures from its ranks' ``gpu_*`` stats (docs/gpu.md), else None:
    peak device memory of its busiest rank, CUDA-event kernel time, and that time's share of
    the stage's busy time."""
    if not any("gpu_peak_bytes" in d or "gpu_kernel_s" in d for d in members):
        return None
    kernel = float(sum(d.get("gpu_kernel_s", 0.0) for d in roots))
    timed = int(sum(d.get("gpu_items_timed", 0) for d in roots))
    busy = float(sum(d["time"]["busy"] for d in roots))
    return {"peak_bytes": int(max(d.get("gpu_peak_bytes", 0) for d in members)),
            "kernel_s": kernel, "items_timed": timed,
            "kernel_per_item": kernel / timed if timed else 0.0,
            "kernel_of_busy": kernel / busy if busy > 0 else 0.0,
            "sync_s": float(sum(d.get("gpu_sync_s", 0.0) for d in roots))}


# ----------------------------------------------------------------------------- pipeline view
def _last_by_seq(ev: np.ndarray, col: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite seqs of ``ev`` and, per seq, the latest value of column ``col``."""
    ev = ev[np.isfinite(ev[:, SEQ])]
    if not len(ev):
        return np.empty(0), np.empty(0)
    order = np.lexsort((ev[:, col], ev[:, SEQ]))
    s, v = ev[order, SEQ], ev[order, col]
    last = np.r_[s[1:] != s[:-1], True]
    return s[last], v[last]


def _join(a: np.ndarray, a_col: int, b: np.ndarray, b_col: int) -> np.ndarray:
    """For every event of ``b`` whose seq ``a`` has: b[b_col] - a[a_col] (latest a per seq)."""
    s, v = _last_by_seq(a, a_col)
    b = b[np.isfinite(b[:, SEQ])]
    if not len(s) or not len(b):
        return np.empty(0)
    i = np.clip(np.searchsorted(s, b[:, SEQ]), 0, len(s) - 1)
    hit = s[i] == b[:, SEQ]
    return b[hit, b_col] - v[i[hit]]


def _stage_events(plan: Plan, ranks: Ranks) -> dict[str, np.ndarray]:
    out = {}
    for st in plan.stages:
        ev = [on_wall(d) for d in _roots(st, ranks)]
        out[st.name] = np.concatenate(ev) if ev else empty()
    return out


def _pairs(plan: Plan, names: list[str]) -> list[tuple[str, str]]:
    """The data edges as (sender, receiver) stage names: the plan's (a graph's forks and joins),
    between stages that reported."""
    have = set(names)
    pairs = [(plan.stages[e.src].name, plan.stages[e.dst].name) for e in plan.edges]
    if not plan.edges:  # a plan without edges (a training run file): the chain
        pairs = list(pairwise(names))
    return [(a, b) for a, b in pairs if a in have and b in have]


def _edges(pairs: list[tuple[str, str]], summary: dict[str, StageRow],
           evs: dict) -> list[dict[str, Any]]:
    """Each edge's queue (records arrived at the receiver, not yet started) and wire time. A
    join's queue is the receiver's, over all its inputs (a record's input is not recorded)."""
    rows = []
    for a, b in pairs:
        ra, rb = summary[a], summary[b]
        transit = _join(evs[a], T_SENT, evs[b], T_RECV)
        credit = ra.edges.get(b, {"L": 0.0, "peak": 0})
        rows.append({
            "from": a, "to": b, "L": rb.queue_L, "lam": rb.lam, "W": rb.queue_W,
            "little_residual": rb.queue_residual,
            "in_flight": credit["L"], "in_flight_peak": int(credit["peak"]),
            "capacity": rb.capacity * rb.replicas,
            "transit_min": float(transit.min()) if len(transit) else None,
            "transit_median": float(np.median(transit)) if len(transit) else None,
        })
    return rows


def _end_to_end(names: list[str], summary: dict[str, StageRow], evs: dict, ranks: Ranks,
                plan: Plan, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Little's law for the whole pipeline: exact per-rank occupancy integrals plus the time on
    the wire (L) against source and sink stamps joined by seq on the shared clock (W)."""
    src, snk = evs[names[0]], evs[names[-1]]
    sojourn = _join(src, T_RECV, snk, T_SENT)
    n_src = summary[names[0]].items
    # the join counts items by source seq: exact only when no stage drops or multiplies items
    # (on a graph a forked item is in several places at once: no single sojourn per item)
    applicable = (plan.is_chain and len(names) > 1
                  and all(summary[n].items == n_src for n in names)
                  and not any(summary[n].events_dropped for n in names) and len(sojourn) > 0)
    if not len(sojourn):
        return {"items": 0, "applicable": False, "L": 0.0, "lam": 0.0, "W": 0.0,
                "little_residual": 0.0, "window": 0.0}
    t0 = float(src[:, T_RECV].min())
    t1 = float(snk[:, T_SENT].max())
    window = t1 - t0 if t1 > t0 else math.nan
    area = sum(d["held_area"] for st in plan.stages for d in _roots(st, ranks))
    wire = sum(float(np.sum(_join(evs[a], T_SENT, evs[b], T_RECV))) for a, b in pairs)
    L = per_span(area + wire, window)
    lam = per_span(len(sojourn), window)
    W = float(np.mean(sojourn))
    return {"items": int(len(sojourn)), "applicable": bool(applicable), "L": L, "lam": lam,
            "W": W, "little_residual": _residual(L, lam, W), "window": window}


def pipeline_view(summary: dict[str, StageRow], plan: Plan | None = None) -> dict[str, Any]:
    """Measured period and makespan against the bounds max(t_i / r_i) and sum(t_i), from the
    rows alone (the sink's first and last end, the source's first arrival). On a graph
    (``plan`` with forks or joins) the period is per source item, its bound
    :func:`graph_bound`, and the latency bound the costliest path from a source to a sink."""
    names = list(summary)
    if plan is not None and not plan.is_chain:
        return _graph_view(summary, plan)
    src, snk = summary[names[0]], summary[names[-1]]
    n = int(snk.items)
    period = (snk.t_end_last - snk.t_end_first) / (snk.events - 1) if snk.events > 1 \
        else math.nan
    costs = [summary[k].cost for k in names]
    period_bound = max(c / summary[k].spread for k, c in zip(names, costs, strict=True))
    latency_bound = float(sum(costs))
    seen = snk.events and src.events
    makespan = float(snk.t_last - src.t_first) if seen else math.nan
    predicted = latency_bound + max(int(src.items) - 1, 0) * period_bound
    return {
        "items": n, "throughput": per_span(1, period), "period": float(period),
        "period_bound": period_bound,
        "latency": float(snk.t_end_first - src.t_first) if seen else math.nan,
        "latency_bound": latency_bound, "makespan": makespan, "makespan_predicted": predicted,
        "efficiency": per_span(predicted, makespan),
    }


def graph_bound(summary: dict[str, StageRow]) -> dict[str, Any] | None:
    """The throughput bound of a graph, in source items per second: every stage needs
    ``t_i x (items it sees per source item) / replicas`` seconds per source item (a merge join
    sees the items of all its inputs, a fan-out multiplies, a drop divides), and the largest of
    these is the period no layout of the other stages can beat."""
    n_src = sum(r.items for r in summary.values() if r.kind == "source")
    if n_src <= 0:
        return None
    per = {k: r.cost * (r.items / n_src) / r.spread for k, r in summary.items()}
    stage = max(per, key=lambda k: per[k])
    r = summary[stage]
    reps = (f"{r.spread:.3g} replicas' worth (the hottest of {r.replicas} gets "
            f"{100 / r.spread:.0f}% of the items, routed by key)" if _skewed(r) else
            f"{r.replicas} replica{'s' if r.replicas > 1 else ''}")
    why = (f"t_i {1e3 * r.cost:.3f} ms x {r.items / n_src:.3g} items per source item / "
           f"{reps} = {1e3 * per[stage]:.3f} ms per source item, the largest over the stages")
    return {"stage": stage, "period": per[stage], "per_stage": per, "reason": why}


def _graph_view(summary: dict[str, StageRow], plan: Plan) -> dict[str, Any]:
    srcs = [k for k, r in summary.items() if r.kind == "source" and r.events]
    snks = [k for k, r in summary.items() if r.kind == "sink" and r.events]
    n_src = int(sum(summary[k].items for k in srcs))
    gb = graph_bound(summary)
    period = math.nan
    if snks and n_src > 1:
        t0 = min(summary[k].t_end_first for k in snks)
        t1 = max(summary[k].t_end_last for k in snks)
        period = (t1 - t0) / (n_src - 1)
    # the costliest path from a source to a sink (stages in plan order read earlier stages)
    path: dict[str, float] = {}
    for s in plan.stages:
        c = summary[s.name].cost if s.name in summary else 0.0
        path[s.name] = c + max((path[plan.stages[j].name] for j in s.inputs), default=0.0)
    latency_bound = max((path[k] for k in snks), default=0.0)
    period_bound = gb["period"] if gb is not None else 0.0
    t_first = min((summary[k].t_first for k in srcs), default=0.0)
    makespan = max((summary[k].t_last for k in snks), default=t_first) - t_first
    predicted = latency_bound + max(n_src - 1, 0) * period_bound
    return {
        "items": n_src, "throughput": per_span(1, period), "period": float(period),
        "period_bound": period_bound,
        "latency": float(min(summary[k].t_end_first for k in snks) - t_first) if snks
        else math.nan,
        "latency_bound": latency_bound, "makespan": float(makespan),
        "makespan_predicted": predicted,
        "efficiency": per_span(predicted, makespan),
        "graph_bound": gb,
    }


def bottleneck(summary: dict[str, StageRow], graph: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The stage that limits throughput: the highest busy fraction per replica, confirmed by
    blocked stages before it and starved stages after it (and by the lowest bound; on a graph,
    by :func:`graph_bound`, passed as ``graph``)."""
    names = list(summary)
    if not names:
        return {"stage": None, "reason": "no stage recorded any item"}
    def load(n: str) -> float:  # a key-routed stage is as busy as its hottest replica
        r = summary[n]
        return float(r.extra.get("key_busiest", r.busy + r.io))

    name = max(names, key=load)
    row = summary[name]
    i = names.index(name)
    before = [n for n in names[:i] if summary[n].blocked > WAITING]
    after = [n for n in names[i + 1:] if summary[n].starved > WAITING]
    by_bound = min(names, key=lambda n: summary[n].bound)
    busy = row.busy + row.io
    why = f"busy {100 * busy:.0f}% per replica"
    if _skewed(row):
        busy = load(name)
        why += (f", its hottest replica {100 * busy:.0f}% with {100 / row.spread:.0f}% of the "
                "items (routed by key)")
    if row.io > row.busy:
        mbps = per_span(row.io_bytes, row.io * row.window) / 1e6
        why += f", I/O-bound at {mbps:.1f} MB/s" if math.isfinite(mbps) else ", I/O-bound"
    if before:
        why += f"; upstream {', '.join(before)} blocked"
    if after:
        why += f"; downstream {', '.join(after)} starved"
    if graph is not None:
        by_bound = graph["stage"]
        why += f"; graph bound at {by_bound!r}: {graph['reason']}"
    elif by_bound != name:
        why += f"; lowest bound is at {by_bound!r}"
    return {"stage": name, "busy": busy, "reason": why, "blocked_upstream": before,
            "starved_downstream": after, "by_bound": by_bound,
            "bound": _finite(row.bound)}


def _skewed(row: StageRow) -> bool:
    return row.spread < 0.9 * row.replicas


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _key_replicas(b: str, rb: StageRow, counts: Mapping[int, int] | None, busy: float,
                  nxt: str | None, y: float) -> dict[str, Any]:
    """The replicas advice for a bottleneck routed by key whose hottest replica has more than
    its share: more replicas help only as far as they split that replica's keys. From the key
    buckets (:mod:`streampipe.keyshare`) when the ranks counted them."""
    head = (f"stage `{b}` is the bottleneck (its hottest replica is busy {100 * busy:.0f}% with "
            f"{100 / rb.spread:.0f}% of the items, routed by key)")
    advice: dict[str, Any] = {"kind": "replicas", "stage": b, "next_limit": nxt,
                              "next_limit_throughput": _finite(y)}
    if not counts:
        return {**advice, "add_replicas": None, "throughput": None,
                "text": head + "; more replicas help only as far as they split its keys (this "
                               "run file has no key counts)"}
    top = keyshare.hottest(counts)
    cap = 1 / (top * rb.cost)  # a bucket never splits: no replica count beats this
    goal = min(y, cap)
    r = next((r for r in range(rb.replicas + 1, keyshare.BUCKETS + 1)
              if keyshare.divides(r)
              and keyshare.hot_share(counts, r) * rb.cost * goal <= 1 + 1e-9), None)
    if r is None:  # the hottest bucket shares a replica at every count tried
        return {**advice, "add_replicas": None, "throughput": None, "key_cap": cap,
                "text": head + f"; one key bucket holds {100 * top:.0f}% of its items: no "
                               f"replica count takes it past {cap:.0f}/s"}
    x = min(1 / (keyshare.hot_share(counts, r) * rb.cost), y)
    text = head + f"; {r - rb.replicas} more replica(s) would raise throughput to ~{x:.0f}/s"
    text += (f", after which `{nxt}` limits at {y:.0f}/s" if y <= cap else
             f"; more cannot help: one key bucket holds {100 * top:.0f}% of its items "
             f"({cap:.0f}/s at most)")
    return {**advice, "add_replicas": r - rb.replicas, "throughput": x, "key_cap": cap,
            "text": text}


def fixed_replicas(plan: Plan) -> dict[str, str]:
    """The stages whose replica count advice must leave alone, each with the reason: a source
    of an ordered pipeline (the job loader refuses to replicate it: a replicated source has no
    single order) and every sink (its ``result()`` is the job's result, and with
    ``pipeline.checkpoint`` the loader refuses a replicated one). Used by the report's advice
    and by ``simulate --advise``."""
    out = {}
    for st in plan.stages:
        if st.kind == "source" and plan.ordered:
            out[st.name] = ("a source of an ordered pipeline runs as one replica (a replicated "
                            "source has no single order)")
        elif st.kind == "sink":
            out[st.name] = "a sink runs as one replica (its result() is the job's result)"
    return out


# an unordered pipeline may replicate its source, but every replica runs generate() itself
_SPLIT = (" (each source replica runs its own generate(): it must split the stream by "
          "ctx.replica, or the items come once per replica)")


def _fixed_advice(b: str, rb: StageRow, busy: float, why: str) -> dict[str, Any]:
    """The bottleneck cannot take replicas: what bounds throughput, and what can help."""
    work = {"source": "generate()", "sink": "consume()"}.get(rb.kind, "process()")
    cap = f", bound {rb.bound:.0f}/s" if math.isfinite(rb.bound) else ""
    return {"kind": "replicas", "stage": b, "add_replicas": None, "throughput": None,
            "next_limit": None, "next_limit_throughput": None, "fixed": why,
            "text": f"stage `{b}` is the bottleneck (busy {100 * busy:.0f}%{cap}); {why}, so "
                    f"more replicas are not an option: make its {work} cheaper per item, or "
                    "pass fewer, larger items (per-item costs amortise)"}


def _advice(names: list[str], summary: dict[str, StageRow], bn: dict, pipe: dict, e2e: dict,
            flags: list[dict], keys: Mapping[str, Mapping[int, int]],
            fixed: Mapping[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    b = bn["stage"]
    if b is None:
        return out
    rb = summary[b]
    i = names.index(b)
    others = [n for n in names if n != b]
    nxt = min(others, key=lambda n: summary[n].bound) if others else None
    y = summary[nxt].bound if nxt else math.inf
    if b in fixed:
        out.append(_fixed_advice(b, rb, bn["busy"], fixed[b]))
    elif _skewed(rb) and rb.cost > 0:
        out.append(_key_replicas(b, rb, keys.get(b), bn["busy"], nxt, y))
    elif rb.cost > 0 and math.isfinite(y):
        need = max(rb.replicas + 1, math.ceil(y * rb.cost - 1e-9))
        x = min(need / rb.cost, y)
        out.append({"kind": "replicas", "stage": b, "add_replicas": need - rb.replicas,
                    "throughput": x, "next_limit": nxt, "next_limit_throughput": y,
                    "text": f"stage `{b}` is the bottleneck (busy {100 * bn['busy']:.0f}%); "
                            f"{need - rb.replicas} more replica(s) would raise throughput to "
                            f"~{x:.0f}/s, after which `{nxt}` limits at {y:.0f}/s"
                            + _SPLIT * (rb.kind == "source")})
    elif rb.cost > 0:
        out.append({"kind": "replicas", "stage": b, "add_replicas": 1,
                    "throughput": (rb.replicas + 1) / rb.cost, "next_limit": None,
                    "next_limit_throughput": None,
                    "text": f"stage `{b}` is the bottleneck (busy {100 * bn['busy']:.0f}%); "
                            "throughput grows with its replicas until another stage limits"
                            + _SPLIT * (rb.kind == "source")})
    blocked = [n for n in names[:i] if summary[n].blocked > NOTICEABLE]
    # a skewed key's cold replicas starve whatever the capacity
    if rb.starved > NOTICEABLE and blocked and not _skewed(rb):
        out.append({"kind": "capacity_small", "stage": b, "starved": rb.starved,
                    "blocked_upstream": blocked,
                    "text": f"capacity too small: `{b}` starves {100 * rb.starved:.0f}% of "
                            f"its time while {', '.join(blocked)} block; raise `capacity` of "
                            f"`{b}` so the queue absorbs the variation"})
    n_star = pipe["throughput"] * pipe["latency_bound"]
    # the edge into the bottleneck holds most of its credits: a full queue that only waits
    full = i > 0 and summary[names[i - 1]].edges.get(b, {}).get("L", 0.0) > \
        0.5 * rb.capacity * rb.replicas
    small = any(a["kind"] == "capacity_small" for a in out)  # the two advices exclude each other
    if e2e["items"] and n_star > 0 and e2e["L"] > 2 * n_star + 1 and full and not small:
        k = max(2, math.ceil(n_star / max(len(names) - 1, 1)) + 1)
        out.append({"kind": "capacity_large", "in_flight": e2e["L"], "saturation": n_star,
                    "W": e2e["W"], "latency_bound": pipe["latency_bound"], "capacity": k,
                    "text": f"capacity larger than needed: {e2e['L']:.1f} items in flight, but "
                            f"~{n_star:.1f} keep `{b}` busy; the extra only waits (W "
                            f"{1e3 * e2e['W']:.0f} ms vs {1e3 * pipe['latency_bound']:.0f} ms of "
                            f"work); capacity ~{k} would keep throughput and cut latency"})
    ser = serial_fraction(names, summary)
    if ser and (ser["fraction"] > 0.05 or (ser["throughput_cap"] or math.inf)
                < 2 * pipe["throughput"]):
        out.append({"kind": "serial", **ser})
    if flags:
        where = ", ".join(f["where"] for f in flags)
        out.append({"kind": "little", "where": [f["where"] for f in flags],
                    "text": f"Little's law residual over {100 * LITTLE_TOLERANCE:.0f}% at {where}: "
                            "a measurement problem (events dropped, a failed run, or clocks), "
                            "not a property of the pipeline"})
    return out


def serial_fraction(names: list[str], summary: dict[str, StageRow]) -> dict[str, Any] | None:
    """Amdahl: the share of per-item work in an unreplicated source and sink, which no number of
    replicas elsewhere can spread, and the throughput cap it sets."""
    ends = list(dict.fromkeys(n for n in (names[0], names[-1]) if summary[n].replicas == 1))
    total = sum(summary[n].cost for n in names)
    if not ends or total <= 0:
        return None
    s = sum(summary[n].cost for n in ends) / total
    cap = min(summary[n].bound for n in ends)
    text = (f"serial fraction {100 * s:.1f}% ({' and '.join(ends)}): Amdahl limits the speed-up "
            f"over one rank to {1 / s:.0f}x" if s > 0 else "no serial work in source and sink")
    if math.isfinite(cap):
        text += f"; they cap throughput at {cap:.0f}/s"
    return {"stages": ends, "fraction": s, "throughput_cap": _finite(cap), "text": text}


def analyze(plan: Plan, ranks: Ranks, meta: dict | None = None,
            summary: dict[str, StageRow] | None = None) -> dict[str, Any]:
    """The whole report as plain JSON-able data (schema in ``docs/diagnostics.md``)."""
    meta = meta or {}
    summary = summary if summary is not None else summarize(plan, ranks)
    names = list(summary)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": {"job": meta.get("job_name"), "status": meta.get("status", "ok"),
                "error": meta.get("error") or None, "ranks": len(ranks),
                "hosts": sorted({d["host"] for d in ranks if d and "host" in d}),
                "start_time": meta.get("start_time"), "wall_time": meta.get("wall_time")},
        "stages": [{"name": n, **{k: v for k, v in summary[n].to_dict().items()
                                  if k != "edges"}} for n in names],
        "ranks": [_rank_row(r, d) for r, d in enumerate(ranks) if d is not None],
        "result": meta.get("result"),  # the job's result as the run file stores it (JSON)
    }
    if not names:
        doc.update(pipeline=None, edges=[], end_to_end=None, bottleneck=bottleneck(summary),
                   serial=None, advice=[], little_flags=[])
        return _nulls(doc)
    evs = _stage_events(plan, ranks)
    pipe = pipeline_view(summary, plan)
    pairs = _pairs(plan, names)
    edges = _edges(pairs, summary, evs)
    e2e = _end_to_end(names, summary, evs, ranks, plan, pairs)
    e2e["saturation_in_flight"] = pipe["throughput"] * pipe["latency_bound"]
    flags = [{"where": f"stage:{n}", "residual": summary[n].little_residual}
             for n in names if summary[n].little_residual > LITTLE_TOLERANCE]
    flags += [{"where": f"edge:{e['from']}->{e['to']}", "residual": e["little_residual"]}
              for e in edges if e["little_residual"] > LITTLE_TOLERANCE]
    if e2e["applicable"] and e2e["little_residual"] > LITTLE_TOLERANCE:
        flags.append({"where": "end_to_end", "residual": e2e["little_residual"]})
    bn = bottleneck(summary, pipe.get("graph_bound"))
    doc["serial"] = serial_fraction(names, summary)
    advice = _advice(names, summary, bn, pipe, e2e, flags, keyshare.merge(ranks),
                     fixed_replicas(plan))
    _note_cores(advice, ranks)
    doc["per_host"] = per_host(plan, ranks)
    doc.update(pipeline=pipe, edges=edges, end_to_end=e2e, bottleneck=bn, advice=advice,
               little_flags=flags)
    return _nulls(doc)


def _nulls(x: Any) -> Any:
    """``x`` with every non-finite float (a figure over an unknown span, an unbounded stage)
    replaced by None: JSON's null, the text report's dash."""
    if isinstance(x, float):
        return _finite(x)
    if isinstance(x, dict):
        return {k: _nulls(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nulls(v) for v in x]
    return x


def _note_cores(advice: list[dict[str, Any]], ranks: Ranks) -> None:
    """Replica advice assumes a core per rank: say so when the hosts of the run had fewer."""
    per_host: dict[str, list[int]] = {}
    for d in ranks:
        if d and d.get("cpus"):
            per_host.setdefault(d.get("host", "?"), []).append(int(d["cpus"]))
    over = [(h, len(c), c[0]) for h, c in per_host.items() if len(c) >= c[0]]
    for a in advice:
        if a["kind"] == "replicas" and a["add_replicas"] and over:
            h, n, cpus = over[0]
            a["cores_note"] = {"host": h, "ranks": n, "cpus": cpus}
            a["text"] += (f" (given a free core per rank: host {h} already runs {n} ranks on "
                          f"{cpus} cores)")


def _rank_row(r: int, d: dict) -> dict[str, Any]:
    el = max(d["elapsed"], 1e-12)
    return {"rank": r, "stage": d.get("stage"), "replica": d.get("replica"),
            "host": d.get("host"), "wall0": d["wall0"], "elapsed": d["elapsed"],
            **{s: d["time"][s] / el for s in STATES},
            "items_in": int(d["items_in"]), "items_out": int(d["items_out"]),
            "events": int(reduce_events(d)["n"]), "events_dropped": int(d.get("events_dropped", 0))}


# ----------------------------------------------------------------------------- hosts
def per_host(plan: Plan, ranks: Ranks) -> dict[str, Any]:
    """Where the work ran: per host its ranks, items and items/s, and per pair of hosts (in the
    direction items flow) the hop time an item took from the sender's send to the receiver's
    take-in, joined by source seq rank by rank. Across real hosts the hop also carries the hosts'
    clock offset (see docs/diagnostics.md); the minimum bounds it."""
    roots = [[r for r in st.roots if r < len(ranks) and ranks[r]] for st in plan.stages]
    hosts: dict[str, dict[str, Any]] = {}
    for st, rs in zip(plan.stages, roots, strict=True):
        for r in rs:
            d = ranks[r]
            h = hosts.setdefault(d.get("host", "?"), {"ranks": [], "stages": [], "items": 0,
                                                      "ev": []})
            h["ranks"].append(r)
            h["stages"].append(st.name if st.replicas == 1
                               else f"{st.name}[{d.get('replica', '?')}]")
            h["items"] += int(d["items_in"])
            h["ev"].append(on_wall(d))
    rows = []
    for name, h in sorted(hosts.items()):
        ev = np.concatenate(h.pop("ev"))
        window = float(ev[:, T_SENT].max() - ev[:, T_RECV].min()) if len(ev) else 0.0
        rows.append({"host": name, **h, "window": window,
                     "throughput": h["items"] / window if window > 0 else 0.0})
    hops: dict[tuple[str, str], list[np.ndarray]] = {}
    for a, b in pairwise(roots):
        for ra in a:
            ea = on_wall(ranks[ra])
            for rb in b:
                key = (ranks[ra].get("host", "?"), ranks[rb].get("host", "?"))
                hops.setdefault(key, []).append(_join(ea, T_SENT, on_wall(ranks[rb]),
                                                      T_RECV))
    links = []
    for (src, dst), parts in sorted(hops.items()):
        t = np.concatenate(parts)
        links.append({"from": src, "to": dst, "items": int(len(t)),
                      "hop_min": float(t.min()) if len(t) else None,
                      "hop_median": float(np.median(t)) if len(t) else None})
    return {"hosts": rows, "links": links}
