"""When records leave: the flush policy (Flink's buffer timeout, one knob per job).

A wire message costs about as much as a hundred small records, so small records are batched;
but a record must not wait for its batch while the stage after it has nothing to do, and never
longer than ``max_delay``. The stage loop asks :meth:`FlushPolicy.handover` after each item
whether to hand the outputs so far to the port before finishing its batch (a slow stage then
sends item by item); the port asks :meth:`FlushPolicy.send` whether to send the batch it holds
for a receiver. Both are pure decisions over a few numbers, so they are unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FlushPolicy", "Pace"]


@dataclass(frozen=True)
class FlushPolicy:
    """``batch``: most records per wire message; ``max_delay``: the longest (seconds) a record
    should wait to be sent, counting the time the next item is expected to take."""

    batch: int = 64
    max_delay: float = 1e-3

    def handover(self, age: float, pace: float, starving: bool) -> bool:
        """Hand the outputs so far to the port now? ``age``: how long the oldest output not yet
        sent has waited; ``pace``: expected time of one more item; ``starving``: a receiver has
        nothing in flight (it is waiting for us)."""
        return starving or age + pace >= self.max_delay

    def send(self, pending: int, age: float, pace: float, idle: bool) -> bool:
        """Send the batch held for one receiver now? ``pending``: records in it; ``age``: how
        long its oldest record has waited; ``idle``: that receiver has nothing in flight."""
        return pending >= self.batch or idle or age + pace >= self.max_delay


class Pace:
    """A moving average of the time one item takes (per-batch updates)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def update(self, seconds: float, items: int) -> None:
        if items > 0:
            self.value += 0.2 * (seconds / items - self.value)
