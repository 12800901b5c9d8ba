"""The bitstream syntax: frame payloads and the stream container (see README.md, "Bitstream").

:func:`pack_frame` / :func:`unpack_frame` turn one coded frame (type, display index, reference
display indices, motion vectors, block modes, quantised levels) into bytes and back;
:func:`pack_stream` / :func:`unpack_stream` wrap frame payloads in the container.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .frameio import MB
from .golomb import BitReader, BitstreamError, BitWriter, se_code, ue_code
from .motion import BACKWARD, BIDIR, FORWARD
from .transform import B, picture_blocks

__all__ = [
    "MAGIC",
    "CodedFrame",
    "StreamHeader",
    "pack_frame",
    "unpack_frame",
    "pack_stream",
    "unpack_stream",
]

MAGIC = b"SPV2"  # version 2: Y'CbCr 4:2:0 (version 1, "SPV1", coded luma only)
_OLD_MAGICS = {b"SPV1": "version 1 (luma-only)"}
_HEADER = struct.Struct(">4sHHBI")  # magic, width, height, quality, n_frames
_LENGTH = struct.Struct(">I")
_TYPES = ("I", "P", "B")


@dataclass
class CodedFrame:
    """Everything the stream carries for one frame.

    ``mvs`` ``(n_mb, 2, 2)`` int32 and ``modes`` ``(n_mb,)`` int8 are as in :mod:`.motion`
    (unused for I frames); ``levels`` is ``(n_blocks, 64)`` int32 in zig-zag order: the Y
    plane's blocks, then U's, then V's (see :func:`.transform.quantize_picture`).
    """

    type: str
    display: int
    ref_displays: tuple[int, ...]
    mvs: np.ndarray
    modes: np.ndarray
    levels: np.ndarray


@dataclass(frozen=True)
class StreamHeader:
    width: int
    height: int
    quality: int
    n_frames: int


def _directions(ftype: str, mode: int) -> tuple[int, ...]:
    if ftype == "P":
        return (FORWARD,)
    return {FORWARD: (FORWARD,), BACKWARD: (BACKWARD,), BIDIR: (FORWARD, BACKWARD)}[mode]


def _write_motion(w: BitWriter, f: CodedFrame, cols: int) -> None:
    # Vectors are coded as differences from the previous vector of the same direction in the
    # same macroblock row (zero at the start of a row).
    pred = np.zeros((2, 2), np.int64)
    for m, mode in enumerate(f.modes.tolist()):
        if m % cols == 0:
            pred[:] = 0
        if f.type == "B":
            w.ue(mode)
        for d in _directions(f.type, mode):
            w.se(int(f.mvs[m, d, 0]) - pred[d, 0])
            w.se(int(f.mvs[m, d, 1]) - pred[d, 1])
            pred[d] = f.mvs[m, d]


def _write_levels(w: BitWriter, levels: np.ndarray) -> None:
    # Per block: ue(number of non-zero levels), then per non-zero level ue(zeros before it in
    # zig-zag order) and se(level).
    blk, pos = np.nonzero(levels)
    nnz = np.bincount(blk, minlength=len(levels))
    first = np.r_[0, np.cumsum(nnz)[:-1]]
    prev = np.where(np.r_[True, blk[1:] != blk[:-1]], -1, np.r_[-1, pos[:-1]])
    runs = (pos - prev - 1).tolist()
    vals = levels[blk, pos].tolist()
    pairs = [ue_code(r) + se_code(v) for r, v in zip(runs, vals, strict=True)]
    parts = []
    for b, n in enumerate(nnz.tolist()):
        parts.append(ue_code(n))
        if n:
            parts.extend(pairs[first[b] : first[b] + n])
    w.raw("".join(parts))


def pack_frame(f: CodedFrame, width: int, height: int) -> bytes:
    """One frame's payload bytes (byte-aligned)."""
    if f.type not in _TYPES:
        raise ValueError(f"frame type: must be one of {_TYPES}, got {f.type!r}")
    w = BitWriter()
    w.ue(_TYPES.index(f.type))
    w.ue(f.display)
    for r in f.ref_displays:
        w.ue(r)
    if f.type != "I":
        _write_motion(w, f, width // MB)
    _write_levels(w, np.asarray(f.levels))
    return w.getvalue()


def unpack_frame(data: bytes, width: int, height: int, where: str = "frame") -> CodedFrame:
    """Parse one frame's payload (the inverse of :func:`pack_frame`)."""
    r = BitReader(data, where)
    t = r.ue()
    if t >= len(_TYPES):
        raise BitstreamError(f"{where}: frame type code {t} is not 0 (I), 1 (P) or 2 (B)")
    ftype = _TYPES[t]
    display = r.ue()
    refs = tuple(r.ue() for _ in range(t))  # I: none, P: past, B: past and future
    cols = width // MB
    n_mb = cols * (height // MB)
    mvs = np.zeros((n_mb, 2, 2), np.int32)
    modes = np.zeros(n_mb, np.int8)
    if ftype != "I":
        pred = np.zeros((2, 2), np.int64)
        for m in range(n_mb):
            if m % cols == 0:
                pred[:] = 0
            if ftype == "B":
                modes[m] = mode = r.ue()
                if mode > BIDIR:
                    raise BitstreamError(f"{where}: macroblock {m}: block mode {mode} > {BIDIR}")
            for d in _directions(ftype, int(modes[m])):
                pred[d] = pred[d, 0] + r.se(), pred[d, 1] + r.se()
                mvs[m, d] = pred[d]
    n_y, n_c = picture_blocks(width, height)
    n_blocks = n_y + 2 * n_c
    levels = np.zeros((n_blocks, B * B), np.int32)
    for b in range(n_blocks):
        pos = -1
        for _ in range(r.ue()):
            pos += r.ue() + 1
            if pos >= B * B:
                raise BitstreamError(f"{where}: block {b}: coefficient index {pos} > 63")
            levels[b, pos] = r.se()
    if r.remaining() >= 8:
        raise BitstreamError(f"{where}: {r.remaining()} bits left after the last block")
    return CodedFrame(ftype, display, refs, mvs, modes, levels)


def pack_stream(header: StreamHeader, payloads: list[bytes]) -> bytes:
    """The whole stream: header, then each frame payload (encode order) with its length."""
    if header.n_frames != len(payloads):
        raise ValueError(f"n_frames {header.n_frames} != {len(payloads)} payloads")
    out = [_HEADER.pack(MAGIC, header.width, header.height, header.quality, header.n_frames)]
    for p in payloads:
        out += [_LENGTH.pack(len(p)), p]
    return b"".join(out)


def unpack_stream(data: bytes) -> tuple[StreamHeader, list[bytes]]:
    """Split a stream into its header and its frame payloads (encode order)."""
    if data[:4] in _OLD_MAGICS:
        raise BitstreamError(
            f"stream: {data[:4]!r} is a {_OLD_MAGICS[data[:4]]} stream; this decoder reads "
            f"{MAGIC!r} (4:2:0) streams only"
        )
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise BitstreamError(f"stream: does not start with the {MAGIC!r} header")
    magic, width, height, quality, n = _HEADER.unpack_from(data)
    if width % MB or height % MB or not width or not height:
        raise BitstreamError(
            f"stream header: frame size {width}x{height} is not a multiple of {MB}"
        )
    payloads = []
    pos = _HEADER.size
    for i in range(n):
        if pos + _LENGTH.size > len(data):
            raise BitstreamError(f"stream: truncated before frame {i} of {n}")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + length > len(data):
            raise BitstreamError(f"stream: frame {i} is truncated ({length} bytes announced)")
        payloads.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise BitstreamError(f"stream: {len(data) - pos} stray bytes after frame {n - 1}")
    return StreamHeader(width, height, quality, n), payloads
