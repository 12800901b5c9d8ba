"""Chrome / Perfetto trace of a run: one track per rank, one slice per item, flows between hops.

Load the file in https://ui.perfetto.dev or chrome://tracing. Timestamps are microseconds from the
earliest rank start on the shared wall clock (``wall0`` + rank-local time, see
``docs/diagnostics.md``). Each item's slice covers ``process()`` (t_start .. t_end); its args carry
the wait before it (queue) and the time until it was sent on (send). A flow arrow joins the slice
of item ``seq`` on one stage to each slice of the same seq on each stage that reads it (the
plan's edges: a fork has an arrow into every branch, a join one from each input).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .events import SEQ, STAMPS, T_END, T_RECV, T_SENT, T_START, as_events
from .plan import Plan

US = 1e6


def trace_events(plan: Plan, ranks: list[dict | None]) -> list[dict[str, Any]]:
    """The trace-event list (``traceEvents``) of a run."""
    present = [d for d in ranks if d is not None]
    if not present:
        return []
    origin = min(d["wall0"] for d in present)
    out: list[dict[str, Any]] = [{"ph": "M", "name": "process_name", "pid": 0, "tid": 0,
                                  "args": {"name": "streampipe"}}]
    seen: dict[int, list[tuple[int, np.ndarray]]] = {}  # stage -> (rank, shifted events)
    flow_id = 0
    for st in plan.stages:
        cur = []
        for rep, g in enumerate(st.groups):
            for k, r in enumerate(g):
                if r >= len(ranks) or ranks[r] is None:
                    continue
                label = f"{st.name}[{rep}]" + (f".{k}" if len(g) > 1 else "") + f" r{r}"
                out.append({"ph": "M", "name": "thread_name", "pid": 0, "tid": r,
                            "args": {"name": label}})
                out.append({"ph": "M", "name": "thread_sort_index", "pid": 0, "tid": r,
                            "args": {"sort_index": r}})
        for r in st.roots:
            if r >= len(ranks) or ranks[r] is None:
                continue
            d = ranks[r]
            ev = as_events(d["events"]).copy()
            ev[:, STAMPS] = (ev[:, STAMPS] + (d["wall0"] - origin)) * US
            cur.append((r, ev))
            for e in ev:
                out.append({"ph": "X", "name": st.name, "cat": "item", "pid": 0, "tid": r,
                            "ts": e[T_START], "dur": max(e[T_END] - e[T_START], 0.0),
                            "args": {"seq": _seq(e[SEQ]), "queue_us": e[T_START] - e[T_RECV],
                                     "send_us": e[T_SENT] - e[T_END]}})
        # flows from each input stage's slice of each seq to this stage's slices of it
        inputs = st.inputs if plan.edges else ((st.index - 1,) if st.index else ())
        for j in inputs:
            src = {}
            for r, ev in seen.get(j, []):
                for e in ev:
                    if math.isfinite(e[SEQ]):
                        src[e[SEQ]] = (r, e[T_START])
            for r, ev in cur:
                for e in ev:
                    hit = src.get(e[SEQ])
                    if hit is None:
                        continue
                    flow_id += 1
                    out.append({"ph": "s", "name": "item", "cat": "flow", "id": flow_id,
                                "pid": 0, "tid": hit[0], "ts": hit[1]})
                    out.append({"ph": "f", "bp": "e", "name": "item", "cat": "flow",
                                "id": flow_id, "pid": 0, "tid": r, "ts": e[T_START]})
        seen[st.index] = cur
    return out


def _seq(x: float) -> int | str:
    return int(x) if math.isfinite(x) else "final"


def write_trace(path: str, plan: Plan, ranks: list[dict | None]) -> None:
    """Write the trace as JSON object format (``{"traceEvents": [...]}``)."""
    doc = {"traceEvents": trace_events(plan, ranks), "displayTimeUnit": "ms"}
    with open(path, "w") as f:
        json.dump(doc, f, allow_nan=False, default=float)


__all__ = ["trace_events", "write_trace"]
