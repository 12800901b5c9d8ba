"""The serial encoder: the pipeline's stages run one after another in one process.

It is the oracle for the MPI pipeline: same stage classes, same item dicts, with an in-process
feedback store standing in for the runtime's feedback edge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.stage import Context

from .stages import EntropyCoder, MotionEstimation, StreamWriter, TransformQuantize, frame_items
from .yuv import YUV

__all__ = ["FeedbackHub", "SerialContext", "encode_serial"]


class FeedbackHub:
    """In-process feedback edge: every value goes to every consumer replica's store.

    Mirrors the runtime: each replica keeps the values it was sent until it releases them;
    releasing a value it does not hold is a no-op; asking for a value never sent is an error
    (in one process it could never arrive).
    """

    def __init__(self, replicas: int = 1) -> None:
        self.stores: list[dict[int, Any]] = [{} for _ in range(replicas)]
        self.peak = 0  # most values any replica held at once

    def send(self, seq: int, value: Any) -> None:
        for store in self.stores:
            store[seq] = value
            self.peak = max(self.peak, len(store))


class SerialContext(Context):
    """A :class:`Context` whose feedback calls go to a :class:`FeedbackHub`."""

    def __init__(self, hub: FeedbackHub, **kw: Any) -> None:
        super().__init__(**kw)
        self.hub = hub

    def send_feedback(self, value: Any) -> None:
        self.hub.send(self.seq, value)

    def feedback(self, seq: int) -> Any:
        store = self.hub.stores[self.replica]
        if seq not in store:
            raise RuntimeError(
                f"stage {self.stage!r} item {self.seq}: feedback for item {seq} was never sent "
                "or was already released"
            )
        return store[seq]

    def release_feedback(self, seq: int) -> None:
        self.hub.stores[self.replica].pop(seq, None)


def encode_serial(
    frames: YUV | np.ndarray, params: dict[str, Any] | None = None, me_replicas: int = 1
) -> tuple[bytes, list[YUV], dict]:
    """Encode a display-order clip (a :class:`YUV` clip, or luma-only frames that get neutral
    chroma); returns ``(stream, recon pictures, stats)``.

    The reconstructions are :class:`YUV` pictures in display order.

    ``params`` holds every stage's parameters in one table: ``gop``, ``bframes``, ``search``,
    ``range``, ``quality``, ``out`` (all optional).  ``me_replicas`` > 1 deals the items to
    several motion-estimation instances in turn, as replicas would see them; the stats then
    include ``feedback_left`` (values still held, which must be 0) and ``feedback_peak``.
    """
    p = dict(params or {})
    hub = FeedbackHub(me_replicas)

    def make(cls: type, name: str, replica: int = 0) -> Any:
        st = cls()
        st.setup(SerialContext(hub, params=p, stage=name, replica=replica, replicas=me_replicas
                               if name == "me" else 1))
        return st

    mes = [make(MotionEstimation, "me", r) for r in range(me_replicas)]
    tq, ec, sink = make(TransformQuantize, "transform"), make(EntropyCoder, "entropy"), make(
        StreamWriter, "sink")
    recon: dict[int, YUV] = {}
    for item in frame_items(frames, p.get("gop", 12), p.get("bframes", 2)):
        seq = item["seq"]
        me = mes[seq % me_replicas]
        for st in (me, tq, ec, sink):
            st.ctx.seq = seq
        item = tq.process(me.process(item))
        recon[item["display"]] = item["recon"]
        sink.consume(ec.process(item))
    for me in mes:
        me.finish()
    sink.finish()
    stats = sink.result()
    stats["feedback_left"] = sum(len(s) for s in hub.stores)
    stats["feedback_peak"] = hub.peak
    return sink.stream_bytes(), [recon[d] for d in sorted(recon)], stats
