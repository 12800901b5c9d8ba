"""jobs/video.toml under real MPI: the stream file the pipeline writes decodes, with the
independent decoder, to exactly the encoder's own reconstruction (the serial encoder's), with two
motion-estimation replicas, merged in order or not; a 1080p .y4m goes through the job and back
through the decode command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipelines.video import YUV, decode, encode_serial, psnr, read_y4m, write_y4m
from pipelines.video.synthetic import PanClip
from tests.builtin_jobs import run_job
from tests.mpiutil import ROOT

# A short clip that still has two GOPs (I B B P ... I ...) so B frames reference anchors that
# another ME replica may be estimating at the same time.
N, W, H, SHIFT, GOP, BFRAMES, QUALITY = 11, 96, 64, (1, 2), 8, 2, 60


def _decode_command(stream, out):
    return subprocess.run([sys.executable, "-m", "pipelines.video.decode", str(stream), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ordered,order", [(True, "anchors-first"), (False, "min-bubble")])
def test_mpi_stream_decodes_to_the_encoders_reconstruction(tmp_path, ordered, order):
    run = run_job(
        "video", tmp_path,
        f"pipeline.ordered={str(ordered).lower()}",
        "stages.me.replicas=2",
        "stages.me.device=\"cpu\"",
        "stages.transform.device=\"cpu\"",
        f"stages.source.params.n_frames={N}",
        f"stages.source.params.width={W}",
        f"stages.source.params.height={H}",
        f"stages.source.params.shift=[{SHIFT[0]}, {SHIFT[1]}]",
        f"stages.source.params.gop={GOP}",
        f"stages.source.params.bframes={BFRAMES}",
        f"stages.source.params.quality={QUALITY}",
        f"stages.source.params.order=\"{order}\"",
        "stages.sink.params.out=\"clip.spv\"",
    )
    stats = run["meta"]["result"]
    data = (tmp_path / "clip.spv").read_bytes()  # the sink writes `out` relative to its cwd
    clip = PanClip(N, W, H, SHIFT)
    stream, recon, serial_stats = encode_serial(
        clip, {"gop": GOP, "bframes": BFRAMES, "quality": QUALITY, "order": order,
               "me_replicas": 2}, me_replicas=2)
    decoded = decode(data)
    assert len(decoded) == N
    # Closed loop: motion estimation predicts from the *reconstructed* anchors it got over the
    # feedback edge, so decoder and encoder must agree bit for bit (integers: exact), in all
    # three planes.
    for d in range(N):
        for plane in range(3):
            np.testing.assert_array_equal(decoded[d][plane], recon[d][plane],
                                          err_msg=f"display frame {d} plane {'YUV'[plane]}")
    # Every stage is deterministic: the whole stream is the serial encoder's, byte for byte.
    assert data == stream
    assert stats["bytes"] == len(data) and stats["frames"] == N
    assert stats["types"].count("I") == 2 and stats["types"].count("B") > 0
    # the reported per-frame PSNR is the decoded picture's, against the source frame
    np.testing.assert_allclose(stats["psnr"],
                               [psnr(clip.frame(d), decoded[d]) for d in range(N)],
                               rtol=0, atol=1e-12)
    assert stats["psnr"] == serial_stats["psnr"]
    assert serial_stats["feedback_left"] == 0


def _hd_clip(n: int) -> YUV:
    # 1920x1080 (68 macroblock rows of which the last is half padding): a 480x270 pan over
    # the photo, every sample repeated 4x4 (chroma likewise).
    pan = PanClip(n, 480, 270, (1, 3))
    pics = [pan.frame(t) for t in range(n)]
    return YUV(*(np.stack([np.repeat(np.repeat(p[i], 4, 0), 4, 1) for p in pics])
                 for i in range(3)))


def test_1080p_y4m_through_the_job_and_the_decode_command(tmp_path):
    clip = _hd_clip(3)
    src = tmp_path / "hd.y4m"
    write_y4m(src, clip, fps=(25, 1), color_range="FULL")
    run = run_job("video", tmp_path, f"stages.source.params.source=\"{src}\"",
                  "stages.source.params.n_frames=0", "stages.source.params.bframes=1",
                  "stages.source.params.quality=20", 'stages.me.device="cpu"',
                  'stages.transform.device="cpu"', "stages.sink.params.out=\"hd.spv\"",
                  timeout=240)
    stats = run["meta"]["result"]
    assert (stats["width"], stats["height"], stats["frames"]) == (1920, 1080, 3)
    assert stats["types"] == ["I", "B", "P"] and stats["color_range"] == "FULL"
    done = _decode_command(tmp_path / "hd.spv", tmp_path / "back.y4m")
    assert done.returncode == 0, done.stderr
    header = (tmp_path / "back.y4m").read_bytes().split(b"\n", 1)[0]
    assert header == b"YUV4MPEG2 W1920 H1080 F25:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL"
    back = read_y4m(tmp_path / "back.y4m")
    # The decoder's pictures are the encoder's reconstructions: their PSNR against the source
    # is the one the encoder reported, to rounding.
    got = [psnr(clip.frame(d), back.frame(d)) for d in range(3)]
    np.testing.assert_allclose(got, stats["psnr"], rtol=0, atol=1e-9)
    assert min(stats["psnr_by_plane"]["Y"]) > 30  # a real picture, not grey
    ffmpeg = _ffmpeg()
    if ffmpeg is not None:  # ffmpeg reads what the decode command wrote, sample for sample
        raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(tmp_path / "back.y4m"), "-f",
                              "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True,
                             timeout=120, check=True).stdout
        assert raw == b"".join(p.tobytes() for d in range(3) for p in back.frame(d))


def _ffmpeg():
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - the optional bench extra is not installed
        return shutil.which("ffmpeg")


def test_decode_command_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.spv"
    bad.write_bytes(b"SPV3" + bytes(10))
    for stream in (bad, tmp_path / "missing.spv"):
        done = _decode_command(stream, tmp_path / "o.y4m")
        assert done.returncode == 1
        assert done.stderr.startswith("decode: error: ") and done.stderr.count("\n") == 1, (
            done.stderr)
