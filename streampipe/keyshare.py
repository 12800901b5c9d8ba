"""The key distribution of ``route = "key"`` stages: bucket counts -> each replica's share.

A sender that routes by key counts its records per bucket ``key_hash % 2520``
(:data:`streampipe.routing.BUCKETS`, lcm(1..10)); rank 0 merges the senders' counts per receiving
stage into the run file (``/keys/{stage}``). Replica ``key_hash % r`` then holds exactly the
buckets ``b`` with ``b % r == rep`` for any ``r`` dividing 2520 (1..10, 12, 14, 15, 18, 20, 21,
24, 28, 30, 35, 36, 40, 42, 45, 56, 60, ...); for any other ``r`` the buckets do not say.
The simulator hands a key-routed stage's items to its replicas in those proportions with a
smooth weighted round-robin (:func:`assign`): deterministic, exact over each period of ``sum``
items, and never more than one item away from the exact share at any point.

Plain data throughout: a stage's counts are ``{bucket: items}`` (only buckets with items).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .routing import BUCKETS

__all__ = ["BUCKETS", "sparse", "merge", "divides", "replica_counts", "hot_share", "hottest",
           "assign", "counts_for"]

Buckets = Mapping[int, int]


def sparse(counts: Sequence[int]) -> list[list[int]]:
    """``[[bucket, ...], [items, ...]]`` of the non-zero entries of a dense bucket list (what a
    rank's record carries: at most 2 x 2520 ints, usually a few)."""
    nz = [b for b, c in enumerate(counts) if c]
    return [nz, [int(counts[b]) for b in nz]]


def merge(records: Iterable[Mapping[str, Any] | None]) -> dict[str, dict[int, int]]:
    """Per receiving stage, the senders' counts summed (``key_buckets`` of each rank's record;
    ranks without one, or missing, add nothing)."""
    out: dict[str, dict[int, int]] = {}
    for d in records:
        for stage, (buckets, counts) in ((d or {}).get("key_buckets") or {}).items():
            mine = out.setdefault(stage, {})
            for b, c in zip(buckets, counts, strict=True):
                mine[int(b)] = mine.get(int(b), 0) + int(c)
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def divides(replicas: int) -> bool:
    """Whether the buckets give the shares of ``replicas`` replicas exactly."""
    return replicas >= 1 and BUCKETS % replicas == 0


def replica_counts(buckets: Buckets, replicas: int) -> np.ndarray | None:
    """Items each of ``replicas`` replicas gets (replica ``key_hash % replicas``), or None when
    ``replicas`` does not divide 2520 or there are no counts."""
    if not buckets or not divides(replicas):
        return None
    out = np.zeros(replicas, dtype=np.int64)
    for b, c in buckets.items():
        out[int(b) % replicas] += int(c)
    return out if out.sum() > 0 else None


def hot_share(buckets: Buckets, replicas: int) -> float:
    """The share of the items on the hottest of ``replicas`` replicas (``replicas`` must
    divide 2520 and the counts be non-empty)."""
    c = replica_counts(buckets, replicas)
    return float(c.max() / c.sum())


def hottest(buckets: Buckets) -> float:
    """The share of the items in the fullest bucket: no replica count (dividing 2520) gives
    any replica less than that, since a bucket never splits."""
    total = sum(buckets.values())
    return max(buckets.values()) / total if total else 0.0


def assign(weights: Sequence[int], n: int) -> np.ndarray:
    """Replica of each of ``n`` items, in proportion to ``weights`` (smooth weighted
    round-robin: each item, every replica gains its weight, the one with the most takes the
    item and pays the total). Over every ``sum(weights)`` items each replica gets exactly its
    weight, and after any prefix it is less than one item from its exact share."""
    w = [int(x) for x in weights]
    total = sum(w)
    if total <= 0 or min(w) < 0:
        raise ValueError(f"assign: weights must be >= 0 and sum to more than 0, got {w}")
    period = min(n, total)  # after ``total`` items every gain is back at 0: it repeats
    cur = [0] * len(w)
    r = range(len(w))
    seq = np.empty(period, dtype=np.int64)
    for i in range(period):
        best = 0
        for j in r:
            cur[j] += w[j]
            if cur[j] > cur[best]:  # ties: the lowest replica
                best = j
        cur[best] -= total
        seq[i] = best
    return np.resize(seq, n) if n > period else seq


def counts_for(keys: Mapping[str, Buckets] | None, name: str, route: str,
               replicas: int) -> np.ndarray | None:
    """The measured items per replica of stage ``name`` at ``replicas`` replicas, if it is
    routed by key, replicated, and its counts are known for that count."""
    if route != "key" or replicas < 2 or not keys or name not in keys:
        return None
    return replica_counts(keys[name], replicas)
