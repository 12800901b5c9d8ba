"""jobs/video.toml under real MPI: the stream file the pipeline writes decodes, with the
independent decoder, to exactly the encoder's own reconstruction (the serial encoder's), with two
motion-estimation replicas, merged in order or not."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.video import decode, encode_serial, psnr
from pipelines.video.synthetic import pan_frames
from tests.builtin_jobs import run_job

# A short clip that still has two GOPs (I B B P ... I ...) so B frames reference anchors that
# another ME replica may be estimating at the same time.
N, W, H, SHIFT, GOP, BFRAMES, QUALITY = 15, 96, 64, (1, 2), 8, 2, 60


@pytest.mark.parametrize("ordered", [True, False])
def test_mpi_stream_decodes_to_the_encoders_reconstruction(tmp_path, ordered):
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
        f"stages.transform.params.quality={QUALITY}",
        "stages.sink.params.out=\"clip.spv\"",
    )
    stats = run["meta"]["result"]
    data = (tmp_path / "clip.spv").read_bytes()  # the sink writes `out` relative to its cwd
    frames = pan_frames(N, W, H, SHIFT)
    stream, recon, serial_stats = encode_serial(
        frames, {"gop": GOP, "bframes": BFRAMES, "quality": QUALITY}, me_replicas=2)
    decoded = decode(data)
    assert len(decoded) == N
    # Closed loop: motion estimation predicts from the *reconstructed* anchors it got over the
    # feedback edge, so decoder and encoder must agree bit for bit (integers: exact).
    # All three planes: chroma is predicted from reconstructed chroma too.
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
                               [psnr(frames.frame(d), decoded[d]) for d in range(N)],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["psnr_by_plane"]["U"],
                               [psnr(frames.u[d], decoded[d].u) for d in range(N)],
                               rtol=0, atol=1e-12)
    assert stats["psnr"] == serial_stats["psnr"]
    assert serial_stats["feedback_left"] == 0
