"""Y'CbCr 4:2:0 pictures and clips, and the RGB -> Y'CbCr conversion of the synthetic source.

A :class:`YUV` holds three planes.  The same type serves a single picture (2-D planes: ``y``
``(h, w)``, ``u``/``v`` ``(h/2, w/2)``) and a clip (3-D planes with a leading frame axis), so a
clip's frame ``d`` is ``clip.frame(d)``.  The planes are uint8; ``u`` is Cb and ``v`` is Cr.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["YUV", "PLANES", "rgb_to_ycbcr", "subsample_420", "neutral_chroma"]

PLANES = ("y", "u", "v")

# BT.601 full-range (JPEG/JFIF) matrix: rows give Y', Cb - 128, Cr - 128 from R, G, B.
_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)


class YUV(NamedTuple):
    """Three planes of a 4:2:0 picture (2-D planes) or clip (3-D planes, frame axis first)."""

    y: Any
    u: Any
    v: Any

    @property
    def n_frames(self) -> int:
        """Frames of a clip (3-D planes)."""
        return int(self.y.shape[0])

    def frame(self, d: int) -> YUV:
        """Picture ``d`` of a clip."""
        return YUV(self.y[d], self.u[d], self.v[d])

    def head(self, n: int) -> YUV:
        """The first ``n`` frames of a clip."""
        return YUV(self.y[:n], self.u[:n], self.v[:n])

    def map(self, fn: Any) -> YUV:
        """``fn`` applied to each plane."""
        return YUV(fn(self.y), fn(self.u), fn(self.v))

    def equals(self, other: YUV) -> bool:
        """True when every plane is equal in shape and value (bit-exact comparison)."""
        return all(np.array_equal(a, b) for a, b in zip(self, other, strict=True))


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB (0..255) -> float64 ``(..., 3)`` Y'CbCr, BT.601 full range as in JPEG.

    Unrounded, so that subsampling averages the exact values and rounds once.
    """
    x = np.asarray(rgb, np.float64)[..., :3]
    # One matrix-vector product per component: a (3, 3) product may sum in another order and
    # move a luma value across a rounding tie.
    out = np.stack([x @ row for row in _RGB_TO_YCBCR], axis=-1)
    out[..., 1:] += 128.0
    return out


def subsample_420(plane: np.ndarray) -> np.ndarray:
    """2x2 box average of a full-resolution ``(..., h, w)`` float plane, rounded (half to even)
    and clipped to uint8: ``(..., h/2, w/2)``."""
    p = np.asarray(plane, np.float64)
    h, w = p.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"subsample_420: plane size {w}x{h} must be even")
    avg = p.reshape(*p.shape[:-2], h // 2, 2, w // 2, 2).mean(axis=(-3, -1))
    return np.clip(np.rint(avg), 0, 255).astype(np.uint8)


def neutral_chroma(luma: np.ndarray) -> YUV:
    """A luma-only picture or clip with mid-grey (128) chroma: what a grey picture carries."""
    y = np.asarray(luma)
    shape = (*y.shape[:-2], y.shape[-2] // 2, y.shape[-1] // 2)
    return YUV(y, np.full(shape, 128, np.uint8), np.full(shape, 128, np.uint8))
