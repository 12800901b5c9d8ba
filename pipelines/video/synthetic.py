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

from .frameio import Clip, FrameError, Y4MHeader, check_frames, check_size
from .yuv import YUV, rgb_to_ycbcr, subsample_420

__all__ = ["sample_ycbcr", "sample_luma", "PanClip", "pan_frames"]


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


class PanClip(Clip):
    """The pan as a clip whose ``frame(t)`` computes window ``t`` on demand (no frame kept).

    Attributes as :class:`.frameio.ArrayClip`; the colour range is ``"FULL"`` (JFIF Y'CbCr).
    """

    def __init__(
        self,
        n_frames: int,
        width: int,
        height: int,
        shift: tuple[int, int] = (1, 2),
        origin: tuple[int, int] | None = None,
        fps: tuple[int, int] = (25, 1),
    ) -> None:
        img = sample_luma()
        dy, dx = (int(s) for s in shift)
        if n_frames < 1:
            raise FrameError(f"synthetic.n_frames: must be >= 1, got {n_frames}")
        check_size(width, height, "synthetic")
        span_y, span_x = height + abs(dy) * (n_frames - 1), width + abs(dx) * (n_frames - 1)
        if span_y > img.shape[0] or span_x > img.shape[1]:
            raise FrameError(
                f"synthetic: a {width}x{height} pan of {n_frames} frames by shift {tuple(shift)} "
                f"needs {span_x}x{span_y} pixels; the photo has {img.shape[1]}x{img.shape[0]}"
            )
        if origin is None:
            # Start so that the whole pan is centred on the photo.
            y0 = (img.shape[0] - span_y) // 2 + (abs(dy) * (n_frames - 1) if dy < 0 else 0)
            x0 = (img.shape[1] - span_x) // 2 + (abs(dx) * (n_frames - 1) if dx < 0 else 0)
        else:
            y0, x0 = origin
        self.n_frames, self.origin, self.shift = n_frames, (y0, x0), (dy, dx)
        self.header = Y4MHeader(width, height, fps, (1, 1), "420jpeg", "FULL")
        for t in (0, n_frames - 1):
            y, x = y0 + t * dy, x0 + t * dx
            if y < 0 or x < 0 or y + height > img.shape[0] or x + width > img.shape[1]:
                raise FrameError(f"synthetic: frame {t} window at (y={y}, x={x}) leaves the photo")

    def frame(self, t: int) -> YUV:
        if not 0 <= t < self.n_frames:
            raise IndexError(f"synthetic: frame {t} of {self.n_frames}")
        w, h = self.width, self.height
        y, x = self.origin[0] + t * self.shift[0], self.origin[1] + t * self.shift[1]
        # An odd side: the last chroma sample also takes the row/column just outside the window
        # (repeated at the photo's edge), as a camera's sensor would have it.
        win = sample_ycbcr()[y : y + h + h % 2, x : x + w + w % 2]
        if win.shape[:2] != (h + h % 2, w + w % 2):  # odd side at the photo's edge
            win = np.pad(win, ((0, h + h % 2 - win.shape[0]), (0, w + w % 2 - win.shape[1]),
                               (0, 0)), mode="edge")
        return YUV(sample_luma()[y : y + h, x : x + w],
                   subsample_420(win[..., 1]), subsample_420(win[..., 2]))


def pan_frames(
    n_frames: int,
    width: int,
    height: int,
    shift: tuple[int, int] = (1, 2),
    origin: tuple[int, int] | None = None,
) -> YUV:
    """``n_frames`` windows of the sample photo, moving by ``shift = (dy, dx)`` pixels per frame.

    ``origin`` is the first window's top-left ``(y, x)``; by default the pan is centred on the
    photo.  Returns a 4:2:0 :class:`YUV` clip (all frames in memory; :class:`PanClip` computes
    them one at a time).  Raises FrameError when the pan leaves the photo.
    """
    clip = PanClip(n_frames, width, height, shift, origin)
    return check_frames([clip.frame(t) for t in range(n_frames)], "synthetic")
