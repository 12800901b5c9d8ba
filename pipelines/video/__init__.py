"""Built-in video encoder: a half-pel block-motion, DCT, Exp-Golomb codec as a streampipe
pipeline.

Stages (``jobs/video.toml``): :class:`FrameSource` -> :class:`MotionEstimation` ->
:class:`TransformQuantize` -> :class:`EntropyCoder` -> :class:`StreamWriter`.  The serial
:func:`encode_serial` runs the same stages in one process; :func:`decode` reads a stream back
(``python -m pipelines.video.decode STREAM -o OUT.y4m`` from the command line).
The bitstream is described in README.md.
"""

from .decoder import decode, decode_frames
from .frameio import FrameError, load_frames, open_clip, read_y4m, write_y4m
from .serial import encode_serial
from .stages import EntropyCoder, FrameSource, MotionEstimation, StreamWriter, TransformQuantize
from .stats import psnr, psnr_planes
from .yuv import YUV

__all__ = [
    "FrameSource",
    "MotionEstimation",
    "TransformQuantize",
    "EntropyCoder",
    "StreamWriter",
    "encode_serial",
    "decode",
    "decode_frames",
    "open_clip",
    "read_y4m",
    "write_y4m",
    "load_frames",
    "FrameError",
    "psnr",
    "psnr_planes",
    "YUV",
]
