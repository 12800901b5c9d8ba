"""PNG of a run (matplotlib, Agg): per-stage time-split bars, a Gantt timeline per rank, and,
when the run file has the live view's series, throughput and busy / blocked fractions per stage
over time (a bottleneck that moves during the run shows as lines crossing)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .events import T_END, T_START, as_events
from .metrics import STATES
from .plan import Plan

COLORS = {"busy": "#2e7d32", "starved": "#90a4ae", "blocked": "#c62828", "transfer": "#1565c0",
          "io": "#f9a825", "other": "#d7ccc8"}
MAX_BARS = 20_000  # per rank in the timeline; beyond that a rank's slices are thinned evenly
MAX_ROWS = 48  # ranks in the timeline; beyond that every k-th rank is shown


def write_plot(path: str, plan: Plan, ranks: list[dict | None], doc: dict[str, Any],
               series: dict[str, np.ndarray] | None = None) -> None:
    """Write the figure: stacked time split per stage, busy slices per rank, and (with
    ``series``, the run file's ``/live``) items/s and busy / blocked per stage over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = doc["stages"]
    present = [(r, d) for r, d in enumerate(ranks) if d is not None]
    if len(present) > MAX_ROWS:
        present = present[::-(-len(present) // MAX_ROWS)]
    timed = bool(series) and len(series.get("time", ())) > 0
    heights = [len(stages) + 1, len(present) + 1] + ([5, 5] if timed else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, 3 + 0.35 * sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    ax1, ax2 = axes[0], axes[1]
    y = np.arange(len(stages))
    left = np.zeros(len(stages))
    for s in STATES:
        w = np.array([row[s] for row in stages])
        ax1.barh(y, w, left=left, color=COLORS[s], label=s)
        left += w
    ax1.set_yticks(y, [f"{row['name']} ×{row['replicas']}" for row in stages])
    ax1.invert_yaxis()
    ax1.set_xlim(0, 1)
    ax1.set_xlabel("fraction of rank time (mean over replicas)")
    bn = (doc.get("bottleneck") or {}).get("stage")
    ax1.set_title(f"{doc['run'].get('job')}: time split" + (f" — bottleneck {bn}" if bn else ""))
    ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    origin = min((d["wall0"] for _, d in present), default=0.0)
    stage_of = {r: (st.index, st.name) for r, st in plan.rank_stage().items()}
    cmap = plt.get_cmap("tab10")
    for row, (r, d) in enumerate(present):
        ev = as_events(d["events"])
        if len(ev) > MAX_BARS:
            ev = ev[np.linspace(0, len(ev) - 1, MAX_BARS).astype(int)]
        start = ev[:, T_START] + d["wall0"] - origin
        dur = ev[:, T_END] - ev[:, T_START]
        i, _ = stage_of.get(r, (0, "?"))
        ax2.broken_barh(list(zip(start, dur, strict=True)), (row - 0.4, 0.8), color=cmap(i % 10))
    ax2.set_yticks(range(len(present)),
                   [f"r{r} {stage_of.get(r, (0, '?'))[1]}" for r, _ in present])
    ax2.invert_yaxis()
    ax2.set_xlabel("seconds from the first rank's start (shared wall clock)")
    ax2.set_title("timeline: process() per item")
    if timed:
        _over_time(axes[2], axes[3], plan, series, cmap)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _over_time(ax_rate: Any, ax_split: Any, plan: Plan, series: dict[str, np.ndarray],
               cmap: Any) -> None:
    t = series["time"]
    for st in plan.stages:
        color = cmap(st.index % 10)
        if f"{st.name}.rate" in series:
            ax_rate.plot(t, series[f"{st.name}.rate"], color=color, label=st.name)
            ax_split.plot(t, series[f"{st.name}.busy"], color=color, label=f"{st.name} busy")
            ax_split.plot(t, series[f"{st.name}.blocked"], color=color, ls="--", alpha=0.6,
                          label=f"{st.name} blocked")
    ax_rate.set_ylabel("items/s")
    ax_rate.set_title("over time (live view, one point a second): throughput per stage")
    ax_rate.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax_split.set_ylim(0, 1.05)
    ax_split.set_ylabel("fraction of the second")
    ax_split.set_xlabel("seconds from the run's start")
    ax_split.set_title("busy (solid) and blocked (dashed) per stage: the busiest is the bottleneck")
    ax_split.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncol=1)
