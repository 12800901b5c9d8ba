"""Bottleneck analysis and the Little's-law audit of a run, from the ranks' raw records.

``summarize`` turns per-rank records (as collected at the end of a run or read back from a run
file) into one row per stage; ``short_text`` is what ``streampipe run`` prints at the end.
Times of different ranks are put on one axis through each rank's wall-clock start (``wall0``);
per-stage figures only use rank-local differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import STATES

LITTLE_TOLERANCE = 0.05


def _plan_stages(plan: Any) -> list[dict[str, Any]]:
    if isinstance(plan, dict):
        return plan["stages"]
    from dataclasses import asdict

    return [asdict(s) for s in plan.stages]


def summarize(plan: Any, ranks: list[dict | None]) -> dict[str, dict[str, Any]]:
    """One row per stage: items, throughput, time split, service time, bound, L, lambda, W."""
    out: dict[str, dict[str, Any]] = {}
    for st in _plan_stages(plan):
        members = [ranks[r] for g in st["groups"] for r in g if r < len(ranks) and ranks[r]]
        roots = [ranks[g[0]] for g in st["groups"] if g[0] < len(ranks) and ranks[g[0]]]
        if not roots:
            continue
        ev = [(d["events"], d["wall0"]) for d in roots if len(d["events"])]
        items = int(sum(d["items_in"] for d in roots))
        if ev:
            t_first = min(w + e[:, 1].min() for e, w in ev)
            t_last = max(w + e[:, 4].max() for e, w in ev)
            allev = np.concatenate([e for e, _ in ev])
            service = float(np.mean(allev[:, 3] - allev[:, 2]))
            sojourn = float(np.mean(allev[:, 4] - allev[:, 1]))
        else:
            t_first = t_last = 0.0
            service = sojourn = 0.0
        window = max(t_last - t_first, 1e-12)
        lam = items / window if items else 0.0
        L = sum(d["held_area"] for d in roots) / window
        row: dict[str, Any] = {
            "kind": st["kind"], "replicas": st["replicas"], "group": st["group"], "items": items,
            "items_out": int(sum(d["items_out"] for d in roots)), "window": window,
            "t_first": t_first, "t_last": t_last, "throughput": lam,
            "service": service, "bound": st["replicas"] / service if service > 0 else float("inf"),
            "L": L, "lam": lam, "W": sojourn,
            "little_residual": abs(L - lam * sojourn) / L if L > 0 else 0.0,
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
        out[st["name"]] = row
    return out


def bottleneck(summary: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The stage that limits throughput, and why: the lowest bound (replicas / service time),
    confirmed by busy fraction, blocked stages before it and starved stages after it."""
    names = list(summary)
    if not names:
        return "", "no stage recorded any item"
    name = max(names, key=lambda n: summary[n]["busy"] + summary[n]["io"])
    row = summary[name]
    i = names.index(name)
    before = [n for n in names[:i] if summary[n]["blocked"] > 0.3]
    after = [n for n in names[i + 1:] if summary[n]["starved"] > 0.3]
    why = f"busy {100 * (row['busy'] + row['io']):.0f}% per replica"
    if row["io"] > row["busy"]:
        mbps = row["io_bytes"] / max(row["io"] * row["window"], 1e-12) / 1e6
        why += f", I/O-bound at {mbps:.1f} MB/s"
    if before:
        why += f"; upstream {', '.join(before)} blocked"
    if after:
        why += f"; downstream {', '.join(after)} starved"
    return name, why


def short_text(plan: Any, summary: dict[str, dict[str, Any]]) -> str:
    """The table printed at the end of ``streampipe run``."""
    head = (f"{'stage':<14}{'rep':>4}{'items':>9}{'items/s':>10}{'busy':>6}{'starv':>6}"
            f"{'block':>6}{'xfer':>6}{'io':>5}{'t_i ms':>8}{'bound/s':>9}{'L':>7}{'W ms':>8}"
            f"{'|L-λW|/L':>9}")
    lines = [head, "-" * len(head)]
    for name, r in summary.items():
        pct = [f"{100 * r[k]:>5.0f}%" for k in ("busy", "starved", "blocked", "transfer")]
        lines.append(
            f"{name[:13]:<14}{r['replicas']:>4}{r['items']:>9}{r['throughput']:>10.1f}"
            + "".join(pct) + f"{100 * r['io']:>4.0f}%"
            f"{1e3 * r['service']:>8.3f}{r['bound']:>9.1f}{r['L']:>7.2f}{1e3 * r['W']:>8.2f}"
            f"{r['little_residual']:>9.3f}")
    name, why = bottleneck(summary)
    if name:
        lines.append(f"bottleneck: stage {name!r} ({why})")
    bad = [n for n, r in summary.items() if r["little_residual"] > LITTLE_TOLERANCE]
    if bad:
        lines.append(f"Little's law residual over {100 * LITTLE_TOLERANCE:.0f}% at "
                     f"{', '.join(bad)}: a measurement problem, not a property of the pipeline")
    return "\n".join(lines)


def main(args: Any) -> int:
    """``streampipe report RUN.h5``."""
    from .runfile import read

    run = read(args.runfile)
    meta = run["meta"]
    print(f"run {meta.get('job_name')!r}: status {meta.get('status')}, {meta.get('ranks')} ranks, "
          f"wall {meta.get('wall_time', 0):.2f} s")
    if meta.get("error"):
        print(f"error: {meta['error']}")
    print(short_text(meta.get("plan"), run["summary"]))
    return 0
