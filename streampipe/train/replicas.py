"""Data parallel inside the pipeline: one sub-communicator per replicated position.

Replica ``j`` of a position with ``k`` ranks runs the microbatches ``mb % k == j`` of the
position's stages (:class:`streampipe.train.layout.Layout`); before the optimizer step the
replicas add their summed gradients with an all-reduce over a sub-communicator of just those
ranks, so every replica divides the same total by the minibatch size and takes the same step.
The all-reduce is non-blocking and its wait serves the transport, so an abort from another rank
still ends this one. Each worker reduces one flat vector of all its gradients per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .wire import Wire
from .worker import SumFn

__all__ = ["split_groups", "make_reducer"]


def split_groups(comm: Any, groups: list[tuple[int, ...]]) -> Any:
    """This rank's sub-communicator among ``groups`` (None when it is in none).

    Collective over ``comm``: every rank calls it once with the same ``groups``.
    """
    from mpi4py import MPI

    rank = comm.Get_rank()
    color = next((i for i, g in enumerate(groups) if rank in g), MPI.UNDEFINED)
    sub = comm.Split(color, rank)
    return None if sub == MPI.COMM_NULL else sub


def make_reducer(sub: Any, wire: Wire, what: str) -> SumFn:
    """The sum of a flat host vector over ``sub``'s ranks (waits serving the wire)."""
    from mpi4py import MPI

    def reduce(flat: Any) -> Any:
        flat = np.ascontiguousarray(flat)
        out = np.empty_like(flat)
        req = sub.Iallreduce(flat, out, op=MPI.SUM)
        wire.poll_until(req.Test, f"waiting for the gradient all-reduce of {what}")
        return out

    return reduce
