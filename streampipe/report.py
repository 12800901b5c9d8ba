"""Bottleneck analysis, the Little's-law audit and advice, from the ranks' raw records.

``summarize`` turns per-rank records (as collected at the end of a run or read back from a run
file) into one row per stage; ``analyze`` adds the pipeline view (period against its bound, edges,
end to end, bottleneck, advice) as the JSON document described in ``docs/diagnostics.md``;
``short_text`` is what ``streampipe run`` prints at the end; ``main`` is ``streampipe report``.

Times of different ranks are put on one axis through each rank's wall-clock start (``wall0``);
per-stage figures only use rank-local differences.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from .metrics import STATES

SCHEMA_VERSION = 1
LITTLE_TOLERANCE = 0.05  # a larger |L - lambda W| / L is a measurement problem
WAITING = 0.3  # a stage blocked / starved this much of its time confirms a bottleneck
NOTICEABLE = 0.10  # the bottleneck starving this much while upstream blocks: capacity too small
SEQ, T_RECV, T_START, T_END, T_SENT = range(5)


def _plan_stages(plan: Any) -> list[dict[str, Any]]:
    if isinstance(plan, dict):
        return plan["stages"]
    from dataclasses import asdict

    return [asdict(s) for s in plan.stages]


def _present(ranks: list[dict | None], rs: Any) -> list[dict]:
    return [ranks[r] for r in rs if r < len(ranks) and ranks[r] is not None]


def _residual(L: float, lam: float, W: float) -> float:
    return abs(L - lam * W) / L if L > 0 else 0.0


def _wall_events(d: dict) -> np.ndarray:
    """A rank's events with the four stamps moved onto the shared wall clock."""
    ev = np.array(d["events"], dtype=np.float64).reshape(-1, 5)
    ev[:, 1:] += d["wall0"]
    return ev


def summarize(plan: Any, ranks: list[dict | None]) -> dict[str, dict[str, Any]]:
    """One row per stage: items, throughput, time split, service time, bound, L, lambda, W.

    ``cost`` is the rank time one item takes (process time plus its share of transfer time);
    ``bound`` = replicas / cost is the most the stage can pass per second.
    """
    out: dict[str, dict[str, Any]] = {}
    for st in _plan_stages(plan):
        members = _present(ranks, [r for g in st["groups"] for r in g])
        roots = _present(ranks, [g[0] for g in st["groups"]])
        if not roots:
            continue
        ev = [_wall_events(d) for d in roots if len(d["events"])]
        items = int(sum(d["items_in"] for d in roots))
        if ev:
            allev = np.concatenate(ev)
            t_first, t_last = float(allev[:, T_RECV].min()), float(allev[:, T_SENT].max())
            service = float(np.mean(allev[:, T_END] - allev[:, T_START]))
            sojourn = float(np.mean(allev[:, T_SENT] - allev[:, T_RECV]))
            waiting = float(np.mean(allev[:, T_START] - allev[:, T_RECV]))
        else:
            t_first = t_last = service = sojourn = waiting = 0.0
        window = max(t_last - t_first, 1e-12)
        lam = items / window if items else 0.0
        L = sum(d["held_area"] for d in roots) / window
        Lq = sum(d.get("queued_area", 0.0) for d in roots) / window
        xfer = sum(d["time"]["transfer"] for d in roots) / items if items else 0.0
        cost = service + xfer
        row: dict[str, Any] = {
            "kind": st["kind"], "replicas": st["replicas"], "group": st["group"],
            "capacity": st.get("capacity", 0), "items": items,
            "items_out": int(sum(d["items_out"] for d in roots)),
            "events": int(sum(len(d["events"]) for d in roots)),
            "events_dropped": int(sum(d.get("events_dropped", 0) for d in roots)),
            "window": window, "t_first": t_first, "t_last": t_last, "throughput": lam,
            "service": service, "cost": cost,
            "bound": st["replicas"] / cost if cost > 0 else math.inf,
            "L": L, "lam": lam, "W": sojourn, "little_residual": _residual(L, lam, sojourn),
            "queue_L": Lq, "queue_W": waiting, "queue_residual": _residual(Lq, lam, waiting),
            "held_peak": int(max(d["held_peak"] for d in roots)),
            "io_bytes": int(sum(d.get("io_bytes", 0) for d in members)),
        }
        for state in STATES:
            row[state] = float(np.mean([d["time"][state] / max(d["elapsed"], 1e-12)
                                        for d in members]))
        edges: dict[str, dict[str, float]] = {}
        for d in roots:
            for name, e in d.get("edges", {}).items():
                agg = edges.setdefault(name, {"L": 0.0, "peak": 0})
                agg["L"] += e["area"] / window
                agg["peak"] = max(agg["peak"], e["peak"])
        row["edges"] = edges
        gpu = _gpu_row(members, roots, items)
        if gpu is not None:
            row["gpu"] = gpu
        out[st["name"]] = row
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


def _stage_events(plan: Any, ranks: list[dict | None]) -> dict[str, np.ndarray]:
    out = {}
    for st in _plan_stages(plan):
        ev = [_wall_events(d) for d in _present(ranks, [g[0] for g in st["groups"]])]
        out[st["name"]] = np.concatenate(ev) if ev else np.empty((0, 5))
    return out


def _edges(names: list[str], summary: dict, evs: dict) -> list[dict[str, Any]]:
    """Each edge's queue (records arrived at the receiver, not yet started) and wire time."""
    rows = []
    for a, b in pairwise(names):
        ra, rb = summary[a], summary[b]
        transit = _join(evs[a], T_SENT, evs[b], T_RECV)
        credit = ra["edges"].get(b, {"L": 0.0, "peak": 0})
        rows.append({
            "from": a, "to": b, "L": rb["queue_L"], "lam": rb["lam"], "W": rb["queue_W"],
            "little_residual": rb["queue_residual"],
            "in_flight": credit["L"], "in_flight_peak": int(credit["peak"]),
            "capacity": rb["capacity"] * rb["replicas"],
            "transit_min": float(transit.min()) if len(transit) else None,
            "transit_median": float(np.median(transit)) if len(transit) else None,
        })
    return rows


def _end_to_end(names: list[str], summary: dict, evs: dict, ranks: list[dict | None],
                plan: Any) -> dict[str, Any]:
    """Little's law for the whole pipeline: exact per-rank occupancy integrals plus the time on
    the wire (L) against source and sink stamps joined by seq on the shared clock (W)."""
    src, snk = evs[names[0]], evs[names[-1]]
    sojourn = _join(src, T_RECV, snk, T_SENT)
    n_src = summary[names[0]]["items"]
    # the join counts items by source seq: exact only when no stage drops or multiplies items
    applicable = (len(names) > 1 and all(summary[n]["items"] == n_src for n in names)
                  and not any(summary[n]["events_dropped"] for n in names) and len(sojourn) > 0)
    if not len(sojourn):
        return {"items": 0, "applicable": False, "L": 0.0, "lam": 0.0, "W": 0.0,
                "little_residual": 0.0, "window": 0.0}
    t0 = float(src[:, T_RECV].min())
    t1 = float(snk[:, T_SENT].max())
    window = max(t1 - t0, 1e-12)
    area = sum(d["held_area"] for st in _plan_stages(plan)
               for d in _present(ranks, [g[0] for g in st["groups"]]))
    wire = sum(float(np.sum(_join(evs[a], T_SENT, evs[b], T_RECV)))
               for a, b in pairwise(names))
    L = (area + wire) / window
    lam = len(sojourn) / window
    W = float(np.mean(sojourn))
    return {"items": int(len(sojourn)), "applicable": bool(applicable), "L": L, "lam": lam,
            "W": W, "little_residual": _residual(L, lam, W), "window": window}


def _pipeline(names: list[str], summary: dict, evs: dict) -> dict[str, Any]:
    """Measured period and makespan against the bounds max(t_i / r_i) and sum(t_i)."""
    snk = evs[names[-1]]
    src = evs[names[0]]
    n = int(summary[names[-1]]["items"])
    out_t = np.sort(snk[:, T_END])
    period = float((out_t[-1] - out_t[0]) / (len(out_t) - 1)) if len(out_t) > 1 else 0.0
    costs = [summary[k]["cost"] for k in names]
    period_bound = max(c / summary[k]["replicas"] for k, c in zip(names, costs, strict=True))
    latency_bound = float(sum(costs))
    makespan = float(snk[:, T_SENT].max() - src[:, T_RECV].min()) if len(snk) and len(src) \
        else 0.0
    n_src = int(summary[names[0]]["items"])
    predicted = latency_bound + max(n_src - 1, 0) * period_bound
    return {
        "items": n, "throughput": 1 / period if period > 0 else 0.0, "period": period,
        "period_bound": period_bound, "latency": float(out_t[0] - src[:, T_RECV].min())
        if len(out_t) and len(src) else 0.0, "latency_bound": latency_bound,
        "makespan": makespan, "makespan_predicted": predicted,
        "efficiency": predicted / makespan if makespan > 0 else 0.0,
    }


def bottleneck(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The stage that limits throughput: the highest busy fraction per replica, confirmed by
    blocked stages before it and starved stages after it (and by the lowest bound)."""
    names = list(summary)
    if not names:
        return {"stage": None, "reason": "no stage recorded any item"}
    name = max(names, key=lambda n: summary[n]["busy"] + summary[n]["io"])
    row = summary[name]
    i = names.index(name)
    before = [n for n in names[:i] if summary[n]["blocked"] > WAITING]
    after = [n for n in names[i + 1:] if summary[n]["starved"] > WAITING]
    by_bound = min(names, key=lambda n: summary[n]["bound"])
    busy = row["busy"] + row["io"]
    why = f"busy {100 * busy:.0f}% per replica"
    if row["io"] > row["busy"]:
        mbps = row["io_bytes"] / max(row["io"] * row["window"], 1e-12) / 1e6
        why += f", I/O-bound at {mbps:.1f} MB/s"
    if before:
        why += f"; upstream {', '.join(before)} blocked"
    if after:
        why += f"; downstream {', '.join(after)} starved"
    if by_bound != name:
        why += f"; lowest bound is at {by_bound!r}"
    return {"stage": name, "busy": busy, "reason": why, "blocked_upstream": before,
            "starved_downstream": after, "by_bound": by_bound,
            "bound": _finite(row["bound"])}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _advice(names: list[str], summary: dict, bn: dict, pipe: dict, e2e: dict,
            flags: list[dict]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    b = bn["stage"]
    if b is None:
        return out
    rb = summary[b]
    i = names.index(b)
    others = [n for n in names if n != b]
    nxt = min(others, key=lambda n: summary[n]["bound"]) if others else None
    y = summary[nxt]["bound"] if nxt else math.inf
    if rb["cost"] > 0 and math.isfinite(y):
        need = max(rb["replicas"] + 1, math.ceil(y * rb["cost"] - 1e-9))
        x = min(need / rb["cost"], y)
        out.append({"kind": "replicas", "stage": b, "add_replicas": need - rb["replicas"],
                    "throughput": x, "next_limit": nxt, "next_limit_throughput": y,
                    "text": f"stage `{b}` is the bottleneck (busy {100 * bn['busy']:.0f}%); "
                            f"{need - rb['replicas']} more replica(s) would raise throughput to "
                            f"~{x:.0f}/s, after which `{nxt}` limits at {y:.0f}/s"})
    elif rb["cost"] > 0:
        out.append({"kind": "replicas", "stage": b, "add_replicas": 1,
                    "throughput": (rb["replicas"] + 1) / rb["cost"], "next_limit": None,
                    "next_limit_throughput": None,
                    "text": f"stage `{b}` is the bottleneck (busy {100 * bn['busy']:.0f}%); "
                            "throughput grows with its replicas until another stage limits"})
    blocked = [n for n in names[:i] if summary[n]["blocked"] > NOTICEABLE]
    if rb["starved"] > NOTICEABLE and blocked:
        out.append({"kind": "capacity_small", "stage": b, "starved": rb["starved"],
                    "blocked_upstream": blocked,
                    "text": f"capacity too small: `{b}` starves {100 * rb['starved']:.0f}% of "
                            f"its time while {', '.join(blocked)} block; raise `capacity` of "
                            f"`{b}` so the queue absorbs the variation"})
    n_star = pipe["throughput"] * pipe["latency_bound"]
    # the edge into the bottleneck holds most of its credits: a full queue that only waits
    full = i > 0 and summary[names[i - 1]]["edges"].get(b, {}).get("L", 0.0) > \
        0.5 * rb["capacity"] * rb["replicas"]
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


def serial_fraction(names: list[str], summary: dict) -> dict[str, Any] | None:
    """Amdahl: the share of per-item work in an unreplicated source and sink, which no number of
    replicas elsewhere can spread, and the throughput cap it sets."""
    ends = list(dict.fromkeys(n for n in (names[0], names[-1]) if summary[n]["replicas"] == 1))
    total = sum(summary[n]["cost"] for n in names)
    if not ends or total <= 0:
        return None
    s = sum(summary[n]["cost"] for n in ends) / total
    cap = min(summary[n]["bound"] for n in ends)
    text = (f"serial fraction {100 * s:.1f}% ({' and '.join(ends)}): Amdahl limits the speed-up "
            f"over one rank to {1 / s:.0f}x" if s > 0 else "no serial work in source and sink")
    if math.isfinite(cap):
        text += f"; they cap throughput at {cap:.0f}/s"
    return {"stages": ends, "fraction": s, "throughput_cap": _finite(cap), "text": text}


def analyze(plan: Any, ranks: list[dict | None], meta: dict | None = None,
            summary: dict | None = None) -> dict[str, Any]:
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
        "stages": [{"name": n, **{k: _finite(v) if isinstance(v, float) else v
                                  for k, v in summary[n].items() if k != "edges"}}
                   for n in names],
        "ranks": [_rank_row(r, d) for r, d in enumerate(ranks) if d is not None],
    }
    if not names:
        doc.update(pipeline=None, edges=[], end_to_end=None, bottleneck=bottleneck(summary),
                   serial=None, advice=[], little_flags=[])
        return doc
    evs = _stage_events(plan, ranks)
    pipe = _pipeline(names, summary, evs)
    edges = _edges(names, summary, evs)
    e2e = _end_to_end(names, summary, evs, ranks, plan)
    e2e["saturation_in_flight"] = pipe["throughput"] * pipe["latency_bound"]
    flags = [{"where": f"stage:{n}", "residual": summary[n]["little_residual"]}
             for n in names if summary[n]["little_residual"] > LITTLE_TOLERANCE]
    flags += [{"where": f"edge:{e['from']}->{e['to']}", "residual": e["little_residual"]}
              for e in edges if e["little_residual"] > LITTLE_TOLERANCE]
    if e2e["applicable"] and e2e["little_residual"] > LITTLE_TOLERANCE:
        flags.append({"where": "end_to_end", "residual": e2e["little_residual"]})
    bn = bottleneck(summary)
    doc["serial"] = serial_fraction(names, summary)
    advice = _advice(names, summary, bn, pipe, e2e, flags)
    _note_cores(advice, ranks)
    doc["per_host"] = per_host(plan, ranks)
    doc.update(pipeline={k: _finite(v) if isinstance(v, float) else v for k, v in pipe.items()},
               edges=edges, end_to_end=e2e, bottleneck=bn, advice=advice, little_flags=flags)
    return doc


def _note_cores(advice: list[dict[str, Any]], ranks: list[dict | None]) -> None:
    """Replica advice assumes a core per rank: say so when the hosts of the run had fewer."""
    per_host: dict[str, list[int]] = {}
    for d in ranks:
        if d and d.get("cpus"):
            per_host.setdefault(d.get("host", "?"), []).append(int(d["cpus"]))
    over = [(h, len(c), c[0]) for h, c in per_host.items() if len(c) >= c[0]]
    for a in advice:
        if a["kind"] == "replicas" and over:
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
            "events": int(len(d["events"])), "events_dropped": int(d.get("events_dropped", 0))}


# ----------------------------------------------------------------------------- hosts
def per_host(plan: Any, ranks: list[dict | None]) -> dict[str, Any]:
    """Where the work ran: per host its ranks, items and items/s, and per pair of hosts (in the
    direction items flow) the hop time an item took from the sender's send to the receiver's
    take-in, joined by source seq rank by rank. Across real hosts the hop also carries the hosts'
    clock offset (see docs/diagnostics.md); the minimum bounds it."""
    stages = _plan_stages(plan)
    roots = [[r for g in st["groups"] for r in g[:1] if r < len(ranks) and ranks[r]]
             for st in stages]
    hosts: dict[str, dict[str, Any]] = {}
    for st, rs in zip(stages, roots, strict=True):
        for r in rs:
            d = ranks[r]
            h = hosts.setdefault(d.get("host", "?"), {"ranks": [], "stages": [], "items": 0,
                                                      "ev": []})
            h["ranks"].append(r)
            h["stages"].append(st["name"] if st["replicas"] == 1
                               else f"{st['name']}[{d.get('replica', '?')}]")
            h["items"] += int(d["items_in"])
            if len(d["events"]):
                h["ev"].append(_wall_events(d))
    rows = []
    for name, h in sorted(hosts.items()):
        ev = np.concatenate(h.pop("ev")) if h["ev"] else np.empty((0, 5))
        window = float(ev[:, T_SENT].max() - ev[:, T_RECV].min()) if len(ev) else 0.0
        rows.append({"host": name, **h, "window": window,
                     "throughput": h["items"] / window if window > 0 else 0.0})
    hops: dict[tuple[str, str], list[np.ndarray]] = {}
    for a, b in pairwise(roots):
        for ra in a:
            ea = _wall_events(ranks[ra])
            for rb in b:
                key = (ranks[ra].get("host", "?"), ranks[rb].get("host", "?"))
                hops.setdefault(key, []).append(_join(ea, T_SENT, _wall_events(ranks[rb]),
                                                      T_RECV))
    links = []
    for (src, dst), parts in sorted(hops.items()):
        t = np.concatenate(parts)
        links.append({"from": src, "to": dst, "items": int(len(t)),
                      "hop_min": float(t.min()) if len(t) else None,
                      "hop_median": float(np.median(t)) if len(t) else None})
    return {"hosts": rows, "links": links}


def _host_lines(hosts: dict[str, Any]) -> list[str]:
    lines = [f"host {h['host']}: ranks {','.join(map(str, h['ranks']))} "
             f"({', '.join(h['stages'])}), {h['items']} items, {h['throughput']:.1f} items/s"
             for h in hosts["hosts"]]
    lines += [f"hop {k['from']}->{k['to']}: {k['items']} items, median "
              f"{1e3 * k['hop_median']:.3f} ms, min {1e3 * k['hop_min']:.3f} ms"
              for k in hosts["links"] if k["items"]]
    return lines


# ----------------------------------------------------------------------------- text
def _table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "rep", "items", "items/s", "busy", "starv", "block", "xfer", "io",
            "t_i ms", "bound/s", "L", "W ms", "|L-λW|/L"]
    rows = []
    for name, r in summary.items():
        rows.append([name, str(r["replicas"]), str(r["items"]), f"{r['throughput']:.1f}",
                     *(f"{100 * r[k]:.0f}%" for k in ("busy", "starved", "blocked", "transfer",
                                                     "io")),
                     f"{1e3 * r['cost']:.3f}", f"{r['bound']:.1f}", f"{r['L']:.2f}",
                     f"{1e3 * r['W']:.2f}", f"{r['little_residual']:.3f}"])
    return head, rows


def _conclusions(doc: dict) -> list[str]:
    lines = []
    bn, pipe = doc["bottleneck"], doc["pipeline"]
    if pipe:
        lines.append(f"throughput {pipe['throughput']:.1f}/s (period {1e3 * pipe['period']:.3f} "
                     f"ms, bound {1e3 * pipe['period_bound']:.3f} ms); makespan "
                     f"{pipe['makespan']:.2f} s vs {pipe['makespan_predicted']:.2f} s = latency "
                     f"+ (N-1)·bound")
    if bn.get("stage"):
        lines.append(f"bottleneck: stage {bn['stage']!r} ({bn['reason']})")
    e2e = doc.get("end_to_end")
    if e2e and e2e["items"]:
        lines.append(f"end to end: L {e2e['L']:.2f} in flight, λ {e2e['lam']:.1f}/s, W "
                     f"{1e3 * e2e['W']:.1f} ms, |L-λW|/L {e2e['little_residual']:.3f}; "
                     f"throughput saturates at ~{e2e['saturation_in_flight']:.1f} in flight")
    lines += [f"advice: {a['text']}" for a in doc["advice"]]
    lines += _gpu_lines(doc["stages"])
    if doc.get("per_host") and len(doc["per_host"]["hosts"]) > 1:
        lines += _host_lines(doc["per_host"])
    return lines


def _gpu_lines(stages: list[dict[str, Any]]) -> list[str]:
    out = []
    for st in stages:
        g = st.get("gpu")
        if g:
            out.append(f"gpu: stage {st['name']!r}: peak {g['peak_bytes'] / 2**20:.1f} MiB device "
                       f"memory, kernels {1e3 * g['kernel_per_item']:.3f} ms/item "
                       f"({100 * g['kernel_of_busy']:.0f}% of its busy time)")
    return out


def short_text(plan: Any, summary: dict[str, dict[str, Any]],
               ranks: list[dict | None] | None = None) -> str:
    """The table printed at the end of ``streampipe run``, then the bottleneck and advice."""
    head, rows = _table_rows(summary)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    lines = [fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows]
    if ranks is not None:
        lines += _conclusions(analyze(plan, ranks, summary=summary))
    else:
        bn = bottleneck(summary)
        if bn["stage"]:
            lines.append(f"bottleneck: stage {bn['stage']!r} ({bn['reason']})")
    return "\n".join(lines)


def _print_rich(doc: dict, summary: dict) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    # a pipe or a file gets the full table, not rich's 80-column default
    con = Console() if sys.stdout.isatty() else Console(width=200)
    run = doc["run"]
    style = "green" if run["status"] == "ok" else "bold red"
    con.print(f"run [bold]{run['job']}[/]: [{style}]{run['status']}[/], {run['ranks']} ranks on "
              f"{', '.join(h for h in run['hosts'] if h)}, wall {run['wall_time'] or 0:.2f} s")
    if run["error"]:
        con.print(f"[red]error:[/] {run['error']}", markup=False, highlight=False)
    head, rows = _table_rows(summary)
    bn = doc["bottleneck"].get("stage")
    t = Table(title="stages", header_style="bold")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r, style="bold yellow" if r[0] == bn else None)
    con.print(t)
    if doc["edges"]:
        e = Table(title="edges (queue at the receiver; credits in flight)", header_style="bold")
        for h in ("edge", "L", "λ/s", "W ms", "|L-λW|/L", "in flight", "peak/cap", "wire ms"):
            e.add_column(h, justify="right")
        for r in doc["edges"]:
            wire = "-" if r["transit_median"] is None else f"{1e3 * r['transit_median']:.3f}"
            e.add_row(f"{r['from']}→{r['to']}", f"{r['L']:.2f}", f"{r['lam']:.1f}",
                      f"{1e3 * r['W']:.2f}", f"{r['little_residual']:.3f}",
                      f"{r['in_flight']:.2f}", f"{r['in_flight_peak']}/{r['capacity']}", wire)
        con.print(e)
    for line in _conclusions(doc):
        con.print(line, markup=False, highlight=False)


def main(args: Any) -> int:
    """``streampipe report RUN.h5 [--json] [--trace OUT.json] [--plot OUT.png]``."""
    import json

    from .runfile import read

    run = read(args.runfile)
    meta, ranks = run["meta"], run["ranks"]
    plan = meta.get("plan")
    summary = summarize(plan, ranks)
    doc = analyze(plan, ranks, meta, summary)
    if getattr(args, "trace", None):
        from .trace import write_trace

        write_trace(args.trace, plan, ranks)
    if getattr(args, "plot", None):
        from .plot import write_plot

        write_plot(args.plot, plan, ranks, doc)
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        _print_rich(doc, summary)
    return 0
