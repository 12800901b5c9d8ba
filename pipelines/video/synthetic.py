"""A synthetic clip with real picture content: a camera pan over matplotlib's sample photo.

Frame ``t`` is the ``height x width`` window of the photo's luma whose top-left corner sits at
``origin + t * shift`` (integer pixels), so the true motion between frames is known exactly:
content at ``(y, x)`` in frame ``t`` is at ``(y - dy, x - dx)`` in frame ``t + 1``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .frameio import FrameError, check_frames

__all__ = ["sample_luma", "pan_frames"]


@lru_cache(maxsize=1)
def sample_luma() -> np.ndarray:
    """The luma (BT.601 weights, rounded to uint8) of matplotlib's ``grace_hopper.jpg``."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage

    rgb = mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    y = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    out = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def pan_frames(
    n_frames: int,
    width: int,
    height: int,
    shift: tuple[int, int] = (1, 2),
    origin: tuple[int, int] | None = None,
) -> np.ndarray:
    """``n_frames`` windows of the sample photo, moving by ``shift = (dy, dx)`` pixels per frame.

    ``origin`` is the first window's top-left ``(y, x)``; by default the pan is centred on the
    photo.  Raises FrameError when the pan leaves the photo.
    """
    img = sample_luma()
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
    frames = []
    for t in range(n_frames):
        y, x = y0 + t * dy, x0 + t * dx
        if y < 0 or x < 0 or y + height > img.shape[0] or x + width > img.shape[1]:
            raise FrameError(f"synthetic: frame {t} window at (y={y}, x={x}) leaves the photo")
        frames.append(img[y : y + height, x : x + width])
    return check_frames(np.stack(frames), "synthetic")
