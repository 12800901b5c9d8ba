"""One stage's figures over a run: the row type shared by the report, the simulator and training.

A row is what ``streampipe report`` prints per stage, what :func:`streampipe.sim.simulate`
predicts per stage (so a simulated run and a measured one compare field by field), and what a
training run records per rank. The run file stores rows as plain attributes
(:meth:`StageRow.to_dict`); :meth:`StageRow.from_dict` reads them back, keeping fields this
version does not know in ``extra``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["StageRow", "per_span", "pipeline_rate", "rows"]


@dataclass
class StageRow:
    """Per-stage figures; times in seconds, rates per second, time-split parts as fractions.

    ``cost`` is the rank time one item takes (process time plus its share of transfer time),
    ``bound = replicas / cost`` the most the stage can pass per second; ``L``/``lam``/``W`` the
    stage's Little's-law triple (items held from arrival to send), ``queue_L``/``queue_W`` the
    queue in front of it (arrival to start). A figure over a time span the stage did not record
    (items but no stamps, e.g. a failed run's rank) is NaN, never a rate over a tiny epsilon:
    ``window``, ``t_first`` ... ``t_end_last`` without stamps, and then the rates, ``L`` and the
    residuals (see :func:`per_span`).
    """

    kind: str
    replicas: int = 1
    group: int = 1
    capacity: int = 0
    items: int = 0
    items_out: int = 0
    events: int = 0
    events_dropped: int = 0
    window: float = 0.0
    t_first: float = 0.0  # first arrival, shared wall clock (simulated runs: from 0)
    t_last: float = 0.0  # last send
    t_end_first: float = 0.0  # first and last end of process(): the sink's output period
    t_end_last: float = 0.0
    throughput: float = 0.0
    service: float = 0.0
    cost: float = 0.0
    bound: float = 0.0
    L: float = 0.0
    lam: float = 0.0
    W: float = 0.0
    little_residual: float = 0.0
    queue_L: float = 0.0
    queue_W: float = 0.0
    queue_residual: float = 0.0
    held_peak: int = 0
    io_bytes: int = 0
    busy: float = 0.0
    starved: float = 0.0
    blocked: float = 0.0
    transfer: float = 0.0
    io: float = 0.0
    other: float = 0.0
    edges: dict[str, dict[str, float]] = field(default_factory=dict)  # out-edge -> L, peak
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific (training: step_time)

    @property
    def spread(self) -> float:
        """The stage's replicas' worth: its replicas, or for one routed by key whose hottest
        replica gets more than its share, its items over that replica's items (3 replicas, one
        with 80% of the items: 1.25), which sets its bound."""
        return float(self.extra.get("key_spread", self.replicas))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ``extra`` merged in (what the run file and the JSON report hold)."""
        d = asdict(self)
        d.update(d.pop("extra"))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRow:
        known = {f.name for f in fields(cls)} - {"extra"}
        row = cls(**{k: v for k, v in d.items() if k in known})
        row.extra = {k: v for k, v in d.items() if k not in known}
        return row


def per_span(amount: float, span: float) -> float:
    """``amount`` per second of ``span``: 0 for nothing, NaN (unknown) when the span is not a
    positive number of seconds (no stamps, or all at one instant)."""
    if not amount:
        return 0.0
    return amount / span if span > 0 else math.nan


def pipeline_rate(summary: Mapping[str, StageRow]) -> float:
    """Source items over the whole span of the run (first arrival anywhere to last send, over
    the stages that recorded stamps); NaN when that span is unknown.

    Computed the same way from a real run's summary and a simulated one, so the two compare.
    """
    rows = list(summary.values())
    if not rows:
        return 0.0
    seen = [r for r in rows if math.isfinite(r.t_first) and math.isfinite(r.t_last)]
    if not seen:
        return per_span(rows[0].items, math.nan)
    return per_span(rows[0].items, max(r.t_last for r in seen) - min(r.t_first for r in seen))


def rows(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, StageRow]:
    """Rows from plain data (a run file's ``summary``), in stage order."""
    return {name: StageRow.from_dict(d) for name, d in summary.items()}
