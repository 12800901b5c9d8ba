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

from .yuv import YUV

__all__ = [
    "B",
    "dct_matrix",
    "to_blocks",
    "from_blocks",
    "dct_blocks",
    "quant_table",
    "ZIGZAG",
    "quantize",
    "reconstruct",
    "quantize_picture",
    "picture_blocks",
    "reconstruct_picture",
]

B = 8  # transform block size

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


@lru_cache(maxsize=1)
def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``C`` (``C @ C.T == I``); a block's DCT is C·X·Cᵀ."""
    k = np.arange(B)[:, None]
    n = np.arange(B)[None, :]
    c = np.sqrt(2.0 / B) * np.cos(np.pi * (2 * n + 1) * k / (2 * B))
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


def to_blocks(frame: Any) -> Any:
    """``(h, w)`` -> ``(h/8 * w/8, 8, 8)`` blocks in raster order."""
    h, w = frame.shape
    return frame.reshape(h // B, B, w // B, B).transpose(0, 2, 1, 3).reshape(-1, B, B)


def from_blocks(blocks: Any, h: int, w: int) -> Any:
    """Inverse of :func:`to_blocks`."""
    return blocks.reshape(h // B, w // B, B, B).transpose(0, 2, 1, 3).reshape(h, w)


def dct_blocks(blocks: Any, inverse: bool = False, xp: Any = np) -> Any:
    """Forward (C·X·Cᵀ) or inverse (Cᵀ·Y·C) DCT of float64 ``(n, 8, 8)`` blocks on ``xp``."""
    if xp is not np:
        from .kernels import dct8x8_gpu

        return dct8x8_gpu(blocks, inverse)
    c = dct_matrix()
    if inverse:
        return c.T @ blocks @ c
    return c @ blocks @ c.T


@lru_cache(maxsize=256)
def quant_table(quality: int, chroma: bool = False) -> np.ndarray:
    """The JPEG luminance (or, with ``chroma``, chrominance) table scaled for ``quality`` in
    1..100 (libjpeg's scaling, entries clipped to 1..255)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (
        1 <= quality <= 100
    ):
        raise ValueError(f"quality: must be an integer in 1..100, got {quality!r}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    base = _JPEG_CHROMA if chroma else _JPEG_LUMA
    q = np.clip(np.floor((base * scale + 50) / 100), 1, 255)
    q.setflags(write=False)
    return q


def quantize(residual: Any, quality: int, xp: Any = np, chroma: bool = False) -> np.ndarray:
    """Levels of a residual plane: DCT, divide by the (luma or chroma) table, round;
    ``(n_blocks, 64)`` int32 in zig-zag order, returned as a NumPy array."""
    blocks = to_blocks(xp.asarray(residual, dtype=xp.float64))
    q = xp.asarray(quant_table(quality, chroma))
    levels = xp.rint(dct_blocks(blocks, xp=xp) / q).astype(xp.int32).reshape(-1, B * B)
    levels = levels[:, xp.asarray(ZIGZAG)]
    return levels.get() if hasattr(levels, "get") else np.asarray(levels)


def reconstruct(
    levels: np.ndarray, prediction: np.ndarray, quality: int, chroma: bool = False
) -> np.ndarray:
    """The decoded plane: prediction + inverse DCT of the dequantised levels, rounded, clipped.

    ``levels`` is ``(n_blocks, 64)`` in zig-zag order; ``prediction`` a ``(h, w)`` uint8 plane;
    ``chroma`` picks the table the levels were quantised with.
    """
    h, w = prediction.shape
    table = quant_table(quality, chroma).reshape(-1)
    coeffs = (np.asarray(levels)[:, _UNZIGZAG] * table).reshape(-1, B, B)
    residual = from_blocks(dct_blocks(coeffs, inverse=True), h, w)
    return np.clip(np.rint(prediction + residual), 0, 255).astype(np.uint8)


def quantize_picture(residual: YUV, quality: int, xp: Any = np) -> np.ndarray:
    """Levels of a residual 4:2:0 picture: the Y plane's blocks (luma table), then U's, then V's
    (chroma table), each plane in raster order; ``(n_blocks, 64)`` int32, zig-zag order."""
    return np.concatenate(
        [quantize(p, quality, xp, chroma=i > 0) for i, p in enumerate(residual)]
    )


def picture_blocks(width: int, height: int) -> tuple[int, int]:
    """``(luma blocks, blocks per chroma plane)`` of a ``width x height`` 4:2:0 picture."""
    luma = (width // B) * (height // B)
    return luma, luma // 4


def reconstruct_picture(levels: np.ndarray, prediction: YUV, quality: int) -> YUV:
    """:func:`reconstruct` of each plane of a picture from the levels of
    :func:`quantize_picture`."""
    h, w = prediction.y.shape
    n_y, n_c = picture_blocks(w, h)
    if len(levels) != n_y + 2 * n_c:
        raise ValueError(f"levels: a {w}x{h} picture has {n_y + 2 * n_c} blocks, "
                         f"got {len(levels)}")
    parts = (levels[:n_y], levels[n_y : n_y + n_c], levels[n_y + n_c :])
    return YUV(*(reconstruct(lv, p, quality, chroma=i > 0)
                 for i, (lv, p) in enumerate(zip(parts, prediction, strict=True))))
