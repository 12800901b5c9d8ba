"""8x8 orthonormal DCT-II, quality-scaled quantisation, zig-zag scan and reconstruction.

The forward path (DCT, quantise) may run on a GPU through ``xp``: it only decides the levels,
which the stream carries.  The reconstruction (dequantise, inverse DCT, add prediction, round,
clip) always runs in NumPy, in one function shared by the encoder's closed loop and the decoder,
so both produce bit-identical pictures.  A 4:2:0 picture is coded plane by plane (Y with the
luma table, then U and V with the chroma table) and its levels are the planes' blocks in that
order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .kernels import B, dct_blocks, dct_matrix
from .yuv import YUV, host

__all__ = [
    "B",
    "dct_matrix",
    "to_blocks",
    "from_blocks",
    "dct_blocks",
    "jpeg_scale",
    "scaled_table",
    "quant_table",
    "tables",
    "block_flags",
    "block_kinds",
    "ZIGZAG",
    "quantize_coefficients",
    "picture_to_blocks",
    "block_coefficients",
    "forward_picture",
    "quantize_picture",
    "picture_blocks",
    "reconstruct_picture",
]

# The JPEG (ITU-T T.81 Annex K) luminance quantisation table, the base of the quality scaling.
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
# The Annex K chrominance table: chroma is smooth, so its high frequencies are cut harder.
_JPEG_CHROMA = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.float64,
)


def _zigzag() -> np.ndarray:
    # Walk the anti-diagonals, alternating direction, as in JPEG.
    order = sorted(
        ((i, j) for i in range(B) for j in range(B)),
        key=lambda ij: (ij[0] + ij[1], ij[1] if (ij[0] + ij[1]) % 2 == 0 else ij[0]),
    )
    return np.array([i * B + j for i, j in order], dtype=np.intp)


ZIGZAG = _zigzag()  # ZIGZAG[k] = raster index of the k-th coefficient in scan order
_UNZIGZAG = np.argsort(ZIGZAG)


def to_blocks(frame: Any) -> Any:
    """``(h, w)`` -> ``(h/8 * w/8, 8, 8)`` blocks in raster order."""
    h, w = frame.shape
    return frame.reshape(h // B, B, w // B, B).transpose(0, 2, 1, 3).reshape(-1, B, B)


def from_blocks(blocks: Any, h: int, w: int) -> Any:
    """Inverse of :func:`to_blocks`."""
    return blocks.reshape(h // B, w // B, B, B).transpose(0, 2, 1, 3).reshape(h, w)


def jpeg_scale(quality: int) -> int:
    """libjpeg's ``jpeg_quality_scaling``: the percentage the Annex K tables are scaled by for a
    quality in 1..100 (``5000 // q`` below 50, integer division as in libjpeg; ``200 - 2q``
    from 50)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (
        1 <= quality <= 100
    ):
        raise ValueError(f"quality: must be an integer in 1..100, got {quality!r}")
    return 5000 // int(quality) if quality < 50 else 200 - 2 * int(quality)


def scaled_table(base: np.ndarray, scale: int) -> np.ndarray:
    """libjpeg's ``jpeg_add_quant_table`` with ``force_baseline``: ``(base * scale + 50) // 100``
    in integers, clamped to 1..255."""
    q = (base.astype(np.int64) * int(scale) + 50) // 100
    return np.clip(q, 1, 255).astype(np.float64)


@lru_cache(maxsize=256)
def quant_table(quality: int, chroma: bool = False) -> np.ndarray:
    """The JPEG luminance (or, with ``chroma``, chrominance) table libjpeg uses for ``quality``
    in 1..100: Annex K scaled by :func:`jpeg_scale`, as :func:`scaled_table` does."""
    q = scaled_table(_JPEG_CHROMA if chroma else _JPEG_LUMA, jpeg_scale(quality))
    q.setflags(write=False)
    return q


# Kinds of block (an index into :func:`tables`): intra luma/chroma use the JPEG tables, inter
# (motion-compensated) luma/chroma a flat table with the luma table's DC step.
INTRA_LUMA, INTRA_CHROMA, INTER_LUMA, INTER_CHROMA = 0, 1, 2, 3
MAX_SCALE = 5000


@lru_cache(maxsize=512)
def tables(scale: int) -> np.ndarray:
    """``(4, 64)`` float64 quantiser steps in zig-zag order for a frame of libjpeg scale
    ``scale`` (0..5000), one row per block kind (:data:`INTRA_LUMA` ... :data:`INTER_CHROMA`).
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not (
            0 <= scale <= MAX_SCALE):
        raise ValueError(f"scale: must be an integer in 0..{MAX_SCALE}, got {scale!r}")
    flat = np.full((B, B), _JPEG_LUMA[0, 0])
    rows = [scaled_table(t, scale).reshape(-1)[ZIGZAG]
            for t in (_JPEG_LUMA, _JPEG_CHROMA, flat, flat)]
    out = np.stack(rows)
    out.setflags(write=False)
    return out


def block_flags(width: int, height: int, per_mb: np.ndarray) -> np.ndarray:
    """A per-macroblock flag spread to its 8x8 blocks (4 luma, 1 U, 1 V) of a ``width x
    height`` picture (whole macroblocks), in the block order of :func:`forward_picture`."""
    rows, cols = height // 16, width // 16
    flags = np.asarray(per_mb, bool).reshape(rows, cols)
    y = np.repeat(np.repeat(flags, 2, axis=0), 2, axis=1).ravel()
    return np.concatenate([y, flags.ravel(), flags.ravel()])


def block_kinds(width: int, height: int, intra_mb: np.ndarray) -> np.ndarray:
    """The kind of every 8x8 block (:data:`INTRA_LUMA` ... :data:`INTER_CHROMA`) of a picture,
    from a per-macroblock intra flag."""
    intra = block_flags(width, height, intra_mb)
    n_y = (width // B) * (height // B)
    chroma = np.arange(len(intra)) >= n_y
    return (np.where(intra, 0, 2) + chroma).astype(np.intp)


def quantize_coefficients(coef: Any, steps: Any, bias: Any, xp: Any = np) -> Any:
    """Levels ``sign(c) * floor(|c| / step + bias)`` (``bias`` 0.5 is rounding; smaller values
    widen the dead zone around zero), int32 on ``xp``."""
    mag = xp.abs(coef)
    mag /= steps
    mag += bias
    xp.floor(mag, out=mag)
    xp.copysign(mag, coef, out=mag)
    return mag.astype(xp.int32)


def picture_to_blocks(pic: YUV, xp: Any = np) -> Any:
    """The 8x8 blocks of a 4:2:0 picture (whole macroblocks) on ``xp``: the Y plane's, then
    U's, then V's, each plane in raster order, ``(n_blocks, 8, 8)``."""
    return xp.concatenate([to_blocks(xp.asarray(p)) for p in pic])


def block_coefficients(blocks: Any, xp: Any = np) -> np.ndarray:
    """DCT coefficients of ``(n, 8, 8)`` blocks on ``xp``: ``(n, 64)`` float64 in zig-zag order,
    returned on the host."""
    coef = dct_blocks(blocks.astype(xp.float64), xp=xp).reshape(-1, B * B)
    return host(coef[:, xp.asarray(ZIGZAG)])


def forward_picture(residual: YUV, xp: Any = np) -> np.ndarray:
    """DCT coefficients of a residual 4:2:0 picture (whole macroblocks), blocks in the order of
    :func:`picture_to_blocks`: ``(n_blocks, 64)`` float64 in zig-zag order, on the host."""
    return block_coefficients(picture_to_blocks(residual, xp), xp)


def quantize_picture(residual: YUV, scale: int, kinds: np.ndarray, bias: np.ndarray,
                     xp: Any = np) -> np.ndarray:
    """Levels of a residual picture: :func:`forward_picture`, then each block divided by its
    kind's table (:func:`block_kinds`) with the kind's rounding offset ``bias``
    (:func:`quantize_coefficients`); ``(n_blocks, 64)`` int32 in zig-zag order."""
    steps = tables(scale)[kinds]
    return quantize_coefficients(forward_picture(residual, xp), steps,
                                 np.asarray(bias)[kinds][:, None])


def picture_blocks(width: int, height: int) -> tuple[int, int]:
    """``(luma blocks, blocks per chroma plane)`` of a ``width x height`` 4:2:0 picture
    (whole macroblocks)."""
    luma = (width // B) * (height // B)
    return luma, luma // 4


def reconstruct_picture(levels: np.ndarray, prediction: YUV, scale: int,
                        kinds: np.ndarray) -> YUV:
    """The decoded picture: per plane ``clip(rint(prediction + IDCT(level * step)), 0, 255)``
    with each block's step from its kind.  NumPy only; shared by encoder and decoder."""
    pred = YUV(*(host(p) for p in prediction))
    h, w = pred.y.shape
    n_y, n_c = picture_blocks(w, h)
    if len(levels) != n_y + 2 * n_c:
        raise ValueError(f"levels: a {w}x{h} picture has {n_y + 2 * n_c} blocks, "
                         f"got {len(levels)}")
    levels = np.asarray(levels)
    coded = np.flatnonzero(levels.any(axis=1))  # blocks without levels keep the prediction
    coeffs = (levels[coded] * tables(scale)[kinds[coded]])[:, _UNZIGZAG].reshape(-1, B, B)
    residual = dct_blocks(coeffs, inverse=True)
    out = []
    for p, lo, hi in zip(pred, (0, n_y, n_y + n_c), (n_y, n_y + n_c, n_y + 2 * n_c),
                         strict=True):
        blocks = to_blocks(p).astype(np.uint8, copy=True)
        mine = (coded >= lo) & (coded < hi)
        idx = coded[mine] - lo
        blocks[idx] = np.clip(np.rint(blocks[idx] + residual[mine]), 0, 255)
        out.append(from_blocks(blocks, *p.shape))
    return YUV(*out)
