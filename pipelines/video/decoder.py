"""The decoder: stream bytes in, reconstructed frames (display order, display size) out.

It reads nothing but the stream.  Reconstruction uses the same :func:`.motion.compensate` and
:func:`.transform.reconstruct_picture` as the encoder's closed loop, so its pictures (all three
planes, before cropping) equal the encoder's reconstructions bit for bit.  :func:`decode_frames`
decodes a frame at a time: it holds the anchors the stream header announces and the frames
waiting for their turn in display order, never the whole clip.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from .golomb import BitstreamError
from .motion import INTRA, Reference, compensate, intra_prediction
from .syntax import StreamHeader, read_stream, unpack_frame
from .transform import block_kinds, reconstruct_picture
from .yuv import YUV, crop_picture, neutral_chroma

__all__ = ["decode", "decode_frames", "decode_padded"]


def decode_padded(header: StreamHeader, payloads: Iterable[bytes]) -> Iterator[tuple[int, YUV]]:
    """``(display, picture)`` per frame in *encode* order, pictures at the coded (padded) size:
    what the encoder's closed loop reconstructed."""
    width, height = header.coded
    anchors: dict[int, Reference] = {}  # display index -> reconstructed anchor, decode order
    seen: set[int] = set()
    for i, payload in enumerate(payloads):
        where = f"stream frame {i}"
        f = unpack_frame(payload, width, height, where)
        if f.display in seen or f.display >= header.n_frames:
            raise BitstreamError(f"{where}: display index {f.display} repeated or >= "
                                 f"{header.n_frames}")
        seen.add(f.display)
        missing = [r for r in f.ref_displays if r not in anchors]
        if missing:
            raise BitstreamError(f"{where}: reference frame(s) {missing} not decoded before it "
                                 f"(or more than {header.anchors} anchors back)")
        if f.type == "I":
            pred = neutral_chroma(intra_prediction((height, width)))
        else:
            try:
                pred = compensate([anchors[r] for r in f.ref_displays], f.mvs, f.modes)
            except ValueError as e:
                raise BitstreamError(f"{where}: {e}") from None
        kinds = block_kinds(width, height, f.modes == INTRA)  # all intra in I frames
        recon = reconstruct_picture(f.levels, pred, f.scale, kinds)
        if f.type != "B":
            anchors[f.display] = Reference(recon)
            while len(anchors) > header.anchors:
                del anchors[next(iter(anchors))]  # the oldest decoded
        yield f.display, recon
    if len(seen) != header.n_frames:
        raise BitstreamError(f"stream: {len(seen)} frames decoded, header says {header.n_frames}")


def decode_frames(header: StreamHeader, payloads: Iterable[bytes]) -> Iterator[YUV]:
    """The decoded pictures in display order, cropped to the display size, one at a time."""
    waiting: dict[int, YUV] = {}
    nxt = 0
    for display, pic in decode_padded(header, payloads):
        waiting[display] = pic
        while nxt in waiting:
            yield crop_picture(waiting.pop(nxt), header.width, header.height)
            nxt += 1
    if waiting:
        raise BitstreamError(f"stream: display indices {sorted(waiting)} never became "
                             f"consecutive")


def decode(data: bytes) -> list[YUV]:
    """Decode a whole stream; returns one 4:2:0 :class:`YUV` picture per display index, in
    display order (``write_y4m`` writes the list as a clip)."""
    header, payloads = read_stream(io.BytesIO(bytes(data)))
    return list(decode_frames(header, payloads))
