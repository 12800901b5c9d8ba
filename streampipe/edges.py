"""Edge ids: every message on the wire names the edge it belongs to; the reserved ids live here.

Data and feedback edges of a stream job have ids >= 0, derived from the stages they join
(:func:`data_edge`, :func:`feedback_edge`); training links start at :data:`TRAIN_BASE`. Negative
ids are control traffic that exists on every rank, whatever the plan.
"""

from __future__ import annotations

__all__ = ["ABORT", "GROUP", "DONE", "RESULT", "FAIL", "LIVE", "TRAIN_CHECKPOINT", "TRAIN_BASE",
           "data_edge", "feedback_edge"]

ABORT = -1  # any rank -> all: stop, another rank failed
GROUP = -2  # group root -> members: the next item (or the end) of a group stage
DONE = -3  # rank -> rank 0 at the end: metrics and the sink's result (collect.py)
RESULT = -4  # rank 0 -> all at the end: the job's result (collect.py)
FAIL = -5  # rank -> rank 0 after a failure: partial metrics (collect.py)
LIVE = -6  # rank -> rank 0 once a second: a snapshot of its counters (live.py)
TRAIN_CHECKPOINT = -22  # training rank -> rank 0 after each epoch: weights for the checkpoint
TRAIN_BASE = 1000  # training link i uses edge id TRAIN_BASE + i


def data_edge(index: int) -> int:
    """Edge id of data edge number ``index`` (stream jobs: the edges of the plan, in order)."""
    return 2 * index


def feedback_edge(stage_index: int) -> int:
    """Edge id of the feedback edge out of stage ``stage_index``."""
    return 2 * stage_index + 1
