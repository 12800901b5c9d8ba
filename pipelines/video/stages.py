"""The video-encode pipeline stages: source -> me -> transform -> entropy -> sink.

Items are dicts.  The source emits frames in *encode* order (item ``seq`` = encode index) with
the encode-order seqs of their reference anchors.  The closed loop runs through the runtime's
feedback edge: ``TransformQuantize`` sends each anchor's reconstruction with
``ctx.send_feedback`` (the job declares ``feedback_to = "me"``), and ``MotionEstimation`` gets
it with ``ctx.feedback(anchor_seq)``.  Every stage may be replicated; only the sink needs all
items, which it orders by seq itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streampipe.stage import Context, Sink, Source, Stage

from .frameio import check_frames, load_frames
from .gop import encode_order, feedback_plan
from .motion import estimate, intra_prediction
from .stats import VideoStats, psnr_planes, summarize
from .syntax import CodedFrame, StreamHeader, pack_frame, pack_stream
from .synthetic import pan_frames
from .transform import quantize_picture, reconstruct_picture
from .yuv import YUV, neutral_chroma

__all__ = ["FrameSource", "MotionEstimation", "TransformQuantize", "EntropyCoder", "StreamWriter"]


def _param(ctx: Context, name: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    """``ctx.params[name]`` checked against ``kind``; errors name the stage and the field."""
    value = ctx.params.get(name, default)
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        value = None  # bool is an int subclass; never accept it for numbers
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(
            f"stages.{ctx.stage}.params.{name}: must be {names}, got {ctx.params.get(name)!r}"
        )
    return value


def _item_seq(ctx: Context, item: dict) -> int:
    # The anchors' feedback is keyed by the runtime's seq; the item's own copy must agree.
    seq = item["seq"]
    if ctx.seq is not None and ctx.seq != seq:
        raise ValueError(
            f"stage {ctx.stage!r}: item seq {seq} != runtime seq {ctx.seq}; the video source "
            "must be the first stage and emit exactly one item per frame"
        )
    return seq


class FrameSource(Source):
    """Frames in encode order.

    Params: ``source`` ("synthetic" or a .y4m/.npy/.h5 path), ``n_frames`` (synthetic length, or
    the first frames of a file), ``width``/``height``/``shift`` (synthetic pan, ``shift`` =
    ``[dy, dx]`` pixels per frame), ``dataset`` (HDF5), ``gop`` and ``bframes``.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        source = _param(ctx, "source", "synthetic", str)
        n = _param(ctx, "n_frames", 24 if source == "synthetic" else 0, int)
        if source == "synthetic":
            shift = _param(ctx, "shift", [1, 2], (list, tuple))
            if len(shift) != 2 or not all(isinstance(v, int) for v in shift):
                raise ValueError(
                    f"stages.{ctx.stage}.params.shift: must be [dy, dx] integers, got {shift!r}"
                )
            frames = pan_frames(
                n, _param(ctx, "width", 160, int), _param(ctx, "height", 128, int), tuple(shift)
            )
        else:
            with ctx.io(Path(source).stat().st_size if Path(source).exists() else 0):
                frames = load_frames(source, _param(ctx, "dataset", "frames", str))
            if n:
                frames = frames.head(n)
        self.frames = frames
        self.gop = _param(ctx, "gop", 12, int)
        self.bframes = _param(ctx, "bframes", 2, int)
        try:  # check gop/bframes before the stream starts
            encode_order(len(frames), self.gop, self.bframes)
        except ValueError as e:
            raise ValueError(f"stages.{ctx.stage}.params.{e}") from None

    def generate(self) -> Iterator[dict]:
        yield from frame_items(self.frames, self.gop, self.bframes)


def frame_items(frames: YUV | np.ndarray, gop: int, bframes: int) -> Iterator[dict]:
    """The source's items for display-order ``frames`` (a clip, see :func:`.check_frames`): one
    dict per frame, in encode order; ``frame`` is the :class:`YUV` picture."""
    frames = check_frames(frames)
    structure = (frames.n_frames, gop, bframes)
    for s in encode_order(*structure):
        yield {
            "seq": s.seq,
            "display": s.display,
            "type": s.type,
            "ref_seqs": s.ref_seqs,
            "ref_displays": s.ref_displays,
            "gop": structure,  # lets every replica know which seqs are anchors
            "frame": frames.frame(s.display),
        }


class MotionEstimation(Stage):
    """Motion vectors and prediction of each frame from the *reconstructed* anchors.

    Params: ``search`` ("full" or "diamond"), ``range`` (pixels).  The anchors arrive through
    ``ctx.feedback``.  From the GOP structure that every item carries, each replica knows all
    referenced anchors and, at item ``k``, releases those that neither ``k`` nor any later item
    references — also anchors it never asked for, since the runtime sends every value to every
    replica.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.search = _param(ctx, "search", "diamond", str)
        if self.search not in ("full", "diamond"):
            raise ValueError(f"stages.{ctx.stage}.params.search: must be 'full' or 'diamond', "
                             f"got {self.search!r}")
        self.range = _param(ctx, "range", 8, int)
        if not 0 <= self.range < 512:
            raise ValueError(
                f"stages.{ctx.stage}.params.range: must be in 0..511, got {self.range}"
            )
        self._anchors: list[int] = []  # encode-order seqs of the referenced anchors, ascending
        self._live_from: list[int] = []  # [k]: oldest seq that item k or a later one references
        self._released = 0  # anchors[:_released] are released on this replica

    def _release_below(self, seq: float, wait: bool) -> None:
        while self._released < len(self._anchors) and self._anchors[self._released] < seq:
            anchor = self._anchors[self._released]
            if wait:
                # Releasing a value that has not arrived yet would leak it when it does, so
                # wait for it first (it is older than the current item, so it will come).
                self.ctx.feedback(anchor)
            self.ctx.release_feedback(anchor)
            self._released += 1

    def process(self, item: dict) -> dict:
        seq = _item_seq(self.ctx, item)
        if not self._live_from:
            referenced, self._live_from = feedback_plan(*item["gop"])
            self._anchors = sorted(referenced)
        frame = item["frame"]
        if item["type"] == "I":
            mvs, modes, pred = None, None, neutral_chroma(intra_prediction(frame.y.shape))
        else:
            refs = [self.ctx.feedback(s) for s in item["ref_seqs"]]
            mvs, modes, pred = estimate(frame, refs, self.search, self.range, self.ctx.xp)
        self._release_below(self._live_from[seq], wait=True)
        return {**item, "mvs": mvs, "modes": modes, "prediction": pred}

    def finish(self) -> None:
        # The values still in flight are the clip's last one or two: left to the runtime.
        self._release_below(float("inf"), wait=False)
        return None


class TransformQuantize(Stage):
    """Residual -> DCT -> quantise -> reconstruct, for Y, U and V; sends referenced anchors'
    reconstructions (YUV pictures) back.

    Params: ``quality`` (1..100).  The item gains ``levels``, ``recon`` and ``psnr`` (a dict of
    per-plane and combined PSNR) and loses ``prediction``.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self._referenced: frozenset[int] | None = None
        self.quality = _param(ctx, "quality", 75, int)
        if not 1 <= self.quality <= 100:
            raise ValueError(
                f"stages.{ctx.stage}.params.quality: must be in 1..100, got {self.quality}"
            )

    def process(self, item: dict) -> dict:
        _item_seq(self.ctx, item)
        frame, pred = item["frame"], item.pop("prediction")
        residual = YUV(*(f.astype(np.int16) - p.astype(np.int16)
                         for f, p in zip(frame, pred, strict=True)))
        levels = quantize_picture(residual, self.quality, self.ctx.xp)
        recon = reconstruct_picture(levels, pred, self.quality)
        if self._referenced is None:
            self._referenced = feedback_plan(*item["gop"])[0]
        if item["seq"] in self._referenced:
            self.ctx.send_feedback(recon)
        return {**item, "levels": levels, "recon": recon, "quality": self.quality,
                "psnr": psnr_planes(frame, recon)}


class EntropyCoder(Stage):
    """Codes a frame's header, motion and levels into its payload bytes (stateless)."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    def process(self, item: dict) -> dict:
        h, w = item["frame"].y.shape
        n_mb = (h // 16) * (w // 16)
        mvs = item["mvs"] if item["mvs"] is not None else np.zeros((n_mb, 2, 2), np.int32)
        modes = item["modes"] if item["modes"] is not None else np.zeros(n_mb, np.int8)
        coded = CodedFrame(
            item["type"], item["display"], tuple(item["ref_displays"]), mvs, modes, item["levels"]
        )
        payload = pack_frame(coded, w, h)
        return {
            "seq": item["seq"],
            "display": item["display"],
            "type": item["type"],
            "payload": payload,
            "bits": 8 * len(payload),
            "psnr": item["psnr"],
            "width": w,
            "height": h,
            "quality": item["quality"],
        }


class StreamWriter(Sink):
    """Assembles the payloads in encode order into the stream; writes it to param ``out``.

    ``result()`` returns the stats of :func:`.stats.summarize` plus ``out``.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.out = ctx.params.get("out")
        if self.out is not None and not isinstance(self.out, str):
            raise ValueError(
                f"stages.{ctx.stage}.params.out: must be a path string, got {self.out!r}"
            )
        self.items: dict[int, dict] = {}
        self._stream: bytes | None = None

    def consume(self, item: dict) -> None:
        if item["seq"] in self.items:
            raise ValueError(f"stage {self.ctx.stage!r}: frame seq {item['seq']} arrived twice")
        self.items[item["seq"]] = item
        self._stream = None

    def stream_bytes(self) -> bytes:
        """The whole stream of the frames consumed so far (they must be seqs 0..n-1)."""
        if self._stream is None:
            seqs = sorted(self.items)
            if seqs != list(range(len(seqs))):
                missing = sorted(set(range(seqs[-1] + 1)) - set(seqs)) if seqs else [0]
                raise ValueError(f"stage {self.ctx.stage!r}: frames with seq {missing} never came")
            first = self.items[0]
            shape = {(i["width"], i["height"], i["quality"]) for i in self.items.values()}
            if len(shape) != 1:
                raise ValueError(
                    f"stage {self.ctx.stage!r}: frames disagree on size/quality {shape}"
                )
            header = StreamHeader(first["width"], first["height"], first["quality"], len(seqs))
            self._stream = pack_stream(header, [self.items[s]["payload"] for s in seqs])
        return self._stream

    def finish(self) -> None:
        if self.out is not None:
            data = self.stream_bytes()
            with self.ctx.io(len(data)):
                Path(self.out).write_bytes(data)
        return None

    def result(self) -> VideoStats:
        stats = summarize(list(self.items.values()), len(self.stream_bytes()) if self.items else 0)
        if self.items:
            first = self.items[0]
            stats.update(width=first["width"], height=first["height"], quality=first["quality"])
        stats["out"] = self.out
        return stats
