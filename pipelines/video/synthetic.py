"""A synthetic clip with real picture content: a camera pan over matplotlib's sample photo.

Frame ``t`` is the ``height x width`` window of the photo whose top-left corner sits at
``origin + t * shift`` (integer pixels), so the true motion between frames is known exactly:
content at ``(y, x)`` in frame ``t`` is at ``(y - dy, x - dx)`` in frame ``t + 1``.  The photo
(RGB) is converted to Y'CbCr (BT.601 full range, as JPEG does); each frame's chroma is the 2x2
average (rounded) of the full-resolution Cb/Cr inside its window, so a window at an odd offset
gets the chroma a camera would record there, not a shifted copy of another frame's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .frameio import FrameError, check_frames
from .yuv import YUV, rgb_to_ycbcr, subsample_420

__all__ = ["sample_ycbcr", "sample_luma", "pan_frames"]


@lru_cache(maxsize=1)
def sample_ycbcr() -> np.ndarray:
    """Matplotlib's ``grace_hopper.jpg`` as full-resolution float64 ``(h, w, 3)`` Y'CbCr."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage

    rgb = mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    out = rgb_to_ycbcr(rgb)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def sample_luma() -> np.ndarray:
    """The luma (BT.601 weights, rounded to uint8) of matplotlib's ``grace_hopper.jpg``."""
    out = np.clip(np.rint(sample_ycbcr()[..., 0]), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def pan_frames(
    n_frames: int,
    width: int,
    height: int,
    shift: tuple[int, int] = (1, 2),
    origin: tuple[int, int] | None = None,
) -> YUV:
    """``n_frames`` windows of the sample photo, moving by ``shift = (dy, dx)`` pixels per frame.

    ``origin`` is the first window's top-left ``(y, x)``; by default the pan is centred on the
    photo.  Returns a 4:2:0 :class:`YUV` clip.  Raises FrameError when the pan leaves the photo.
    """
    img = sample_luma()
    ycc = sample_ycbcr()
    dy, dx = (int(s) for s in shift)
    span_y, span_x = height + abs(dy) * (n_frames - 1), width + abs(dx) * (n_frames - 1)
    if n_frames < 1:
        raise FrameError(f"synthetic.n_frames: must be >= 1, got {n_frames}")
    if span_y > img.shape[0] or span_x > img.shape[1]:
        raise FrameError(
            f"synthetic: a {width}x{height} pan of {n_frames} frames by shift {shift} needs "
            f"{span_x}x{span_y} pixels; the photo has {img.shape[1]}x{img.shape[0]}"
        )
    if origin is None:
        # Start so that the whole pan is centred on the photo.
        y0 = (img.shape[0] - span_y) // 2 + (abs(dy) * (n_frames - 1) if dy < 0 else 0)
        x0 = (img.shape[1] - span_x) // 2 + (abs(dx) * (n_frames - 1) if dx < 0 else 0)
    else:
        y0, x0 = origin
    frames: list[YUV] = []
    for t in range(n_frames):
        y, x = y0 + t * dy, x0 + t * dx
        if y < 0 or x < 0 or y + height > img.shape[0] or x + width > img.shape[1]:
            raise FrameError(f"synthetic: frame {t} window at (y={y}, x={x}) leaves the photo")
        win = ycc[y : y + height, x : x + width]
        frames.append(YUV(img[y : y + height, x : x + width],
                          subsample_420(win[..., 1]), subsample_420(win[..., 2])))
    return check_frames(frames, "synthetic")
