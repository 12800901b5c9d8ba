"""Which replica of the next stage gets a record: ``route = "balance"`` (the default) or by key.

Pure decisions over the sender's credit state, unit-tested without MPI. A receiver that has
nothing in flight is starving and gets the next record at once (starving ones take turns);
otherwise the sender keeps
filling the batch it has open (consecutive keys stay together, so an ordered merge downstream
takes long runs), and when that receiver has no credit left, the one with the most credit.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy

__all__ = ["fits", "choose", "key_hash", "key_replica", "BUCKETS"]

# a key-routing sender counts its records per ``key_hash % BUCKETS``: 2520 = lcm(1..10), so
# the share of every replica ``key_hash % r`` follows from the buckets for any r dividing it
BUCKETS = 2520


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


def _encode(key: Any, out: list[bytes]) -> None:
    t = type(key)
    if t is bool or key is None:
        out.append(b"b" + repr(key).encode())
    elif t is int:
        out.append(b"i" + str(key).encode())
    elif t is float:
        out.append(b"f" + repr(key).encode())
    elif t is str:
        out.append(b"s" + key.encode())
    elif t is bytes:
        out.append(b"y" + key)
    elif t is tuple:
        out.append(b"(%d" % len(key))
        for k in key:
            out.append(b",")
            _encode(k, out)
        out.append(b")")
    else:
        if isinstance(key, numpy.integer):
            out.append(b"i" + str(int(key)).encode())
        elif isinstance(key, numpy.floating):
            out.append(b"f" + repr(float(key)).encode())
        else:
            raise TypeError(f"a routing key must be an int, float, str, bytes, bool, None or a "
                            f"tuple of those, got {t.__name__} {key!r}")


def key_hash(key: Any) -> int:
    """``crc32`` of the encoding of routing key ``key`` (see :func:`key_replica`)."""
    parts: list[bytes] = []
    _encode(key, parts)
    return zlib.crc32(b"".join(parts))


def key_replica(key: Any, replicas: int) -> int:
    """The replica that gets every item with routing key ``key`` (``route = "key"``):
    ``crc32(encoding of key) % replicas``, where the encoding is a type letter and the text of
    an int (``b"i42"``), a float (``repr``), a str (UTF-8), bytes, bool or None, and a tuple is
    ``b"(<n>,<item>,...)"``. The same key goes to the same replica in every run, on every host,
    with every Python version (unlike ``hash``)."""
    return key_hash(key) % replicas
