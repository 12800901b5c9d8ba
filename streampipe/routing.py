"""Which replica of the next stage gets a record (``route = "balance"``, the default).

Pure decisions over the sender's credit state, unit-tested without MPI. A receiver that has
nothing in flight is starving and gets the next record at once (starving ones take turns);
otherwise the sender keeps
filling the batch it has open (consecutive keys stay together, so an ordered merge downstream
takes long runs), and when that receiver has no credit left, the one with the most credit.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["fits", "choose"]


def fits(credit: int, open_maybe: int, maybe: bool) -> bool:
    """Can a receiver with ``credit`` credits take one more record? ``open_maybe``: records in
    its open batch that may carry array buffers (-1: no batch open); ``maybe``: whether this
    record may. A batch costs one credit, or one per record that may carry buffers."""
    return max(1, max(open_maybe, 0) + maybe) <= credit


def choose(credit: Sequence[int], open_maybe: Sequence[int], capacity: int, current: int,
           maybe: bool, rr: int) -> int | None:
    """Index of the receiver for the next record, or None when no receiver can take it."""
    n = len(credit)
    for i in range(n):
        j = (rr + i) % n
        if credit[j] == capacity and open_maybe[j] < 0:
            return j  # starving: nothing in flight and nothing waiting for it (rotating)
    if 0 <= current < n and open_maybe[current] >= 0 and fits(credit[current],
                                                               open_maybe[current], maybe):
        return current
    best, best_left = None, -1
    for i in range(n):
        j = (rr + i) % n
        if fits(credit[j], open_maybe[j], maybe):
            left = credit[j] - max(1, max(open_maybe[j], 0))
            if left > best_left:
                best, best_left = j, left
    return best
