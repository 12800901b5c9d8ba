"""Y'CbCr 4:2:0 pictures and clips, and the RGB -> Y'CbCr conversion of the synthetic source.

A :class:`YUV` holds three planes.  The same type serves a single picture (2-D planes: ``y``
``(h, w)``, ``u``/``v`` ``(h/2, w/2)``) and a clip (3-D planes with a leading frame axis), so a
clip's frame ``d`` is ``clip.frame(d)``.  The planes are uint8; ``u`` is Cb and ``v`` is Cr.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .kernels import MB  # pictures are coded padded to whole macroblocks

__all__ = [
    "YUV", "PLANES", "MB", "rgb_to_ycbcr", "subsample_420", "neutral_chroma", "chroma_size",
    "coded_size", "pad_picture", "crop_picture", "host",
]

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


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of the 4:2:0 chroma planes of a ``width x height`` picture (odd sides
    round up, as in YUV4MPEG2)."""
    return (width + 1) // 2, (height + 1) // 2


def coded_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` rounded up to whole macroblocks: the size the codec codes."""
    return -(-width // MB) * MB, -(-height // MB) * MB


def _pad_plane(p: np.ndarray, h: int, w: int) -> np.ndarray:
    if p.shape == (h, w):
        return p
    return np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1])), mode="edge")


def pad_picture(pic: YUV) -> YUV:
    """A picture padded to whole macroblocks by repeating its last row and column (luma and
    chroma alike); a picture of whole macroblocks is returned as it is."""
    h, w = pic.y.shape
    cw, ch = coded_size(w, h)
    return YUV(_pad_plane(pic.y, ch, cw), _pad_plane(pic.u, ch // 2, cw // 2),
               _pad_plane(pic.v, ch // 2, cw // 2))


def crop_picture(pic: YUV, width: int, height: int) -> YUV:
    """The top-left ``width x height`` picture of a padded one (inverse of :func:`pad_picture`)."""
    cw, ch = chroma_size(width, height)
    return YUV(pic.y[:height, :width], pic.u[:ch, :cw], pic.v[:ch, :cw])


def host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array, copying a device (CuPy) array to the host explicitly with
    ``.get()``: CuPy refuses the implicit conversion ``np.asarray`` would ask for."""
    if isinstance(x, np.ndarray):
        return x
    get = getattr(x, "get", None)
    return get() if callable(get) else np.asarray(x)
