"""Frame input/output: YUV4MPEG2 (.y4m) files, NumPy/HDF5 frame arrays, and frame checks.

The codec works on 8-bit Y'CbCr 4:2:0.  A clip is a :class:`.yuv.YUV` of three uint8 planes,
``y`` ``(n, h, w)`` and ``u``/``v`` ``(n, h/2, w/2)``.  ``.y4m`` files carry all three planes;
``.npy``/``.h5`` files hold luma only (``(n, h, w)`` uint8) and get neutral (128) chroma.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .yuv import YUV, neutral_chroma

__all__ = ["FrameError", "MB", "check_frames", "read_y4m", "write_y4m", "load_frames"]

MB = 16  # macroblock size: frame sides must be multiples of it

_MAGIC = b"YUV4MPEG2"
# Every 4:2:0 8-bit colour-space tag of the format; the default (no C tag) is 4:2:0 too.
_C420 = {"420jpeg", "420", "420paldv", "420mpeg2"}


class FrameError(ValueError):
    """Bad frame data or a bad frame file; the message names the file and the field."""


def check_frames(frames: YUV | np.ndarray | list, where: str = "frames") -> YUV:
    """Return ``frames`` as a :class:`YUV` clip of C-contiguous uint8 planes, or raise FrameError.

    Accepts a YUV clip (3-D planes), a list of YUV pictures, or a luma-only ``(n, h, w)``
    array (given neutral chroma).  Width and height must be multiples of 16 because the codec
    predicts 16x16 macroblocks (so the chroma planes are multiples of 8: whole 8x8 blocks).
    """
    if isinstance(frames, list) and frames and isinstance(frames[0], YUV):
        frames = YUV(*(np.stack([f[i] for f in frames]) for i in range(3)))
    if not isinstance(frames, YUV):
        frames = neutral_chroma(_check_plane(frames, where))
    y = _check_plane(frames.y, f"{where}.y")
    n, h, w = y.shape
    _check_size(w, h, where)
    chroma = [_check_plane(p, f"{where}.{name}") for p, name in ((frames.u, "u"), (frames.v, "v"))]
    for p, name in zip(chroma, "uv", strict=True):
        if p.shape != (n, h // 2, w // 2):
            raise FrameError(
                f"{where}.{name}: 4:2:0 chroma of {n} {w}x{h} frames must be "
                f"{(n, h // 2, w // 2)}, got {p.shape}"
            )
    return YUV(y, *chroma)


def _check_plane(a: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise FrameError(f"{where}: expected a (n_frames, height, width) array, got {a.shape}")
    if a.shape[0] < 1:
        raise FrameError(f"{where}: no frames")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 255:
            raise FrameError(f"{where}: frames must be 8-bit (uint8 0..255), got dtype {a.dtype}")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def _check_size(width: int, height: int, where: str) -> None:
    for name, v in (("width", width), ("height", height)):
        if v <= 0 or v % MB:
            raise FrameError(
                f"{where}: {name} {v} is not a positive multiple of {MB} "
                f"(the codec codes {MB}x{MB} macroblocks); crop or pad the video"
            )


def _parse_header(line: bytes, where: str) -> tuple[int, int]:
    tokens = line.split()
    if not tokens or tokens[0] != _MAGIC:
        raise FrameError(f"{where}: not a YUV4MPEG2 file (header starts {line[:20]!r})")
    fields = {t[:1].decode("ascii", "replace"): t[1:].decode("ascii", "replace")
              for t in tokens[1:]}
    try:
        width, height = int(fields["W"]), int(fields["H"])
    except KeyError as e:
        raise FrameError(f"{where}: header field {e.args[0]} (frame size) is missing") from None
    except ValueError:
        raise FrameError(
            f"{where}: header W/H must be integers, got W{fields['W']} H{fields['H']}"
        ) from None
    colour = fields.get("C", "420")
    if colour not in _C420:
        raise FrameError(f"{where}: header C{colour}: only 4:2:0 8-bit (C420jpeg) is supported")
    if fields.get("I", "p") not in ("p", "?"):
        raise FrameError(f"{where}: header I{fields['I']}: only progressive (Ip) is supported")
    _check_size(width, height, where)
    return width, height


def read_y4m(path: str | os.PathLike) -> YUV:
    """Read a 4:2:0 8-bit .y4m file as a :class:`YUV` clip (all three planes)."""
    where = str(path)
    data = Path(path).read_bytes()
    end = data.find(b"\n")
    if end < 0:
        raise FrameError(f"{where}: no header line (file of {len(data)} bytes)")
    width, height = _parse_header(data[:end], where)
    luma, chroma = width * height, 2 * (width // 2) * (height // 2)
    cshape = (height // 2, width // 2)
    frames: list[YUV] = []
    pos = end + 1
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0 or not data.startswith(b"FRAME", pos):
            raise FrameError(f"{where}: frame {len(frames)}: expected 'FRAME' marker at byte {pos}")
        start = nl + 1
        if start + luma + chroma > len(data):
            raise FrameError(
                f"{where}: frame {len(frames)} is truncated: needs {luma + chroma} bytes, "
                f"file has {len(data) - start} left"
            )
        planes = np.frombuffer(data, np.uint8, luma + chroma, start)
        frames.append(YUV(planes[:luma].reshape(height, width),
                          planes[luma : luma + chroma // 2].reshape(cshape),
                          planes[luma + chroma // 2 :].reshape(cshape)))
        pos = start + luma + chroma
    if not frames:
        raise FrameError(f"{where}: no frames")
    return check_frames(frames, where)


def write_y4m(path: str | os.PathLike, frames: YUV | np.ndarray | list, fps: int = 30) -> None:
    """Write a clip (YUV, list of YUV pictures, or luma-only array with neutral chroma) as a
    4:2:0 .y4m file: per frame the Y, then the Cb (U), then the Cr (V) plane."""
    clip = check_frames(frames, "write_y4m frames")
    n, h, w = clip.y.shape
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n" % (w, h, fps))
        for d in range(n):
            f.write(b"FRAME\n")
            for plane in clip.frame(d):
                f.write(plane.tobytes())


def load_frames(path: str | os.PathLike, dataset: str = "frames") -> YUV:
    """Load a clip from a .y4m (4:2:0), .npy (luma ``(n, h, w)`` uint8) or .h5/.hdf5 file
    (luma ``dataset``); luma-only files get neutral chroma."""
    where = str(path)
    suffix = Path(path).suffix.lower()
    if not Path(path).exists():
        raise FrameError(f"{where}: no such file")
    if suffix == ".y4m":
        return read_y4m(path)
    if suffix == ".npy":
        return check_frames(np.load(path, allow_pickle=False), where)
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise FrameError(f"{where}: no dataset {dataset!r} (has {sorted(f.keys())})")
            return check_frames(f[dataset][...], f"{where}:{dataset}")
    raise FrameError(f"{where}: unknown frame file type {suffix!r} (use .y4m, .npy or .h5)")
