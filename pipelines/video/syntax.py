"""The bitstream syntax: frame payloads and the stream container (see README.md, "Bitstream").

:func:`pack_frame` / :func:`unpack_frame` turn one coded frame (type, display index, reference
display indices, quantiser scale, per-macroblock modes and half-pel vectors, quantised levels)
into bytes and back; :func:`pack_stream` / :func:`read_stream` wrap frame payloads in the
container.  The vector predictor and the skip rules live in :class:`MVField` and
:func:`skip_mode`, shared by both directions.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .arith import Decoder, Encoder
from .frameio import C420, MAX_SIDE, Y4MHeader
from .golomb import BitReader, BitstreamError, BitWriter
from .mbcode import (
    N_CONTEXTS,
    decode_macroblocks,
    encode_macroblocks,
    mb_directions,
    mb_kinds,
    skip_mode,
)
from .motion import BACKWARD, BIDIR, FORWARD, INTRA
from .transform import MAX_SCALE, B, block_kinds, picture_blocks
from .yuv import MB, coded_size

__all__ = [
    "MAGIC",
    "CodedFrame",
    "StreamHeader",
    "MVField",
    "mb_blocks",
    "P_TYPES",
    "B_TYPES",
    "pack_frame",
    "unpack_frame",
    "pack_stream",
    "stream_header_bytes",
    "read_stream",
    "unpack_stream",
]

MAGIC = b"SPV3"  # version 3: any size, half-pel motion, macroblock modes, per-frame scale
_OLD_MAGICS = {b"SPV1": "version 1 (luma-only)", b"SPV2": "version 2 (whole-pel, 16-multiple)"}
# magic, width, height, n_frames, fps num, fps den, aspect num, aspect den, chroma tag,
# colour range, anchors held
_HEADER = struct.Struct(">4sHHIIIHHBBB")
_LENGTH = struct.Struct(">I")
_TYPES = ("I", "P", "B")
_RANGES = (None, "FULL", "LIMITED")


@dataclass
class CodedFrame:
    """Everything the stream carries for one frame.

    ``mvs`` ``(n_mb, 2, 2)`` int32 (half-pel) and ``modes`` ``(n_mb,)`` int8 are as in
    :mod:`.motion` (all INTRA for I frames); ``levels`` is ``(n_blocks, 64)`` int32 in zig-zag
    order: the Y plane's blocks, then U's, then V's (see :func:`.transform.quantize_picture`);
    ``scale`` is the frame's libjpeg quantiser scale.
    """

    type: str
    display: int
    ref_displays: tuple[int, ...]
    scale: int
    mvs: np.ndarray
    modes: np.ndarray
    levels: np.ndarray


@dataclass(frozen=True)
class StreamHeader(Y4MHeader):
    """The stream's header: the input's display size and ``.y4m`` tags (frame rate, pixel
    aspect, chroma siting, colour range: a :class:`.frameio.Y4MHeader`), the frame count and
    how many anchors a decoder must hold (:func:`.gop.anchors_held`)."""

    n_frames: int = 0
    anchors: int = 2

    @property
    def coded(self) -> tuple[int, int]:
        """``(width, height)`` in whole macroblocks."""
        return coded_size(self.width, self.height)

    def y4m(self) -> Y4MHeader:
        """The tags of the decoded ``.y4m``."""
        return Y4MHeader(self.width, self.height, self.fps, self.aspect, self.chroma,
                         self.color_range)


# ------------------------------------------------------------------------ shared rules
class MVField:
    """The vectors of a frame's macroblocks as the coder sees them, for the predictor.

    The predictor of macroblock ``m`` in direction ``d`` is the component-wise median of its left
    (A), upper (B) and upper-right (C) neighbours' vectors; C is the upper-left one in the last
    column, A is B in the first column, and in the first row the predictor is A (zero for the
    first macroblock).  A macroblock that does not use a direction (intra, or a one-directional
    B block) holds its predictor there, so every neighbour always has a vector.
    """

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.v = np.zeros((rows * cols, 2, 2), np.int64)

    def predict(self, m: int, d: int) -> tuple[int, int]:
        cols, v = self.cols, self.v
        r, c = divmod(m, cols)
        if r == 0:
            if c == 0:
                return 0, 0
            a = v[m - 1, d]
            return int(a[0]), int(a[1])
        b = v[m - cols, d]
        a = v[m - 1, d] if c else b
        cc = v[m - cols + 1, d] if c + 1 < cols else v[m - cols - 1, d] if c else b
        return (int(sorted((a[0], b[0], cc[0]))[1]), int(sorted((a[1], b[1], cc[1]))[1]))

    def set(self, m: int, d: int, vec: tuple[int, int]) -> None:
        self.v[m, d] = vec


def mb_blocks(width: int, height: int) -> np.ndarray:
    """``(n_mb, 6)``: per macroblock the indices of its blocks in the levels array (Y top-left,
    top-right, bottom-left, bottom-right, then U, then V)."""
    rows, cols = height // MB, width // MB
    n_y, n_c = picture_blocks(width, height)
    bcols = width // B
    r, c = np.divmod(np.arange(rows * cols), cols)
    y0 = (2 * r) * bcols + 2 * c
    return np.stack([y0, y0 + 1, y0 + bcols, y0 + bcols + 1, n_y + r * cols + c,
                     n_y + n_c + r * cols + c], axis=1)


# The macroblock modes a frame type allows (the encoder's candidates).
P_TYPES = (FORWARD, INTRA)
B_TYPES = (BIDIR, FORWARD, BACKWARD, INTRA)


# ------------------------------------------------------------------------ levels
def _dc_pass(levels: np.ndarray, order: np.ndarray, intra: np.ndarray, cols: int,
             undo: bool) -> np.ndarray:
    """Intra blocks' DC levels to (``undo=False``) or from (``undo=True``) their differences
    from a predictor: the previous intra block's DC of the same plane in coding order, reset to 0
    at each macroblock row and after a non-intra macroblock.  Returns a modified copy."""
    out = levels.copy()
    pred = [0, 0, 0]
    for m in range(len(order)):
        if m % cols == 0 or not intra[m]:
            pred = [0, 0, 0]
        if not intra[m]:
            continue
        for k, b in enumerate(order[m]):
            p = 0 if k < 4 else k - 3
            if undo:
                out[b, 0] += pred[p]
                pred[p] = int(out[b, 0])
            else:
                out[b, 0] -= pred[p]
                pred[p] = int(levels[b, 0])
    return out


# ------------------------------------------------------------------------ frames
def _frame_header(f: CodedFrame) -> bytes:
    w = BitWriter()
    w.ue(_TYPES.index(f.type))
    w.ue(f.display)
    for r in f.ref_displays:
        w.ue(r)
    w.ue(f.scale)
    return w.getvalue()


def pack_frame(f: CodedFrame, width: int, height: int) -> bytes:
    """One frame's payload bytes; ``width x height`` is the coded size.

    The payload is the frame header in Exp-Golomb codes (type, display index, reference display
    indices, quantiser scale), zero bits to the byte, then the arithmetic-coded macroblocks.
    """
    if f.type not in _TYPES:
        raise ValueError(f"frame type: must be one of {_TYPES}, got {f.type!r}")
    rows, cols = height // MB, width // MB
    n_mb = rows * cols
    order = mb_blocks(width, height)
    modes = np.full(n_mb, INTRA, np.int8) if f.type == "I" else np.asarray(f.modes, np.int8)
    intra = modes == INTRA
    levels = _dc_pass(np.asarray(f.levels, np.int64), order, intra, cols, undo=False)
    coded = np.any(levels != 0, axis=1)[order].any(axis=1)
    kinds = block_kinds(width, height, intra)
    field = MVField(rows, cols)
    mvds = np.zeros((n_mb, 2, 2), np.int64)
    skip = np.zeros(n_mb, bool)
    if f.type != "I":
        prev_mode: int | None = None
        for m in range(n_mb):
            if m % cols == 0:
                prev_mode = None
            mode = int(modes[m])
            dirs = mb_directions(f.type, mode)
            same = not coded[m] and mode == skip_mode(f.type, prev_mode)
            for d in (0, 1):
                pred = field.predict(m, d)
                vec = (int(f.mvs[m, d, 0]), int(f.mvs[m, d, 1])) if d in dirs else pred
                field.set(m, d, vec)
                mvds[m, d] = vec[0] - pred[0], vec[1] - pred[1]
                same = same and (d not in dirs or vec == pred)
            skip[m] = same
            prev_mode = mode
    enc = Encoder(N_CONTEXTS)
    encode_macroblocks(enc, f.type, rows, cols, modes, mvds, skip, levels, order, kinds)
    return _frame_header(f) + enc.finish()


def unpack_frame(data: bytes, width: int, height: int, where: str = "frame") -> CodedFrame:
    """Parse one frame's payload (the inverse of :func:`pack_frame`); coded size."""
    r = BitReader(data, where)
    t = r.ue()
    if t >= len(_TYPES):
        raise BitstreamError(f"{where}: frame type code {t} is not 0 (I), 1 (P) or 2 (B)")
    ftype = _TYPES[t]
    display = r.ue()
    refs = tuple(r.ue() for _ in range(t))  # I: none, P: past, B: past and future
    scale = r.ue()
    if scale > MAX_SCALE:
        raise BitstreamError(f"{where}: quantiser scale {scale} > {MAX_SCALE}")
    rows, cols = height // MB, width // MB
    n_mb = rows * cols
    order = mb_blocks(width, height)
    n_y, n_c = picture_blocks(width, height)
    levels = np.zeros((n_y + 2 * n_c, B * B), np.int32)
    dec = Decoder(data, N_CONTEXTS, (r.pos + 7) // 8, where)
    modes, mvds, _ = decode_macroblocks(dec, ftype, rows, cols, order, mb_kinds, levels, where)
    mvs = np.zeros((n_mb, 2, 2), np.int32)
    if ftype != "I":
        field = MVField(rows, cols)
        for m in range(n_mb):
            dirs = mb_directions(ftype, int(modes[m]))
            for d in (0, 1):
                pred = field.predict(m, d)
                vec = (pred[0] + int(mvds[m, d, 0]), pred[1] + int(mvds[m, d, 1]))
                field.set(m, d, vec)
                if d in dirs:
                    mvs[m, d] = vec
    levels = _dc_pass(levels, order, modes == INTRA, cols, undo=True)
    return CodedFrame(ftype, display, refs, scale, mvs, modes, levels)


# ------------------------------------------------------------------------ the container
def stream_header_bytes(header: StreamHeader) -> bytes:
    """The header bytes of a stream (then ``length:u32 payload`` per frame, encode order)."""
    if header.chroma not in C420:
        raise ValueError(f"stream header: chroma tag {header.chroma!r} not one of {C420}")
    return _HEADER.pack(MAGIC, header.width, header.height, header.n_frames, *header.fps,
                        *header.aspect, C420.index(header.chroma),
                        _RANGES.index(header.color_range), header.anchors)


def pack_stream(header: StreamHeader, payloads: list[bytes]) -> bytes:
    """The whole stream: header, then each frame payload (encode order) with its length."""
    if header.n_frames != len(payloads):
        raise ValueError(f"n_frames {header.n_frames} != {len(payloads)} payloads")
    out = [stream_header_bytes(header)]
    for p in payloads:
        out += [_LENGTH.pack(len(p)), p]
    return b"".join(out)


def _parse_header(data: bytes) -> StreamHeader:
    if data[:4] in _OLD_MAGICS:
        raise BitstreamError(
            f"stream: {data[:4]!r} is a {_OLD_MAGICS[data[:4]]} stream; this decoder reads "
            f"{MAGIC!r} streams only"
        )
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise BitstreamError(f"stream: does not start with the {MAGIC!r} header")
    (_, width, height, n, fn, fd, an, ad, chroma, rng, anchors) = _HEADER.unpack_from(data)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BitstreamError(f"stream header: frame size {width}x{height} outside 1..{MAX_SIDE}")
    if not fn or not fd or chroma >= len(C420) or rng >= len(_RANGES) or not 2 <= anchors <= 16:
        raise BitstreamError("stream header: bad frame rate, chroma, range or anchors field")
    return StreamHeader(width, height, (fn, fd), (an, ad), C420[chroma], _RANGES[rng],
                        n_frames=n, anchors=anchors)


def read_stream(f: BinaryIO, where: str = "stream") -> tuple[StreamHeader, Iterator[bytes]]:
    """The header of a stream file and an iterator over its payloads (encode order), read one
    at a time."""
    header = _parse_header(f.read(_HEADER.size))

    def payloads() -> Iterator[bytes]:
        for i in range(header.n_frames):
            raw = f.read(_LENGTH.size)
            if len(raw) < _LENGTH.size:
                raise BitstreamError(f"{where}: truncated before frame {i} of {header.n_frames}")
            (length,) = _LENGTH.unpack(raw)
            data = f.read(length)
            if len(data) != length:
                raise BitstreamError(f"{where}: frame {i} is truncated ({length} bytes "
                                     "announced)")
            yield data
        if f.read(1):
            raise BitstreamError(f"{where}: stray bytes after frame {header.n_frames - 1}")

    return header, payloads()


def unpack_stream(data: bytes) -> tuple[StreamHeader, list[bytes]]:
    """Split a whole stream into its header and its frame payloads (encode order)."""
    header, payloads = read_stream(io.BytesIO(bytes(data)))
    return header, list(payloads)
