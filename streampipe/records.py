"""Records: what travels on an edge, and in which order.

A record is ``(kind, key, value)``. ``key`` is a tuple that orders the stream (its *position*):
``(seq,)`` for source item ``seq``, ``key + (i,)`` for the i-th output of a fan-out,
``(seq, j, *rest)`` for a record a join got on its input ``j``, and ``(FINAL, stage, replica,
i)`` for the items a stage emits from ``finish()`` (they follow the whole stream). Data edges
carry items only; a feedback edge also carries ``TOMB`` records (its producer's watermark), and
``EOS`` ends an edge.

Records move in :class:`Batch` es: the records one sender hands to one receiver in one wire
message, stored column by column so a whole batch is pickled once and a stage loop walks plain
lists.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["ITEM", "TOMB", "EOS", "FINAL", "Record", "Batch"]

ITEM, TOMB, EOS = 0, 1, 3
FINAL = math.inf


class Record(NamedTuple):
    """One record."""

    kind: int
    key: tuple
    value: Any


class Batch(NamedTuple):
    """Records in stream order, column by column.

    ``kinds`` is None when every record is an ITEM (always, on a data edge), so the loops and
    the wire carry no kind per record.
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
