"""The video-encode pipeline stages: source -> me -> transform -> entropy -> sink.

Items are dicts.  The source emits frames in *encode* order (item ``seq`` = encode index) with
the encode-order seqs of their reference anchors, each picture padded to whole macroblocks.  The
closed loop runs through the runtime's feedback edge: ``TransformQuantize`` sends each anchor's
reconstruction with ``ctx.send_feedback`` (the job declares ``feedback_to = "me"``), and
``MotionEstimation`` gets it with ``ctx.feedback(anchor_seq)``.  Every stage may be replicated;
only the sink needs all items, which it orders by seq itself and writes as they come.

Every stage checks its parameters in the classmethod ``check_params(params, where)`` (the
``.y4m`` header included), which ``setup`` calls too; errors name the field.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from streampipe.stage import Context, Sink, Source, Stage

from .frameio import ArrayClip, FrameError, check_tags, open_clip
from .gop import anchors_held, encode_order, feedback_plan
from .motion import INTRA, Reference, intra_prediction
from .rdo import estimate, quantize_frame
from .schedule import best_lookahead
from .stats import VideoStats, psnr_planes, summarize
from .syntax import CodedFrame, StreamHeader, pack_frame, stream_header_bytes
from .synthetic import PanClip
from .transform import (
    MAX_SCALE,
    block_flags,
    block_kinds,
    forward_picture,
    jpeg_scale,
    reconstruct_picture,
)
from .yuv import MB, YUV, coded_size, crop_picture, host, neutral_chroma, pad_picture

__all__ = [
    "FrameSource",
    "MotionEstimation",
    "TransformQuantize",
    "EntropyCoder",
    "StreamWriter",
    "SourceConfig",
    "frame_items",
]


class _Params:
    """Typed access to a stage's params; every error names ``where.key``; unknown keys are
    refused (a misplaced parameter must not be silently ignored)."""

    def __init__(self, params: dict[str, Any], where: str, known: dict[str, str]) -> None:
        self.params, self.where = dict(params or {}), where
        for key in self.params:
            if key not in known:
                hint = f" ({known['*'][key]})" if key in known.get("*", {}) else ""
                raise ValueError(f"{where}.{key}: unknown parameter; known: "
                                 f"{', '.join(k for k in known if k != '*')}{hint}")

    def get(self, name: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        value = self.params.get(name, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            value = None  # bool is an int subclass; never accept it for numbers
        if not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{self.where}.{name}: must be {names}, got "
                             f"{self.params.get(name)!r}")
        return value

    def number(self, name: str, default: Any, lo: float, hi: float,
               kind: type | tuple[type, ...] = int) -> Any:
        value = self.get(name, default, kind)
        if not lo <= value <= hi:
            raise ValueError(f"{self.where}.{name}: must be in {lo}..{hi}, got {value}")
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.get(name, default, str)
        if value not in options:
            raise ValueError(f"{self.where}.{name}: must be one of {', '.join(options)}, "
                             f"got {value!r}")
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


# ---------------------------------------------------------------------------- source
ORDERS = ("anchors-first", "min-bubble")
_SOURCE_KEYS = {k: "" for k in (
    "source", "n_frames", "width", "height", "shift", "dataset", "fps", "gop", "bframes",
    "order", "me_replicas", "quality", "i_factor", "b_factor")}


@dataclass(frozen=True)
class SourceConfig:
    """The source's checked parameters (see :class:`FrameSource`)."""

    source: str
    n_frames: int
    width: int
    height: int
    shift: tuple[int, int]
    dataset: str
    fps: tuple[int, int] | None
    gop: int
    bframes: int
    order: str
    me_replicas: int
    quality: int
    i_factor: float
    b_factor: float

    def open(self) -> Any:
        """The clip (frames read one at a time), cut to ``n_frames`` when that is set."""
        if self.source == "synthetic":
            return PanClip(self.n_frames, self.width, self.height, self.shift,
                           fps=self.fps or (25, 1))
        clip = open_clip(self.source, self.dataset)
        if self.fps is not None and isinstance(clip, ArrayClip):
            clip.header = replace(clip.header, fps=self.fps)
        if self.n_frames:
            clip.n_frames = min(clip.n_frames, self.n_frames)
        return clip

    @property
    def lookahead(self) -> int:
        if self.order == "anchors-first":
            return 0
        return best_lookahead(self.gop, self.bframes, self.me_replicas)

    def scale(self, ftype: str) -> int:
        """The frame's libjpeg quantiser scale: the quality's, times the I or B factor."""
        f = {"I": self.i_factor, "P": 1.0, "B": self.b_factor}[ftype]
        return min(MAX_SCALE, int(round(jpeg_scale(self.quality) * f)))


def source_config(params: dict[str, Any], where: str = "params",
                  open_input: bool = True) -> SourceConfig:
    """Check the source's parameters and (with ``open_input``) the input's header: size, frame
    rate, interlacing, colour tags (no frame is read)."""
    p = _Params(params, where, _SOURCE_KEYS)
    source = p.get("source", "synthetic", str)
    n = p.number("n_frames", 24 if source == "synthetic" else 0, 0, 10**9)
    shift = tuple(p.get("shift", [1, 2], (list, tuple)))
    if len(shift) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shift):
        raise ValueError(f"{where}.shift: must be [dy, dx] integers, got {shift!r}")
    fps = params.get("fps")
    if fps is not None:
        try:
            fps, _ = check_tags(tuple(fps) if isinstance(fps, list) else fps, None, where)
        except FrameError:
            raise ValueError(f"{where}.fps: must be a positive integer or [num, den], "
                             f"got {params['fps']!r}") from None
    cfg = SourceConfig(
        source=source, n_frames=n,
        width=p.number("width", 160, 1, 16384), height=p.number("height", 128, 1, 16384),
        shift=shift, dataset=p.get("dataset", "frames", str), fps=fps,
        gop=p.number("gop", 12, 1, 10**6), bframes=p.number("bframes", 2, 0, 64),
        order=p.choice("order", "anchors-first", ORDERS),
        me_replicas=p.number("me_replicas", 2, 1, 4096),
        quality=p.number("quality", 75, 1, 100),
        i_factor=float(p.number("i_factor", 0.8, 0.05, 20.0, (int, float))),
        b_factor=float(p.number("b_factor", 1.6, 0.05, 20.0, (int, float))),
    )
    if source == "synthetic" and n < 1:
        raise ValueError(f"{where}.n_frames: the synthetic source needs n_frames >= 1")
    if source != "synthetic" and Path(source).suffix.lower() not in (".y4m", ".npy", ".h5",
                                                                     ".hdf5"):
        raise ValueError(f"{where}.source: must be 'synthetic' or a .y4m/.npy/.h5 file, "
                         f"got {source!r}")
    if not open_input:
        return cfg
    try:
        clip = cfg.open()  # headers only: size, frame rate, interlacing, colour tags
        clip.close()
    except FrameError as e:
        raise ValueError(f"{where}.source: {e}") from None
    return cfg


def frame_items(clip: Any, cfg: SourceConfig) -> Iterator[dict]:
    """The source's items for a clip (see :mod:`.frameio`), one per frame in encode order:
    ``frame`` is the picture padded to whole macroblocks, ``header`` the stream header."""
    lookahead = cfg.lookahead
    structure = (clip.n_frames, cfg.gop, cfg.bframes, lookahead)
    h = clip.header
    header = StreamHeader(clip.width, clip.height, h.fps, h.aspect, h.chroma, h.color_range,
                          n_frames=clip.n_frames, anchors=anchors_held(lookahead))
    for s in encode_order(*structure):
        yield {
            "seq": s.seq,
            "display": s.display,
            "type": s.type,
            "ref_seqs": s.ref_seqs,
            "ref_displays": s.ref_displays,
            "distances": tuple(abs(s.display - r) for r in s.ref_displays),
            "gop": structure,  # lets every replica know which seqs are anchors
            "scale": cfg.scale(s.type),
            "header": header,
            "frame": pad_picture(clip.frame(s.display)),
        }


class FrameSource(Source):
    """Frames in encode order, read one at a time.

    Params: ``source`` ("synthetic" or a .y4m/.npy/.h5 path), ``n_frames`` (synthetic length, or
    the first frames of a file; 0: all), ``width``/``height``/``shift`` (synthetic pan,
    ``shift`` = ``[dy, dx]`` pixels per frame), ``dataset`` (HDF5), ``fps`` (frame rate of
    inputs without one), ``gop``, ``bframes``, ``order`` ("anchors-first" or "min-bubble",
    which picks the lookahead for ``me_replicas`` motion-estimation replicas), ``quality``
    (1..100) and ``i_factor``/``b_factor`` (quantiser scale of I/B frames relative to P).
    """

    check_params = staticmethod(source_config)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = source_config(ctx.params, f"stages.{ctx.stage}.params")
        self.clip = self.cfg.open()
        try:  # check gop/bframes before the stream starts
            encode_order(self.clip.n_frames, self.cfg.gop, self.cfg.bframes)
        except ValueError as e:
            raise ValueError(f"stages.{ctx.stage}.params.{e}") from None

    def generate(self) -> Iterator[dict]:
        frame_bytes = self.clip.header.frame_bytes
        items = frame_items(self.clip, self.cfg)
        while True:
            with self.ctx.io(frame_bytes):
                item = next(items, None)
            if item is None:
                return
            yield item

    def close(self) -> None:
        clip = getattr(self, "clip", None)
        if clip is not None:
            clip.close()


# ---------------------------------------------------------------------------- motion
def me_config(params: dict[str, Any], where: str = "params") -> tuple[str, int]:
    """``(search, range)`` of the motion-estimation stage, checked."""
    p = _Params(params, where, {"search": "", "range": "",
                                "*": {"quality": "quality is a source parameter now"}})
    return (p.choice("search", "hierarchical", ("hierarchical", "full")),
            p.number("range", 8, 0, 64))


class MotionEstimation(Stage):
    """Half-pel motion vectors, macroblock modes and the prediction of each frame from the
    *reconstructed* anchors.

    Params: ``search`` ("hierarchical" or "full"), ``range`` (pixels per frame of distance to the
    reference).  The anchors arrive through ``ctx.feedback``.  From the GOP structure that every
    item carries, each replica knows all referenced anchors and, at item ``k``, releases those
    that neither ``k`` nor any later item references — also anchors it never asked for, since
    the runtime sends every value to every replica.
    """

    check_params = staticmethod(me_config)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.search, self.range = me_config(ctx.params, f"stages.{ctx.stage}.params")
        self._anchors: list[int] = []  # encode-order seqs of the referenced anchors, ascending
        self._live_from: list[int] = []  # [k]: oldest seq that item k or a later one references
        self._released = 0  # anchors[:_released] are released on this replica
        self._refs: dict[int, Reference] = {}  # prepared anchors (edge-extended, half-pel)

    def _reference(self, seq: int) -> Reference:
        if seq not in self._refs:
            self._refs[seq] = Reference(self.ctx.feedback(seq))
        return self._refs[seq]

    def _release_below(self, seq: float, wait: bool) -> None:
        while self._released < len(self._anchors) and self._anchors[self._released] < seq:
            anchor = self._anchors[self._released]
            if wait:
                # Releasing a value that has not arrived yet would leak it when it does, so
                # wait for it first (it is older than the current item, so it will come).
                self.ctx.feedback(anchor)
            self.ctx.release_feedback(anchor)
            self._refs.pop(anchor, None)
            self._released += 1

    def process(self, item: dict) -> dict:
        seq = _item_seq(self.ctx, item)
        if not self._live_from:
            referenced, self._live_from = feedback_plan(*item["gop"])
            self._anchors = sorted(referenced)
        frame = item["frame"]
        h, w = frame.y.shape
        n_mb = (h // MB) * (w // MB)
        if item["type"] == "I":
            mvs, modes = np.zeros((n_mb, 2, 2), np.int32), np.full(n_mb, INTRA, np.int8)
            skip = np.zeros(n_mb, bool)
            pred = neutral_chroma(intra_prediction((h, w)))
        else:
            refs = [self._reference(s) for s in item["ref_seqs"]]
            mvs, modes, skip, pred = estimate(frame, refs, item["distances"], item["scale"],
                                              self.range, self.search, self.ctx.xp)
        self._release_below(self._live_from[seq], wait=True)
        return {**item, "mvs": mvs, "modes": modes, "skip": skip, "prediction": pred}

    def finish(self) -> None:
        # The values still in flight are the clip's last one or two: left to the runtime.
        self._release_below(float("inf"), wait=False)
        return None


# ---------------------------------------------------------------------------- transform
def _no_params(params: dict[str, Any], where: str = "params") -> None:
    _Params(params, where, {"*": {"quality": "quality is a source parameter now"}})


class TransformQuantize(Stage):
    """Residual -> DCT -> quantise -> reconstruct, for Y, U and V; sends referenced anchors'
    reconstructions (YUV pictures) back.

    No params (the quantiser scale comes with each item).  The item gains ``levels``, ``recon``
    and ``psnr`` (per-plane and combined PSNR of the displayed area) and loses ``prediction``.
    On a GPU the DCT and quantisation run on the device; the reconstruction on the host.
    """

    check_params = staticmethod(_no_params)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        _no_params(ctx.params, f"stages.{ctx.stage}.params")
        self._referenced: frozenset[int] | None = None

    def process(self, item: dict) -> dict:
        _item_seq(self.ctx, item)
        xp = self.ctx.xp
        frame, pred = item["frame"], item.pop("prediction")
        residual = YUV(*(xp.asarray(f, dtype=xp.int16) - xp.asarray(p, dtype=xp.int16)
                         for f, p in zip(frame, pred, strict=True)))
        h, w = frame.y.shape
        modes = host(item["modes"])
        kinds = block_kinds(w, h, modes == INTRA)
        coef = forward_picture(residual, xp)
        skip = block_flags(w, h, host(item["skip"]))
        levels, _, _ = quantize_frame(coef, item["scale"], kinds, skip)
        recon = reconstruct_picture(levels, pred, item["scale"], kinds)
        if self._referenced is None:
            self._referenced = feedback_plan(*item["gop"])[0]
        if item["seq"] in self._referenced:
            self.ctx.send_feedback(recon)
        header = item["header"]
        shown = crop_picture(YUV(*(host(p) for p in frame)), header.width, header.height)
        return {**item, "frame": None, "mvs": host(item["mvs"]), "modes": modes, "skip": None,
                "levels": levels, "recon": recon,
                "psnr": psnr_planes(shown, crop_picture(recon, header.width, header.height))}


# ---------------------------------------------------------------------------- entropy
class EntropyCoder(Stage):
    """Codes a frame's header, modes, motion and levels into its payload bytes (stateless)."""

    check_params = staticmethod(_no_params)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        _no_params(ctx.params, f"stages.{ctx.stage}.params")

    def process(self, item: dict) -> dict:
        header = item["header"]
        w, h = coded_size(header.width, header.height)
        coded = CodedFrame(item["type"], item["display"], tuple(item["ref_displays"]),
                           item["scale"], host(item["mvs"]), host(item["modes"]),
                           host(item["levels"]))
        payload = pack_frame(coded, w, h)
        return {
            "seq": item["seq"],
            "display": item["display"],
            "type": item["type"],
            "payload": payload,
            "bits": 8 * len(payload),
            "psnr": item["psnr"],
            "header": header,
            "scale": item["scale"],
        }


# ---------------------------------------------------------------------------- sink
def _sink_config(params: dict[str, Any], where: str = "params") -> str | None:
    p = _Params(params, where, {"out": ""})
    if "out" in params and not isinstance(params["out"], str):
        raise ValueError(f"{where}.out: must be a path string, got {params['out']!r}")
    return p.params.get("out")


class StreamWriter(Sink):
    """Writes the payloads in encode order to param ``out`` as they become contiguous (or keeps
    the stream in memory without ``out``); holds only the payloads that arrived early.

    ``result()`` returns the stats of :func:`.stats.summarize` plus ``out``.
    """

    check_params = staticmethod(_sink_config)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.out = _sink_config(ctx.params, f"stages.{ctx.stage}.params")
        self._file: BinaryIO | None = None
        self._early: dict[int, bytes] = {}
        self._next = 0
        self._bytes = 0
        self.header: StreamHeader | None = None
        self.frames: dict[int, dict] = {}  # per-frame stats (no payloads)

    def _write(self, data: bytes) -> None:
        with self.ctx.io(len(data)):
            self._file.write(data)
        self._bytes += len(data)

    def consume(self, item: dict) -> None:
        seq = item["seq"]
        if seq in self.frames:
            raise ValueError(f"stage {self.ctx.stage!r}: frame seq {seq} arrived twice")
        if self.header is None:
            self.header = item["header"]
            self._file = open(self.out, "wb") if self.out is not None else io.BytesIO()  # noqa: SIM115
            self._write(stream_header_bytes(self.header))
        elif item["header"] != self.header:
            raise ValueError(f"stage {self.ctx.stage!r}: frame seq {seq} has another stream "
                             f"header ({item['header']} != {self.header})")
        self.frames[seq] = {k: item[k] for k in ("display", "type", "bits", "psnr", "scale")}
        self._early[seq] = item["payload"]
        while self._next in self._early:
            payload = self._early.pop(self._next)
            self._write(len(payload).to_bytes(4, "big") + payload)
            self._next += 1

    def _check_complete(self) -> None:
        n = self.header.n_frames if self.header is not None else 0
        if self._next != n or self._early:
            missing = sorted(set(range(n)) - set(self.frames))
            raise ValueError(f"stage {self.ctx.stage!r}: frames with seq {missing} never came")

    def stream_bytes(self) -> bytes:
        """The whole stream (when kept in memory, i.e. without ``out``)."""
        self._check_complete()
        if not isinstance(self._file, io.BytesIO):
            raise ValueError("stream_bytes: the stream went to a file; read it from `out`")
        return self._file.getvalue()

    def finish(self) -> None:
        if self.header is not None:
            self._check_complete()
            if self.out is not None:
                self._file.close()
        return None

    def close(self) -> None:
        if self._file is not None and not isinstance(self._file, io.BytesIO):
            self._file.close()

    def result(self) -> VideoStats:
        stats = summarize(list(self.frames.values()), self._bytes)
        if self.header is not None:
            h = self.header
            stats.update(width=h.width, height=h.height, fps=list(h.fps),
                         color_range=h.color_range)
        scales = {f["type"]: f["scale"] for f in self.frames.values()}
        stats["scale_by_type"] = scales
        stats["out"] = self.out
        return stats
