"""Codec oracles: the decoder (reading only the stream) must reproduce the encoder's closed
loop bit for bit, for every GOP shape, encode order, search and frame size; quality and size
move the right way with the ``quality`` knob; the macroblock modes do what they are for."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from pipelines.video import YUV, decode, encode_serial, psnr
from pipelines.video.golomb import BitstreamError
from pipelines.video.motion import INTRA
from pipelines.video.syntax import unpack_frame, unpack_stream
from pipelines.video.synthetic import PanClip, pan_frames, sample_luma
from pipelines.video.yuv import crop_picture

# 96x64 = 6x4 macroblocks, 8 frames: small enough to keep the file well under 20 s.
FRAMES = pan_frames(8, 96, 64, shift=(1, 2))


def _frames_of(stream):
    header, payloads = unpack_stream(stream)
    w, h = header.coded
    return [unpack_frame(p, w, h) for p in payloads]


def _check_exact(stream, recon, frames, stats):
    decoded = decode(stream)
    # Exact: both sides run the same integer/float operations on the same data, in all three
    # planes (chroma predicts from reconstructed chroma, as luma does).
    assert len(decoded) == frames.n_frames
    for d, (a, b) in enumerate(zip(decoded, recon, strict=True)):
        b = crop_picture(b, frames.y.shape[2], frames.y.shape[1])
        for plane, x, y in zip("YUV", a, b, strict=True):
            assert np.array_equal(x, y), f"display frame {d} plane {plane} differs"
    # The stats' PSNR is of the encoder's reconstruction against the source, per plane too.
    expected = [psnr(frames.frame(d), r) for d, r in enumerate(decoded)]
    assert stats["psnr"] == pytest.approx(expected, abs=1e-12)
    for k, plane in zip("YUV", range(3), strict=True):
        expected = [psnr(frames.frame(d)[plane], r[plane]) for d, r in enumerate(decoded)]
        assert stats["psnr_by_plane"][k] == pytest.approx(expected, abs=1e-12)
    assert stats["bytes"] == len(stream)
    assert stats["feedback_left"] == 0
    return decoded


@pytest.mark.parametrize(
    "gop,bframes,search,order,quality",
    [(1, 0, "hierarchical", "anchors-first", 90), (8, 0, "full", "anchors-first", 20),
     (6, 2, "hierarchical", "min-bubble", 20), (4, 3, "hierarchical", "anchors-first", 90),
     (5, 1, "full", "min-bubble", 60)],
)
def test_decoder_equals_encoder_reconstruction(gop, bframes, search, order, quality):
    params = {"gop": gop, "bframes": bframes, "quality": quality, "search": search,
              "range": 2, "order": order, "me_replicas": 3}
    stream, recon, stats = encode_serial(FRAMES, params)
    _check_exact(stream, recon, FRAMES, stats)


@pytest.mark.parametrize("w,h", [(40, 24), (33, 17), (18, 50)])
def test_any_frame_size_is_padded_and_cropped(w, h):
    # 40x24 and 18x50 are not whole macroblocks; 33x17 has odd sides (chroma 17x9).
    frames = pan_frames(5, w, h, shift=(1, 1))
    assert frames.u.shape[1:] == ((h + 1) // 2, (w + 1) // 2)
    stream, recon, stats = encode_serial(frames, {"gop": 4, "bframes": 1, "quality": 80})
    header, _ = unpack_stream(stream)
    assert (header.width, header.height) == (w, h)
    assert header.coded == (-(-w // 16) * 16, -(-h // 16) * 16)
    assert recon[0].y.shape == (header.coded[1], header.coded[0])
    decoded = _check_exact(stream, recon, frames, stats)
    assert decoded[0].y.shape == (h, w) and decoded[0].u.shape == ((h + 1) // 2, (w + 1) // 2)
    # The padding repeats the edge: the padded area of an I frame decodes close to the last
    # displayed row/column (quality 80: within a few levels), not to grey.
    pad = recon[0].y[:h, w - 1 :].astype(int) - recon[0].y[:h, -1:]
    assert np.abs(pad).mean() < 4


def test_me_replicas_and_orders_give_streams_the_decoder_reads():
    params = {"gop": 6, "bframes": 2, "quality": 60, "range": 4}
    one = encode_serial(FRAMES, params, me_replicas=1)
    for replicas in (2, 3):
        many = encode_serial(FRAMES, params, me_replicas=replicas)
        assert many[0] == one[0]
        assert many[2]["feedback_left"] == 0
        # Each replica holds at most the two live anchors plus the one just sent.
        assert many[2]["feedback_peak"] <= 3
    ahead = encode_serial(FRAMES, {**params, "order": "min-bubble", "me_replicas": 4})
    header, _ = unpack_stream(ahead[0])
    assert header.anchors > 2  # a lookahead was chosen, and the decoder is told to hold more
    frames = _frames_of(ahead[0])
    assert [f.display for f in frames] != [f.display for f in _frames_of(one[0])]
    assert all(a.equals(b) for a, b in zip(decode(ahead[0]), ahead[1], strict=True))


def test_closed_loop_uses_reconstructed_anchors():
    # Predicting from the *source* instead would make the decoder drift: check the P frames'
    # reconstruction is consistent with decoding, and that the stream is not intra-only.
    stream, recon, stats = encode_serial(FRAMES, {"gop": 8, "bframes": 0, "quality": 20})
    assert stats["types"] == ["I"] + ["P"] * 7
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))
    assert any((f.modes != INTRA).any() for f in _frames_of(stream)[1:])


QUALITIES = [95, 60, 25, 10]


@pytest.fixture(scope="module")
def quality_sweep():
    params = {"gop": 8, "bframes": 2, "range": 2}
    return [encode_serial(FRAMES, {**params, "quality": q})[2] for q in QUALITIES]


def test_psnr_high_quality_and_monotone(quality_sweep):
    # At quality 95 the steps are 1..5 (I frames 0.8x, B 1.6x): errors of a fraction of a
    # grey level, measured ~44-46 dB luma here; 40 dB fails a drifting or intra-only loop.
    assert min(quality_sweep[0]["psnr_by_plane"]["Y"]) > 40.0
    means = [s["mean_psnr"] for s in quality_sweep]
    assert all(a > b for a, b in pairwise(means)), means


def test_bits_fall_with_quality(quality_sweep):
    totals = [s["bytes"] for s in quality_sweep]
    assert all(a > b for a, b in pairwise(totals)), totals
    for t in ("I", "P"):
        per_type = [s["mean_bits_by_type"][t] for s in quality_sweep]
        assert all(a > b for a, b in pairwise(per_type)), (t, per_type)


def test_inter_frames_smaller_than_intra(quality_sweep):
    # A moving camera: prediction removes most of the picture; only new edge content remains.
    for s in quality_sweep:
        bits = s["mean_bits_by_type"]
        assert bits["P"] < 0.5 * bits["I"] and bits["B"] < 0.5 * bits["I"], bits


def test_a_still_picture_is_skipped():
    # Identical frames: after the I frame nothing moves; P frames may refine the I frame's
    # coding error, B frames code no levels at all: their 24 macroblocks (skipped, or a mode
    # without vector differences) cost a few bits each; the frame header ~3 bytes.
    still = YUV(*(np.repeat(p[:1], 7, axis=0) for p in FRAMES))
    stream, recon, _ = encode_serial(still, {"gop": 12, "bframes": 2, "quality": 70})
    frames = _frames_of(stream)
    _, payloads = unpack_stream(stream)
    for f, p in zip(frames[1:], payloads[1:], strict=True):
        assert (f.mvs == 0).all() and (f.modes != INTRA).all()
        assert len(p) < 0.1 * len(payloads[0]), (f.type, len(p))
        if f.type == "B":
            assert not f.levels.any() and len(p) < 24
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))


def test_new_content_is_coded_intra():
    # A scene cut at frame 3 (a P frame): nothing predicts the new picture, so most of its
    # macroblocks are intra; the B frames before it still predict from the old scene.
    other = PanClip(1, 96, 64, (0, 0), origin=(400, 300)).frame(0)
    clip = YUV(*(np.concatenate([FRAMES[i][:3], np.repeat(other[i][None], 2, axis=0)])
                 for i in range(3)))
    stream, recon, _ = encode_serial(clip, {"gop": 12, "bframes": 2, "quality": 60})
    by_display = {f.display: f for f in _frames_of(stream)}
    assert by_display[3].type == "P" and (by_display[3].modes == INTRA).mean() > 0.5
    assert (by_display[1].modes != INTRA).mean() > 0.5
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))


def test_half_pel_vectors_are_used():
    # A pan by half a pixel per frame: frame t is the photo sampled at x + t/2 (the average of
    # the two neighbouring samples for odd t), so the P frame 3 frames on is 1.5 px away and
    # only a half-pel vector (3 half-pels) predicts it well.
    img = sample_luma()[200:264, 150:260].astype(np.int32)
    luma = np.stack([(img[:, t // 2 : t // 2 + 96] + img[:, (t + 1) // 2 : (t + 1) // 2 + 96]
                      + 1) >> 1 for t in range(7)]).astype(np.uint8)
    stream, recon, stats = encode_serial(luma, {"gop": 12, "bframes": 2, "quality": 90})
    p3 = next(f for f in _frames_of(stream) if f.display == 3)
    inner = p3.mvs[:, 0].reshape(4, 6, 2)[1:-1, 1:-1].reshape(-1, 2)  # away from the edges
    assert (inner == (0, 3)).mean() > 0.5, np.unique(inner, axis=0)
    assert all(a.equals(b) for a, b in zip(decode(stream), recon, strict=True))


def test_corrupt_streams_raise_clear_errors():
    stream, _, _ = encode_serial(FRAMES.head(3), {"gop": 3, "bframes": 0, "quality": 50})
    with pytest.raises(BitstreamError, match="truncated"):
        decode(stream[:-5])
    with pytest.raises(BitstreamError, match="SPV3"):
        decode(b"XXXX" + stream[4:])
    with pytest.raises(BitstreamError, match="luma-only"):
        decode(b"SPV1" + stream[4:])
    with pytest.raises(BitstreamError, match="version 2"):
        decode(b"SPV2" + stream[4:])
    with pytest.raises(BitstreamError, match="stray"):
        decode(stream + b"\0")
    # Flipped bytes inside a payload: a clear BitstreamError, or a picture (the arithmetic
    # code has no redundancy to notice every change) -- never another exception.
    rng = np.random.default_rng(0)
    for _ in range(20):
        bad = bytearray(stream)
        bad[int(rng.integers(40, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        try:
            decode(bytes(bad))
        except BitstreamError:
            pass
