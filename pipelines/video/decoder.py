"""The decoder: stream bytes in, reconstructed frames (display order) out.

It reads nothing but the stream.  Reconstruction uses the same :func:`.motion.compensate` and
:func:`.transform.reconstruct_picture` as the encoder's closed loop, so its pictures (all three
planes) equal the encoder's reconstructions bit for bit.
"""

from __future__ import annotations

from .golomb import BitstreamError
from .motion import compensate, intra_prediction
from .syntax import unpack_frame, unpack_stream
from .transform import reconstruct_picture
from .yuv import YUV, neutral_chroma

__all__ = ["decode"]


def decode(data: bytes) -> list[YUV]:
    """Decode a stream; returns one 4:2:0 :class:`YUV` picture per display index, in display
    order (``write_y4m`` writes the list as a clip)."""
    header, payloads = unpack_stream(bytes(data))
    shape = (header.height, header.width)
    anchors: dict[int, YUV] = {}  # display index -> reconstructed anchor
    frames: dict[int, YUV] = {}
    for i, payload in enumerate(payloads):
        where = f"stream frame {i}"
        f = unpack_frame(payload, header.width, header.height, where)
        if f.display in frames:
            raise BitstreamError(f"{where}: display index {f.display} appears twice")
        missing = [r for r in f.ref_displays if r not in anchors]
        if missing:
            raise BitstreamError(f"{where}: reference frame(s) {missing} not decoded before it")
        if f.type == "I":
            pred = neutral_chroma(intra_prediction(shape))
        else:
            pred = compensate([anchors[r] for r in f.ref_displays], f.mvs, f.modes)
        recon = reconstruct_picture(f.levels, pred, header.quality)
        frames[f.display] = recon
        if f.type != "B":
            anchors[f.display] = recon
            # A frame only ever references the two most recent anchors.
            for old in sorted(anchors)[:-2]:
                del anchors[old]
    if sorted(frames) != list(range(header.n_frames)):
        raise BitstreamError(
            f"stream: display indices {sorted(frames)} are not 0..{header.n_frames - 1}"
        )
    return [frames[d] for d in range(header.n_frames)]
