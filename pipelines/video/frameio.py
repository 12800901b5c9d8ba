"""Frame input/output: YUV4MPEG2 (.y4m) files read and written a frame at a time, NumPy/HDF5
frame arrays, and frame checks.

The codec works on 8-bit Y'CbCr 4:2:0 of any size: a picture of ``w x h`` has chroma planes of
``ceil(w/2) x ceil(h/2)`` (as in YUV4MPEG2).  A *clip* is anything with the :class:`Clip`
attributes (size, frame count, frame rate, colour tags) and ``frame(d)``, which reads picture
``d`` only: :class:`Y4MReader` seeks to the frame in the file, :class:`ArrayClip` indexes an
in-memory, memory-mapped (``.npy``) or HDF5 array.  ``.npy``/``.h5`` files hold luma only
(``(n, h, w)`` uint8) and get neutral (128) chroma.

A ``.y4m`` header is checked completely when the file is opened (:func:`y4m_header`): frame
size, frame rate, interlacing, colour space and the ``XCOLORRANGE`` tag, each error naming the
file and the field.  The frame rate, pixel aspect, chroma siting (``C`` tag) and colour range of
the input are carried to the stream and from there to the decoder's ``.y4m``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .yuv import MB, YUV, chroma_size, neutral_chroma

__all__ = [
    "FrameError",
    "MB",
    "MAX_SIDE",
    "Y4MHeader",
    "Clip",
    "Y4MReader",
    "Y4MWriter",
    "ArrayClip",
    "check_frames",
    "y4m_header",
    "read_y4m",
    "write_y4m",
    "open_clip",
    "load_frames",
]

MAX_SIDE = 16384  # frame sides the stream header and the codec's index arithmetic allow
_MAGIC = b"YUV4MPEG2"
_FRAME = b"FRAME"
# Every 4:2:0 8-bit colour-space tag of the format (they differ in chroma siting only); no C
# tag means 4:2:0 too.
C420 = ("420jpeg", "420", "420paldv", "420mpeg2")
RANGES = ("FULL", "LIMITED")
_MAX_HEADER = 4096  # bytes a header line may take


class FrameError(ValueError):
    """Bad frame data or a bad frame file; the message names the file and the field."""


@dataclass(frozen=True)
class Y4MHeader:
    """What a YUV4MPEG2 stream header says (and what the codec carries from input to output).

    ``fps`` and ``aspect`` are ``(numerator, denominator)``; ``aspect`` ``(0, 0)`` means unknown;
    ``chroma`` is the ``C`` tag (one of :data:`C420`); ``color_range`` is ``"FULL"``,
    ``"LIMITED"`` or ``None`` (no ``XCOLORRANGE`` tag).
    """

    width: int
    height: int
    fps: tuple[int, int] = (25, 1)
    aspect: tuple[int, int] = (1, 1)
    chroma: str = "420jpeg"
    color_range: str | None = None

    @property
    def frame_bytes(self) -> int:
        cw, ch = chroma_size(self.width, self.height)
        return self.width * self.height + 2 * cw * ch

    def line(self) -> bytes:
        """The header line (with its newline)."""
        tags = [f"W{self.width}", f"H{self.height}", f"F{self.fps[0]}:{self.fps[1]}", "Ip",
                f"A{self.aspect[0]}:{self.aspect[1]}", f"C{self.chroma}"]
        if self.color_range is not None:
            tags.append(f"XCOLORRANGE={self.color_range}")
        return ("YUV4MPEG2 " + " ".join(tags) + "\n").encode("ascii")


def check_size(width: int, height: int, where: str) -> None:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_SIDE:
            raise FrameError(f"{where}: {name} {v!r} must be an integer in 1..{MAX_SIDE}")


def check_tags(fps: Any, color_range: Any, where: str) -> tuple[tuple[int, int], str | None]:
    """Frame rate ``(num, den)`` (or an int) and colour range, checked."""
    if isinstance(fps, (int, np.integer)) and not isinstance(fps, bool):
        fps = (int(fps), 1)
    if (not isinstance(fps, (tuple, list)) or len(fps) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                       for v in fps)):
        raise FrameError(f"{where}: frame rate must be positive integers num:den, got {fps!r}")
    if color_range is not None and color_range not in RANGES:
        raise FrameError(f"{where}: colour range must be FULL, LIMITED or absent, "
                         f"got {color_range!r}")
    return (int(fps[0]), int(fps[1])), color_range


def _ratio(value: str, field: str, where: str, zero: bool) -> tuple[int, int]:
    num, sep, den = value.partition(":")
    try:
        n, d = int(num), int(den)
    except ValueError:
        n = d = -1
    if not sep or n < 0 or d < 0 or (not zero and (n == 0 or d == 0)):
        raise FrameError(f"{where}: header {field}{value}: must be N:D with positive integers")
    return n, d


def parse_header(line: bytes, where: str) -> Y4MHeader:
    """The :class:`Y4MHeader` of a header line (without its newline); raises FrameError."""
    tokens = line.split()
    if not tokens or tokens[0] != _MAGIC:
        raise FrameError(f"{where}: not a YUV4MPEG2 file (header starts {line[:20]!r})")
    fields: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for t in tokens[1:]:
        text = t.decode("ascii", "replace")
        if text[0] == "X":
            key, _, value = text[1:].partition("=")
            extensions[key] = value
        else:
            fields[text[0]] = text[1:]
    for key, what in (("W", "frame size"), ("H", "frame size"), ("F", "frame rate")):
        if key not in fields:
            raise FrameError(f"{where}: header field {key} ({what}) is missing")
    try:
        width, height = int(fields["W"]), int(fields["H"])
    except ValueError:
        raise FrameError(
            f"{where}: header W/H must be integers, got W{fields['W']} H{fields['H']}"
        ) from None
    check_size(width, height, f"{where}: header W/H")
    fps = _ratio(fields["F"], "F", where, zero=False)
    aspect = _ratio(fields.get("A", "0:0"), "A", where, zero=True)
    chroma = fields.get("C", "420")
    if chroma not in C420:
        raise FrameError(f"{where}: header C{chroma}: only 4:2:0 8-bit (C420jpeg) is supported")
    interlace = fields.get("I", "p")
    if interlace not in ("p", "?"):
        raise FrameError(f"{where}: header I{interlace}: only progressive (Ip) is supported; "
                         "deinterlace first (e.g. ffmpeg -vf yadif)")
    color_range = extensions.get("COLORRANGE")
    if color_range is not None and color_range not in RANGES:
        raise FrameError(f"{where}: header XCOLORRANGE={color_range}: must be FULL or LIMITED")
    return Y4MHeader(width, height, fps, aspect, chroma, color_range)


def _read_line(f: BinaryIO, where: str, what: str) -> bytes:
    line = f.readline(_MAX_HEADER)
    if not line.endswith(b"\n"):
        raise FrameError(f"{where}: {what}: no line end within {_MAX_HEADER} bytes")
    return line[:-1]


class Clip:
    """What the encoder reads frames from: ``header`` (a :class:`Y4MHeader`: size and tags),
    ``n_frames``, ``frame(d)`` (picture ``d``, display order, read on demand) and ``close()``."""

    header: Y4MHeader
    n_frames: int

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    def frame(self, d: int) -> YUV:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file behind the clip (if any)."""


def y4m_header(path: str | os.PathLike) -> tuple[Y4MHeader, int]:
    """``(header, n_frames)`` of a .y4m file, checked without reading any picture.

    The frame count comes from the file size when every frame marker is a bare ``FRAME``; a
    file whose size does not fit that layout is scanned marker by marker.
    """
    with Y4MReader(path) as r:
        return r.header, r.n_frames


class Y4MReader(Clip):
    """A .y4m file opened for random access to its frames (one picture in memory at a time).

    ``frame(d)`` seeks to frame ``d`` and reads it.  The frame offsets follow from the header
    size when every marker is a bare ``FRAME\\n`` (the common layout; each read checks its
    marker); otherwise they are found by one scan of the markers at open (8 bytes per frame).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        where = self.path
        try:
            self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise FrameError(f"{where}: cannot open: {e.strerror}") from None
        try:
            first = self._f.readline(_MAX_HEADER)
            if not first:
                raise FrameError(f"{where}: no header line (empty file)")
            if not first.endswith(b"\n"):
                if not first.startswith(_MAGIC):
                    raise FrameError(
                        f"{where}: not a YUV4MPEG2 file (header starts {first[:20]!r})")
                raise FrameError(f"{where}: no header line end within {_MAX_HEADER} bytes")
            self.header = parse_header(first[:-1], where)
            self._start = len(first)
            self._size = os.fstat(self._f.fileno()).st_size
            self._offsets = self._index()
        except BaseException:
            self._f.close()
            raise

    def _index(self) -> np.ndarray | None:
        """None when the layout is uniform (offsets by arithmetic), else the scanned offsets."""
        step = len(_FRAME) + 1 + self.header.frame_bytes
        body = self._size - self._start
        if body == 0:
            raise FrameError(f"{self.path}: no frames")
        if body % step == 0:
            self.n_frames = body // step
            return None
        offsets = []
        pos = self._start
        while pos < self._size:
            self._f.seek(pos)
            line = _read_line(self._f, self.path, f"frame {len(offsets)} marker")
            if not line.startswith(_FRAME):
                raise FrameError(f"{self.path}: frame {len(offsets)}: expected 'FRAME' marker "
                                 f"at byte {pos}")
            data = pos + len(line) + 1
            if data + self.header.frame_bytes > self._size:
                raise FrameError(
                    f"{self.path}: frame {len(offsets)} is truncated: needs "
                    f"{self.header.frame_bytes} bytes, file has {self._size - data} left")
            offsets.append(data)
            pos = data + self.header.frame_bytes
        self.n_frames = len(offsets)
        return np.array(offsets, np.int64)

    def frame(self, d: int) -> YUV:
        """Picture ``d`` (display order) as a :class:`YUV` of uint8 planes."""
        if not 0 <= d < self.n_frames:
            raise IndexError(f"{self.path}: frame {d} of {self.n_frames}")
        h = self.header
        if self._offsets is None:
            pos = self._start + d * (len(_FRAME) + 1 + h.frame_bytes)
            self._f.seek(pos)
            marker = self._f.read(len(_FRAME) + 1)
            if marker != _FRAME + b"\n":
                raise FrameError(f"{self.path}: frame {d}: expected 'FRAME' marker at byte {pos}")
            start = pos + len(marker)
        else:
            start = int(self._offsets[d])
            self._f.seek(start)
        data = self._f.read(h.frame_bytes)
        if len(data) != h.frame_bytes:
            raise FrameError(f"{self.path}: frame {d} is truncated: needs {h.frame_bytes} "
                             f"bytes, file has {len(data)} left")
        planes = np.frombuffer(data, np.uint8)
        luma = h.width * h.height
        cw, ch = chroma_size(h.width, h.height)
        return YUV(planes[:luma].reshape(h.height, h.width),
                   planes[luma : luma + cw * ch].reshape(ch, cw),
                   planes[luma + cw * ch :].reshape(ch, cw))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Y4MReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Y4MWriter:
    """Writes a .y4m file one picture at a time (``header`` gives size and tags)."""

    def __init__(self, path: str | os.PathLike | BinaryIO, header: Y4MHeader) -> None:
        self.header = header
        if hasattr(path, "write"):
            self._f, self._own = path, False
        else:
            self._f, self._own = open(path, "wb"), True  # noqa: SIM115 - closed by close()
        self._f.write(header.line())
        self.frames = 0

    def write(self, pic: YUV) -> None:
        h = self.header
        cw, ch = chroma_size(h.width, h.height)
        for plane, shape, name in ((pic.y, (h.height, h.width), "y"), (pic.u, (ch, cw), "u"),
                                   (pic.v, (ch, cw), "v")):
            p = np.asarray(plane)
            if p.shape != shape or p.dtype != np.uint8:
                raise FrameError(f"write_y4m: frame {self.frames}.{name}: expected {shape} "
                                 f"uint8, got {p.shape} {p.dtype}")
        self._f.write(_FRAME + b"\n")
        for plane in pic:
            self._f.write(np.ascontiguousarray(plane).tobytes())
        self.frames += 1

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> Y4MWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_frames(frames: YUV | np.ndarray | list, where: str = "frames") -> YUV:
    """Return ``frames`` as a :class:`YUV` clip of C-contiguous uint8 planes, or raise FrameError.

    Accepts a YUV clip (3-D planes), a list of YUV pictures, or a luma-only ``(n, h, w)``
    array (given neutral chroma).  Any size; chroma must be ``ceil(h/2) x ceil(w/2)``.
    """
    if isinstance(frames, list) and frames and isinstance(frames[0], YUV):
        frames = YUV(*(np.stack([f[i] for f in frames]) for i in range(3)))
    if not isinstance(frames, YUV):
        frames = neutral_chroma(_check_plane(frames, where))
    y = _check_plane(frames.y, f"{where}.y")
    n, h, w = y.shape
    check_size(w, h, where)
    cw, ch = chroma_size(w, h)
    chroma = [_check_plane(p, f"{where}.{name}") for p, name in ((frames.u, "u"), (frames.v, "v"))]
    for p, name in zip(chroma, "uv", strict=True):
        if p.shape != (n, ch, cw):
            raise FrameError(f"{where}.{name}: 4:2:0 chroma of {n} {w}x{h} frames must be "
                             f"{(n, ch, cw)}, got {p.shape}")
    return YUV(y, *chroma)


def _check_plane(a: Any, where: str) -> np.ndarray:
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


class ArrayClip(Clip):
    """A clip over arrays: a :class:`YUV` clip, or a luma-only ``(n, h, w)`` array (in memory,
    memory-mapped or an HDF5 dataset; each ``frame(d)`` reads one frame) with neutral chroma.

    ``fps`` and ``color_range`` are the tags the stream carries (``.npy``/``.h5`` say nothing
    about them: 25 fps, no range tag by default).
    """

    def __init__(self, frames: YUV | Any, where: str = "frames", fps: Any = (25, 1),
                 color_range: str | None = None, chroma: str = "420jpeg",
                 closer: Any = None) -> None:
        self.where = where
        if isinstance(frames, (YUV, list)) or isinstance(frames, np.ndarray) and not isinstance(
                frames, np.memmap):
            frames = check_frames(frames, where)
        self._frames = frames
        self._luma_only = not isinstance(frames, YUV)
        luma = frames if self._luma_only else frames.y
        if len(luma.shape) != 3 or luma.shape[0] < 1:
            raise FrameError(f"{where}: expected a (n_frames, height, width) array, "
                             f"got {luma.shape}")
        if luma.dtype != np.uint8:
            raise FrameError(f"{where}: frames must be 8-bit (uint8), got dtype {luma.dtype}")
        self.n_frames, h, w = (int(v) for v in luma.shape)
        check_size(w, h, where)
        fps, color_range = check_tags(fps, color_range, where)
        self.header = Y4MHeader(w, h, fps, (1, 1), chroma, color_range)
        self._closer = closer

    def frame(self, d: int) -> YUV:
        if not 0 <= d < self.n_frames:
            raise IndexError(f"{self.where}: frame {d} of {self.n_frames}")
        if self._luma_only:
            return neutral_chroma(np.ascontiguousarray(self._frames[d]))
        return self._frames.frame(d)

    def head(self, n: int) -> ArrayClip:
        """The first ``n`` frames (a view)."""
        out = ArrayClip.__new__(ArrayClip)
        out.__dict__.update(self.__dict__)
        out.n_frames = min(n, self.n_frames)
        return out

    def close(self) -> None:
        if self._closer is not None:
            self._closer()


def open_clip(path: str | os.PathLike, dataset: str = "frames") -> Y4MReader | ArrayClip:
    """Open a .y4m, .npy (luma ``(n, h, w)`` uint8, memory-mapped) or .h5/.hdf5 (luma
    ``dataset``, read a frame at a time) file as a clip; nothing but headers is read."""
    where = str(path)
    suffix = Path(path).suffix.lower()
    if not Path(path).exists():
        raise FrameError(f"{where}: no such file")
    if suffix == ".y4m":
        return Y4MReader(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise FrameError(f"{where}: not a plain .npy array: {e}") from None
        return ArrayClip(arr, where)
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise FrameError(f"{where}: not an HDF5 file ({e})") from None
        if dataset not in f:
            keys = sorted(f.keys())
            f.close()
            raise FrameError(f"{where}: no dataset {dataset!r} (has {keys})")
        try:
            return ArrayClip(f[dataset], f"{where}:{dataset}", closer=f.close)
        except BaseException:
            f.close()
            raise
    raise FrameError(f"{where}: unknown frame file type {suffix!r} (use .y4m, .npy or .h5)")


def read_clip(clip: Any) -> YUV:
    """Every frame of a clip as one :class:`YUV` clip in memory (for small clips and tests)."""
    pics = [clip.frame(d) for d in range(clip.n_frames)]
    return YUV(*(np.stack([p[i] for p in pics]) for i in range(3)))


def read_y4m(path: str | os.PathLike) -> YUV:
    """Read a whole 4:2:0 8-bit .y4m file as a :class:`YUV` clip (all three planes)."""
    with Y4MReader(path) as r:
        return read_clip(r)


def write_y4m(path: str | os.PathLike, frames: YUV | np.ndarray | list,
              fps: Any = (30, 1), color_range: str | None = None,
              header: Y4MHeader | None = None) -> None:
    """Write a clip (YUV, list of YUV pictures, or luma-only array with neutral chroma) as a
    4:2:0 .y4m file: per frame the Y, then the Cb (U), then the Cr (V) plane.

    ``header`` gives every tag at once; otherwise ``fps`` (``(num, den)`` or an int) and
    ``color_range`` (``"FULL"``, ``"LIMITED"`` or None: no ``XCOLORRANGE`` tag).
    """
    clip = check_frames(frames, "write_y4m frames")
    n, h, w = clip.y.shape
    if header is None:
        fps, color_range = check_tags(fps, color_range, "write_y4m")
        header = Y4MHeader(w, h, fps, (1, 1), "420jpeg", color_range)
    elif (header.width, header.height) != (w, h):
        header = replace(header, width=w, height=h)
    with Y4MWriter(path, header) as out:
        for d in range(n):
            out.write(clip.frame(d))


def load_frames(path: str | os.PathLike, dataset: str = "frames") -> YUV:
    """Load a whole clip from a .y4m (4:2:0), .npy (luma) or .h5/.hdf5 file (luma ``dataset``);
    luma-only files get neutral chroma.  :func:`open_clip` reads frame by frame instead."""
    clip = open_clip(path, dataset)
    try:
        return check_frames(read_clip(clip), str(path))
    finally:
        clip.close()
