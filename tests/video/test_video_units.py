"""Unit oracles: Exp-Golomb codes, the DCT, quantisation tables, GOP order, motion search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from hypothesis import given
from hypothesis import strategies as st

from pipelines.video.golomb import BitReader, BitstreamError, BitWriter, se_code, ue_code
from pipelines.video.gop import encode_order, feedback_plan
from pipelines.video.motion import diamond_search, full_search
from pipelines.video.synthetic import pan_frames, sample_luma
from pipelines.video.transform import ZIGZAG, dct_blocks, dct_matrix, quant_table


def test_exp_golomb_known_codes():
    # Table 9-2 / 9-3 of H.264.
    assert [ue_code(v) for v in range(5)] == ["1", "010", "011", "00100", "00101"]
    assert [se_code(v) for v in (0, 1, -1, 2, -2, 3)] == [
        "1", "010", "011", "00100", "00101", "00110"
    ]


@given(st.lists(st.tuples(st.booleans(), st.integers(-(2**20), 2**20)), max_size=200))
def test_exp_golomb_round_trip(values):
    w = BitWriter()
    for signed, v in values:
        w.se(v) if signed else w.ue(abs(v))
    r = BitReader(w.getvalue())
    got = [(s, r.se() if s else r.ue()) for s, _ in values]
    assert got == [(s, v if s else abs(v)) for s, v in values]
    assert r.remaining() < 8  # only the byte padding is left


def test_exp_golomb_truncated():
    w = BitWriter()
    w.ue(1000)
    with pytest.raises(BitstreamError, match="truncated"):
        BitReader(w.getvalue()[:1]).ue()


def test_dct_matches_scipy_and_round_trips():
    rng = np.random.default_rng(1)
    blocks = rng.integers(-255, 256, size=(50, 8, 8)).astype(np.float64)
    c = dct_matrix()
    # Orthonormal to rounding: 8-term sums of products below 0.25 err by a few 1e-16.
    assert np.allclose(c @ c.T, np.eye(8), atol=1e-14, rtol=0)
    coeffs = dct_blocks(blocks)
    # Values are up to ~2000; float64 rounding in 64-term sums stays ~1e-12, so 1e-9 is loose
    # but still 1e6 x below any real (formula) error.
    ref = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(1, 2))
    assert np.max(np.abs(coeffs - ref)) < 1e-9
    assert np.max(np.abs(dct_blocks(coeffs, inverse=True) - blocks)) < 1e-9


def test_quant_tables_scale_like_libjpeg():
    # libjpeg: quality 50 is the Annex K table itself; 100 is all ones.
    assert quant_table(50)[0, 0] == 16 and quant_table(50)[7, 7] == 99
    assert (quant_table(100) == 1).all()
    assert quant_table(10)[0, 0] == 80  # scale 500%: (16*500+50)//100
    with pytest.raises(ValueError, match="quality"):
        quant_table(0)


def test_zigzag_is_jpeg_order():
    assert ZIGZAG[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert ZIGZAG[-3:].tolist() == [55, 62, 63]
    assert sorted(ZIGZAG.tolist()) == list(range(64))


def test_gop_encode_order():
    slots = encode_order(10, gop=6, bframes=2)
    assert [(s.display, s.type) for s in slots] == [
        (0, "I"), (3, "P"), (1, "B"), (2, "B"), (6, "I"), (4, "B"), (5, "B"), (9, "P"),
        (7, "B"), (8, "B"),
    ]
    by_display = {s.display: s for s in slots}
    assert by_display[4].ref_seqs == (1, 4) and by_display[4].ref_displays == (3, 6)
    assert by_display[9].ref_seqs == (4,)
    referenced, live_from = feedback_plan(10, 6, 2)
    assert referenced == {0, 1, 4, 7}
    assert live_from == [0, 0, 0, 0, 1, 1, 1, 4, 4, 4]
    with pytest.raises(ValueError, match="gop"):
        encode_order(10, gop=0, bframes=0)


def _interior(shape, shift, rng):
    """Macroblocks whose true match lies inside the reference frame."""
    h, w = shape
    dy, dx = shift
    rows, cols = h // 16, w // 16
    ok = [
        r * cols + c
        for r in range(rows)
        for c in range(cols)
        if 0 <= r * 16 + dy <= h - 16 and 0 <= c * 16 + dx <= w - 16
    ]
    assert max(abs(dy), abs(dx)) <= rng and ok
    return ok


@pytest.mark.parametrize("search", ["full", "diamond"])
@pytest.mark.parametrize("shift", [(3, -2), (-5, 4), (1, 7), (-6, -6)])
def test_motion_search_recovers_global_translation(search, shift):
    img = sample_luma()
    dy, dx = shift
    ref = img[200:264, 150:246]  # 96x64 of the photo (face and collar: textured)
    cur = img[200 + dy : 264 + dy, 150 + dx : 246 + dx]  # cur(y, x) == ref(y + dy, x + dx)
    fn = full_search if search == "full" else (lambda c, r, n: diamond_search(c, r, n))
    mvs, sads = fn(cur, ref, 8)
    inner = _interior(cur.shape, shift, 8)
    # Real content: the exact match (SAD 0) is unique, and the search must find it.
    assert (sads[inner] == 0).all()
    assert (mvs[inner] == shift).all(), mvs[inner]


def test_full_and_diamond_on_synthetic_pan():
    # The source's pan moves content by -shift per frame: frame t+1 at (y, x) is frame t at
    # (y + dy, x + dx).
    f = pan_frames(2, 96, 64, shift=(2, -3))
    inner = _interior(f.y[0].shape, (2, -3), 4)
    for fn in (full_search, diamond_search):
        mvs, _ = fn(f.y[1], f.y[0], 4)
        assert (mvs[inner] == (2, -3)).all()
