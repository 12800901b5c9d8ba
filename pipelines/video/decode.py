"""The decode command: ``python -m pipelines.video.decode STREAM -o OUT.y4m``.

Decodes a stream a frame at a time (memory: the anchors it holds and the frames waiting for
display order, independent of the clip's length) and writes a ``.y4m`` with the input's frame
rate, pixel aspect, chroma siting and colour range (``XCOLORRANGE``) that ffmpeg reads.
``-o -`` writes to standard output.  Errors print one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .decoder import decode_frames
from .frameio import FrameError, Y4MWriter
from .golomb import BitstreamError
from .syntax import read_stream


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.video.decode",
                                description="Decode a streampipe video stream to .y4m.")
    p.add_argument("stream", help="the stream file the video job wrote (stages.sink.params.out)")
    p.add_argument("-o", "--out", required=True, help="the .y4m to write ('-': stdout)")
    a = p.parse_args(argv)
    try:
        with open(a.stream, "rb") as f:
            header, payloads = read_stream(f, a.stream)
            out = sys.stdout.buffer if a.out == "-" else Path(a.out)
            with Y4MWriter(out, header.y4m()) as w:
                for pic in decode_frames(header, payloads):
                    w.write(pic)
    except (OSError, BitstreamError, FrameError) as e:
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else e
        print(f"decode: error: {msg}", file=sys.stderr)
        return 1
    if a.out != "-":
        print(f"decode: {w.frames} frames {header.width}x{header.height} -> {a.out}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
