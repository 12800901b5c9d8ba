"""Host <-> device staging of a GPU stage, charged where it belongs in the time split.

Copies between host and device (``from_wire`` on every value that arrives, data and feedback
alike; ``to_wire`` on every value that leaves) are *transfer* time. The stream synchronisation
after ``process`` is not: it waits for the stage's own asynchronous kernels, so it is *busy*
time and part of the item's service time.
"""

from __future__ import annotations

import time
from typing import Any

from .metrics import Recorder

__all__ = ["Staging"]


class Staging:
    """Wraps a :class:`~streampipe.gpu.WireCodec` for one rank (``from_wire`` also starts the
    codec's kernel timing, ``sync`` ends it; ``to_wire`` after ``sync`` only copies)."""

    def __init__(self, codec: Any, recorder: Recorder) -> None:
        self.codec, self.m = codec, recorder

    def inbound(self, value: Any) -> Any:
        """A value that arrived, moved to the device (transfer time)."""
        t0 = time.perf_counter()
        out = self.codec.from_wire(value)
        self.m.add_transfer(time.perf_counter() - t0)
        return out

    def done(self) -> None:
        """The item's kernels are finished (busy time: the caller is inside the item)."""
        self.codec.sync()

    def outbound(self, values: list[Any]) -> list[Any]:
        """Values about to leave, moved to the host (transfer time)."""
        t0 = time.perf_counter()
        out = [self.codec.to_wire(v) for v in values]
        self.m.add_transfer(time.perf_counter() - t0)
        return out
