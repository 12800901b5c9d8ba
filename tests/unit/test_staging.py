"""GPU staging in the time split (issue 18), without a GPU: copies are transfer, the stream
synchronisation that waits for the stage's kernels is busy."""

from __future__ import annotations

import time

from streampipe import metrics as M
from streampipe.staging import Staging


class SlowCodec:
    """A wire codec whose copies and kernels take known times (seconds)."""

    def __init__(self, up: float, kernels: float, down: float) -> None:
        self.up, self.kernels, self.down = up, kernels, down
        self.calls: list[str] = []

    def from_wire(self, v):
        self.calls.append("from_wire")
        time.sleep(self.up)
        return ("dev", v)

    def sync(self):
        self.calls.append("sync")
        time.sleep(self.kernels)

    def to_wire(self, v):
        self.calls.append("to_wire")
        time.sleep(self.down)
        return v[1]


def test_copies_are_transfer_and_the_kernel_wait_is_busy():
    rec = M.Recorder()
    codec = SlowCodec(up=0.02, kernels=0.2, down=0.02)
    st = Staging(codec, rec)
    rec.enter(M.BUSY)  # the loop stages an item in while it is busy with it
    x = st.inbound(7)
    st.done()  # end of the item: its kernels
    rec.enter(M.OTHER)  # the handover
    assert st.outbound([x]) == [7]
    rec.close()
    t = dict(zip(M.STATES, rec.totals, strict=True))
    assert codec.calls == ["from_wire", "sync", "to_wire"]
    # sleeps overshoot, never undershoot; the kernel wait is 5x the copies, so it cannot hide
    # in either share unless it was charged to the wrong state
    assert 0.04 <= t["transfer"] < 0.2
    assert 0.2 <= t["busy"] < 0.24
