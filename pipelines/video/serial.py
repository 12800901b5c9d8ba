"""The serial encoder: the pipeline's stages run one after another in one process.

It is the oracle for the MPI pipeline: same stage classes, same item dicts, with an in-process
feedback store standing in for the runtime's feedback edge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.stage import Context

from .frameio import ArrayClip
from .stages import (
    EntropyCoder,
    MotionEstimation,
    StreamWriter,
    TransformQuantize,
    frame_items,
    source_config,
)
from .yuv import YUV

__all__ = ["FeedbackHub", "SerialContext", "encode_serial", "split_params"]

_STAGE_KEYS = {"me": ("search", "range"), "sink": ("out",)}


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


def split_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One flat table of every stage's parameters -> per-stage params (``source``, ``me``,
    ``sink``; the rest are the source's)."""
    out: dict[str, dict[str, Any]] = {"source": {}, "me": {}, "transform": {}, "entropy": {},
                                      "sink": {}}
    for k, v in params.items():
        stage = next((s for s, keys in _STAGE_KEYS.items() if k in keys), "source")
        out[stage][k] = v
    return out


def encode_serial(
    frames: YUV | np.ndarray | Any, params: dict[str, Any] | None = None, me_replicas: int = 1,
    xp: Any = np,
) -> tuple[bytes, list[YUV], dict]:
    """Encode a display-order clip (a :class:`YUV` clip, luma-only frames that get neutral
    chroma, or a clip object of :mod:`.frameio`); returns ``(stream, recon pictures, stats)``.

    The reconstructions are padded :class:`YUV` pictures (whole macroblocks) in display order.
    ``params`` holds every stage's parameters in one table (source: ``gop``, ``bframes``,
    ``order``, ``quality``, ...; me: ``search``, ``range``; sink: ``out``).  ``me_replicas`` > 1
    deals the items to several motion-estimation instances in turn, as replicas would see them;
    the stats then include ``feedback_left`` (values still held, which must be 0) and
    ``feedback_peak``.  ``xp`` is the array module of the me and transform stages.
    """
    per = split_params(dict(params or {}))
    clip = frames if hasattr(frames, "frame") and hasattr(frames, "header") else ArrayClip(frames)
    cfg = source_config(per["source"], "params", open_input=False)
    hub = FeedbackHub(me_replicas)

    def make(cls: type, name: str, replica: int = 0) -> Any:
        st = cls()
        st.setup(SerialContext(hub, params=per[name], stage=name, replica=replica,
                               replicas=me_replicas if name == "me" else 1,
                               device="cpu" if xp is np else "gpu", xp=xp))
        return st

    mes = [make(MotionEstimation, "me", r) for r in range(me_replicas)]
    tq, ec, sink = (make(TransformQuantize, "transform"), make(EntropyCoder, "entropy"),
                    make(StreamWriter, "sink"))
    recon: dict[int, YUV] = {}
    for item in frame_items(clip, cfg):
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
    if sink.out is not None:
        with open(sink.out, "rb") as f:
            stream = f.read()
    else:
        stream = sink.stream_bytes()
    return stream, [recon[d] for d in sorted(recon)], stats
