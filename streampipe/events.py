"""Per-item event records: the columns of the ``(n, 5)`` arrays every rank records and every run
file stores, and the few operations the readers of those arrays share.

One row per input item a rank handled: ``seq`` (source sequence number, ``inf`` for items made
by ``finish()``), then four stamps in seconds from the rank's start: ``t_recv`` (arrived),
``t_start`` and ``t_end`` (around ``process``), ``t_sent`` (handed to the output channel). The
layout is the recorder's (:data:`streampipe.metrics.EVENT_FIELDS`); readers index it by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import EVENT_FIELDS

__all__ = ["FIELDS", "SEQ", "T_RECV", "T_START", "T_END", "T_SENT", "WIDTH", "as_events",
           "on_wall", "empty"]

FIELDS = EVENT_FIELDS
SEQ, T_RECV, T_START, T_END, T_SENT = (FIELDS.index(f) for f in
                                       ("seq", "t_recv", "t_start", "t_end", "t_sent"))
WIDTH = len(FIELDS)
STAMPS = [T_RECV, T_START, T_END, T_SENT]  # the columns that are times


def as_events(a: Any) -> np.ndarray:
    """``a`` (an array, a list of rows, or an empty list) as a float64 ``(n, WIDTH)`` array."""
    ev = np.asarray(a, dtype=np.float64)
    if ev.size == 0:
        return empty()
    if ev.ndim != 2 or ev.shape[1] != WIDTH:
        raise ValueError(f"events: expected rows of {WIDTH} ({', '.join(FIELDS)}), "
                         f"got shape {ev.shape}")
    return ev


def on_wall(d: dict[str, Any]) -> np.ndarray:
    """A rank's events (a new array) with the stamps moved onto the shared wall clock: each
    rank's ``wall0`` plus its rank-local stamps (see docs/diagnostics.md, Clocks)."""
    ev = as_events(d.get("events", ())).copy()  # a reduced record (no events): none
    ev[:, STAMPS] += d["wall0"]
    return ev


def empty() -> np.ndarray:
    """No events."""
    return np.empty((0, WIDTH))
