"""Records: what travels on an edge, and in which order.

A record is ``(kind, key, value)``. ``key`` is a tuple that orders the stream: ``(seq,)`` for
source item ``seq``, ``key + (i,)`` for the i-th output of a fan-out, ``(FINAL, stage, replica,
i)`` for the items a stage emits from ``finish()`` (they follow the whole stream). Besides items
there are markers that let an ordered merge of several upstream ranks know that nothing is
missing: ``TOMB`` (the item with this key was dropped), ``END`` (the fan-out of ``key`` produced
``value`` children; ``END((), n)`` from the source: the stream has ``n`` items) and ``EOS``
(this sender is done with the edge).

Records move in :class:`Batch` es: the records one sender hands to one receiver in one wire
message, stored column by column so a whole batch is pickled once and a stage loop walks plain
lists.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["ITEM", "TOMB", "END", "EOS", "FINAL", "Record", "Batch", "position"]

ITEM, TOMB, END, EOS = range(4)
FINAL = math.inf


class Record(NamedTuple):
    """One record (markers included)."""

    kind: int
    key: tuple
    value: Any


class Batch(NamedTuple):
    """Records in stream order, column by column.

    ``kinds`` is None when every record is an ITEM (the common case, so the loops and the wire
    carry no kind per record).
    """

    keys: list[tuple]
    values: list[Any]
    kinds: list[int] | None = None

    def kind(self, i: int) -> int:
        return ITEM if self.kinds is None else self.kinds[i]

    def record(self, i: int) -> Record:
        return Record(self.kind(i), self.keys[i], self.values[i])

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self.keys))]


def position(kind: int, key: tuple, value: Any) -> tuple:
    """Where a record sits in its sender's stream: ``END(k, n)`` right after k's n children."""
    if kind == END:
        return key + (value,)
    return key
