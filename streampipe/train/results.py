"""What a training run reports: per-rank summary rows, the wire audit, the printed report.

The summary rows have the shape ``streampipe report`` reads for stream stages (one pseudo-stage
per rank), so a training run file is analysed like any other run file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .wire import STATES

__all__ = ["plan_stages", "crossed", "boundaries", "summary", "report_text"]


def plan_stages(layout: Any, capacity: int) -> list[dict[str, Any]]:
    """One pseudo-stage per rank, in the shape of :class:`streampipe.plan.StagePlan`."""
    return [{"index": r, "name": layout.rank_name(r), "kind": "stage", "replicas": 1, "group": 1,
             "capacity": capacity, "groups": [[r]], "feedback_to": None, "device": "cpu",
             "timeout": None} for r in range(layout.size)]


def crossed(layout: Any, ranks: list[dict]) -> dict[str, dict[str, list[int]]]:
    """Per rank name: kind -> [messages, bytes] that left that rank."""
    out = {}
    for r, d in enumerate(ranks):
        sent = d["wire"]["sent"]
        out[layout.rank_name(r)] = {k: [sum(v[0] for v in peers.values()),
                                        sum(v[1] for v in peers.values())]
                                    for k, peers in sent.items()}
    return out


def boundaries(layout: Any, ranks: list[dict]) -> dict[str, dict[str, list[int]]]:
    """Per boundary ``"sender -> receiver"``: kind -> [messages, bytes] that crossed it.

    Counted on the sending side; the receivers' counts are checked against them, so a message
    lost or duplicated on the wire is an error here, not a quiet discrepancy.
    """
    out: dict[str, dict[str, list[int]]] = {}
    for r, d in enumerate(ranks):
        for kind, peers in d["wire"]["sent"].items():
            for peer, (n, b) in peers.items():
                got = ranks[peer]["wire"]["received"].get(kind, {}).get(r)
                if kind != "weights" and list(got or []) != [n, b]:
                    raise RuntimeError(f"wire audit: rank {r} sent {n} {kind} messages "
                                       f"({b} bytes) to rank {peer}, which received {got}")
                key = f"{layout.rank_name(r)} -> {layout.rank_name(peer)}"
                out.setdefault(key, {})[kind] = [n, b]
    return out


def summary(ranks: list[dict]) -> dict[str, dict[str, Any]]:
    """One row per rank in the shape ``streampipe report`` prints (see report.short_text)."""
    out = {}
    for d in ranks:
        el = max(d["elapsed"], 1e-12)
        ev = d["events"]
        items = int(d["items_in"])
        window = float(ev[:, 4].max() - ev[:, 2].min()) if len(ev) else el
        window = max(window, 1e-12)
        W = float(np.mean(ev[:, 4] - ev[:, 2])) if len(ev) else 0.0
        lam = items / window
        L = d["held_area"] / window
        busy_t = d["time"]["busy"]
        row = {"kind": "train", "replicas": 1, "group": 1, "items": items,
               "items_out": int(d["items_out"]), "window": window, "throughput": lam,
               "service": busy_t / max(items, 1), "bound": items / busy_t if busy_t else 0.0,
               "L": L, "lam": lam, "W": W,
               "little_residual": abs(L - lam * W) / L if L > 0 else 0.0,
               "held_peak": int(d["peak_live"]), "io_bytes": 0,
               "peak_live_bytes": int(d["peak_live_bytes"]), "step_time": d["step_time"]}
        for state in STATES:
            row[state] = d["time"][state] / el
        row["edges"] = d.get("edges", {})
        out[d["stage"]] = row
    return out


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def report_text(layout: Any, ranks: list[dict], result: dict[str, Any]) -> str:
    """The short report printed at the end of a training run."""
    # fractions of the training loop (setup and data loading left out)
    head = (f"{'rank':<12}{'stages':<28}{'F+B':>6}{'busy':>7}{'idle':>7}{'xfer':>7}"
            f"{'live':>6}{'live KiB':>10}{'step ms':>9}")
    lines = [head, "-" * len(head)]
    for r, d in enumerate(ranks):
        el = max(d["train_time"], 1e-12)
        tm = d["train_split"]
        idle = (tm["starved"] + tm["blocked"]) / el
        lines.append(f"{layout.rank_name(r):<12}{','.join(d['stages'])[:27]:<28}"
                     f"{d['items_in'] + d['items_out']:>6}{100 * tm['busy'] / el:>6.0f}%"
                     f"{100 * idle:>6.0f}%{100 * tm['transfer'] / el:>6.0f}%"
                     f"{d['peak_live']:>6}{d['peak_live_bytes'] / 1024:>10.1f}"
                     f"{1e3 * d['step_time']:>9.2f}")
    losses = ", ".join(f"{x:.4f}" for x in result["epoch_loss"])
    test = ""
    if result.get("accuracy"):
        test = "; test accuracy " + ", ".join(f"{result['path_names'][p]} {100 * a:.1f}%"
                                              for p, a in enumerate(result["accuracy"]))
    elif result.get("test_loss"):
        test = "; test loss " + ", ".join(f"{result['path_names'][p]} {x:.4g}"
                                          for p, x in enumerate(result["test_loss"]))
    lines.append(f"epochs {result['start_epoch']}..{result['epochs']}: loss per epoch "
                 f"[{losses}]{test}")
    if result.get("cuts_measured"):
        lines.append(f"cuts = \"auto\": {result['cuts']} from measured layer times")
    for name, kinds in result["crossed"].items():
        what = ", ".join(f"{k} {v[0]} msgs/{_kib(v[1])}" for k, v in sorted(kinds.items())
                         if v[0]) or "nothing"
        lines.append(f"wire: {name} sent {what}")
    lines.append("wire audit per boundary (sender -> receiver: kind messages/bytes; weights are "
                 "the checkpoint and evaluation copies sent to rank 0):")
    for name, kinds in result["boundaries"].items():
        what = ", ".join(f"{k} {v[0]}/{_kib(v[1])}" for k, v in sorted(kinds.items()))
        lines.append(f"  {name}: {what}")
    lines += layout.report_lines(result, ranks)
    return "\n".join(lines)
