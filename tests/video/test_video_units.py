"""Unit oracles: Exp-Golomb codes, the arithmetic coder, the DCT, libjpeg's quantisation tables,
GOP orders, half-pel motion search and compensation, the vector predictor, the syntax."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.video.arith import Decoder, Encoder
from pipelines.video.golomb import BitReader, BitstreamError, BitWriter, se_code, ue_code
from pipelines.video.gop import anchors_held, encode_order, feedback_plan
from pipelines.video.mbcode import mb_directions
from pipelines.video.motion import LIMIT, Reference, compensate, full_search, search
from pipelines.video.syntax import CodedFrame, MVField, pack_frame, unpack_frame
from pipelines.video.synthetic import pan_frames, sample_luma
from pipelines.video.transform import (
    _JPEG_CHROMA,
    _JPEG_LUMA,
    ZIGZAG,
    dct_blocks,
    dct_matrix,
    quant_table,
)
from pipelines.video.yuv import YUV, neutral_chroma


def test_exp_golomb_known_codes():
    # Table 9-2 / 9-3 of H.264.
    assert [ue_code(v) for v in range(5)] == ["1", "010", "011", "00100", "00101"]
    assert [se_code(v) for v in (0, 1, -1, 2, -2, 3)] == [
        "1", "010", "011", "00100", "00101", "00110"
    ]


@settings(max_examples=40, deadline=None)
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


_OPS = st.lists(st.one_of(
    st.tuples(st.just("bit"), st.integers(0, 7), st.integers(0, 1)),
    st.tuples(st.just("bypass"), st.integers(0, 255), st.integers(1, 8)),
    st.tuples(st.just("eg"), st.integers(0, 5000), st.integers(0, 3)),
), max_size=400)


@settings(max_examples=40, deadline=None)
@given(_OPS, st.floats(0.0, 1.0))
def test_arithmetic_coder_round_trip(ops, skew):
    # Skewed bins exercise long runs of one symbol (carry propagation in the encoder).
    ops = [(k, c, int(b if skew < 0.5 else 1)) if k == "bit" else (k, c, b) for k, c, b in ops]
    enc = Encoder(8)
    code = {"bit": enc.bit, "bypass": enc.bypass, "eg": enc.exp_golomb}
    for kind, a, b in ops:
        code[kind](a, b)
    data = enc.finish()
    dec = Decoder(data, 8)
    for kind, a, b in ops:
        if kind == "bit":
            assert dec.bit(a) == b
        elif kind == "bypass":
            assert dec.bypass(b) == a & ((1 << b) - 1)
        else:
            assert dec.exp_golomb(b) == a


def test_arithmetic_coder_compresses_a_skewed_source():
    # 10000 bins with P(1) = 0.05: entropy 0.286 bit/bin = 358 bytes; adaptive coding costs a
    # little more (the probability has to be learnt); a coder that did not adapt would need
    # 1250 bytes.
    rng = np.random.default_rng(3)
    bits = (rng.random(10000) < 0.05).astype(int).tolist()
    enc = Encoder(1)
    for b in bits:
        enc.bit(0, b)
    assert 350 <= len(enc.finish()) < 420


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


def _libjpeg(base: np.ndarray, quality: int) -> list[int]:
    """jcparam.c, transcribed: jpeg_quality_scaling, then jpeg_add_quant_table with
    force_baseline = TRUE (C integer arithmetic on non-negative values)."""
    if quality <= 0:
        quality = 1
    if quality > 100:
        quality = 100
    scale = 5000 // quality if quality < 50 else 200 - quality * 2
    out = []
    for v in base.astype(int).ravel().tolist():
        temp = (v * scale + 50) // 100
        temp = 1 if temp <= 0 else 32767 if temp > 32767 else temp
        out.append(min(temp, 255))
    return out


def test_quant_tables_are_libjpegs_for_every_quality():
    for q in range(1, 101):
        assert quant_table(q).astype(int).ravel().tolist() == _libjpeg(_JPEG_LUMA, q), q
        assert quant_table(q, chroma=True).astype(int).ravel().tolist() == _libjpeg(
            _JPEG_CHROMA, q), q
    # The examples, and the number of qualities where the float scale 5000 / q (the
    # old rule) gives other tables: 34 for luma, 22 for chroma, all below 50.
    assert quant_table(30, chroma=True)[0, 4] == 164 and quant_table(41)[0, 0] == 19

    def float_rule(base, q):
        scale = 5000 / q if q < 50 else 200 - 2 * q
        return np.clip(np.floor((base * scale + 50) / 100), 1, 255).astype(int).ravel().tolist()

    for base, expected in ((_JPEG_LUMA, 34), (_JPEG_CHROMA, 22)):
        differ = [q for q in range(1, 101) if float_rule(base, q) != _libjpeg(base, q)]
        assert len(differ) == expected and max(differ) < 50
    with pytest.raises(ValueError, match="quality"):
        quant_table(0)


def test_zigzag_is_jpeg_order():
    assert ZIGZAG[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert ZIGZAG[-3:].tolist() == [55, 62, 63]
    assert sorted(ZIGZAG.tolist()) == list(range(64))


def test_gop_encode_orders():
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
    ahead = encode_order(10, gop=6, bframes=2, lookahead=1)
    assert [f"{s.type}{s.display}" for s in ahead] == [
        "I0", "P3", "I6", "B1", "B2", "P9", "B4", "B5", "B7", "B8"]
    with pytest.raises(ValueError, match="gop"):
        encode_order(10, gop=0, bframes=0)


@pytest.mark.parametrize("lookahead", [0, 1, 2, 3])
@pytest.mark.parametrize("n,gop,bframes", [(25, 12, 2), (17, 5, 3), (9, 1, 0), (14, 6, 1)])
def test_every_order_is_decodable_with_its_anchor_window(n, gop, bframes, lookahead):
    slots = encode_order(n, gop, bframes, lookahead)
    assert sorted(s.display for s in slots) == list(range(n))
    window: list[int] = []  # what a decoder holding anchors_held() anchors keeps
    for s in slots:
        assert all(r in window for r in s.ref_displays), (s, window)
        assert all(slots[q].display == r for q, r in zip(s.ref_seqs, s.ref_displays,
                                                          strict=True))
        if s.type != "B":
            window = (window + [s.display])[-anchors_held(lookahead):]
            assert [x for x in s.ref_displays if x > s.display] == []


def _interior(shape, shift_px, rng):
    """Macroblocks whose true match lies inside the reference frame."""
    h, w = shape
    dy, dx = shift_px
    cols = w // 16
    ok = [r * cols + c for r in range(h // 16) for c in range(cols)
          if 0 <= r * 16 + dy <= h - 16 and 0 <= c * 16 + dx <= w - 16]
    assert max(abs(dy), abs(dx)) <= rng and ok
    return ok


def _picture(y):
    return neutral_chroma(np.ascontiguousarray(y))


@pytest.mark.parametrize("method", ["hierarchical", "full"])
@pytest.mark.parametrize("shift", [(3, -2), (-5, 4), (1, 7), (-6, -6), (11, -14)])
def test_search_recovers_whole_pel_translation(method, shift):
    img = sample_luma()
    dy, dx = shift
    ref = img[200:264, 150:246]  # 96x64 of the photo (face and collar: textured)
    cur = img[200 + dy : 264 + dy, 150 + dx : 246 + dx]  # cur(y, x) == ref(y + dy, x + dx)
    mvs, cost = search(cur, Reference(_picture(ref)), 16, lam=0.0, method=method)
    inner = _interior(cur.shape, shift, 16)
    # Real content: the exact match (SAD 0) is unique, and the search must find it.
    assert (cost[inner] == 0).all()
    assert (mvs[inner] == (2 * dy, 2 * dx)).all(), mvs[inner]


@pytest.mark.parametrize("half", [(0, 1), (1, 0), (1, 1), (-1, 1)])
def test_search_finds_half_pel_motion(half):
    # The current picture *is* the reference sampled at a half-pel offset (MPEG-2's bilinear
    # rule, computed here from the definition), so the half-pel vector predicts it exactly.
    img = sample_luma().astype(np.int32)
    ay, ax = 4, 6  # the whole-pel part of the vector, then half[] half-pels more
    y0, x0 = 180, 140
    ref = img[y0 : y0 + 64, x0 : x0 + 96]
    hy, hx = half[0] & 1, half[1] & 1  # half-pel fraction in each direction
    by, bx = y0 + ay + (half[0] >> 1), x0 + ax + (half[1] >> 1)
    a = img[by : by + 64, bx : bx + 96]
    b = img[by : by + 64, bx + hx : bx + hx + 96]
    c = img[by + hy : by + hy + 64, bx : bx + 96]
    d = img[by + hy : by + hy + 64, bx + hx : bx + hx + 96]
    cur = ((a + b + c + d + 2) >> 2) if hy and hx else ((a + (b if hx else c) + 1) >> 1)
    want = (2 * ay + half[0], 2 * ax + half[1])
    mvs, cost = search(cur.astype(np.uint8), Reference(_picture(ref.astype(np.uint8))), 16,
                       lam=0.0)
    inner = _interior(cur.shape, (ay + 1, ax + 1), 16)
    assert (mvs[inner] == want).all(), (want, np.unique(mvs[inner], axis=0))
    assert (cost[inner] == 0).all()


def test_full_search_of_blocks_inside_the_reference():
    f = pan_frames(2, 96, 64, shift=(2, -3))
    inner = _interior(f.y[0].shape, (2, -3), 4)
    mvs, sads = full_search(f.y[1], f.y[0], 4)
    assert (mvs[inner] == (2, -3)).all() and (sads[inner] == 0).all()


def test_vectors_beyond_the_picture_use_its_edge():
    # Unrestricted vectors: samples outside the coded picture are the nearest edge sample.
    rng = np.random.default_rng(4)
    pic = YUV(rng.integers(0, 256, (32, 48), np.uint8), rng.integers(0, 256, (16, 24), np.uint8),
              rng.integers(0, 256, (16, 24), np.uint8))
    ref = Reference(pic)
    mvs = np.zeros((6, 2, 2), np.int32)
    mvs[0, 0] = (-2 * 20, -2 * 25)  # block 0 displaced (-20, -25): almost all outside
    pred = compensate([ref], mvs, np.zeros(6, np.int8))
    padded = np.pad(pic.y, LIMIT, mode="edge")
    assert np.array_equal(pred.y[:16, :16], padded[LIMIT - 20 : LIMIT - 4, LIMIT - 25 : LIMIT - 9])
    cpad = np.pad(pic.u, LIMIT // 2, mode="edge")  # chroma moves by (-10, -12.5)
    h = LIMIT // 2
    exp = (cpad[h - 10 : h - 2, h - 13 : h - 5].astype(int)
           + cpad[h - 10 : h - 2, h - 12 : h - 4] + 1) >> 1
    assert np.array_equal(pred.u[:8, :8], exp)
    mvs[0, 0] = (-2 * (LIMIT + 1), 0)
    with pytest.raises(ValueError, match="margin"):
        compensate([ref], mvs, np.zeros(6, np.int8))


def test_vector_predictor_is_the_median_of_left_upper_upper_right():
    f = MVField(2, 3)
    vecs = {0: (1, 10), 1: (5, -2), 2: (-3, 4)}
    for m, v in vecs.items():
        f.set(m, 0, v)
    assert f.predict(0, 0) == (0, 0)
    assert f.predict(1, 0) == (1, 10)  # first row: the left neighbour
    # (1, 0): no left, so A = B = (1, 10); C = (5, -2) -> median (1, 10)
    assert f.predict(3, 0) == (1, 10)
    f.set(3, 0, (7, 7))
    # (1, 1): A (7, 7), B (5, -2), C (-3, 4) -> component medians (5, 4)
    assert f.predict(4, 0) == (5, 4)
    f.set(4, 0, (0, 0))
    # (1, 2), last column: C is the upper-left (5, -2); A (0, 0), B (-3, 4) -> (0, 0)
    assert f.predict(5, 0) == (0, 0)


@pytest.mark.parametrize("ftype", ["I", "P", "B"])
def test_syntax_round_trip_of_random_frames(ftype):
    rng = np.random.default_rng(ord(ftype))
    w, h = 64, 48
    n_mb, n_blocks = 12, 48 + 2 * 12
    for _ in range(6):
        modes = {"I": np.full(n_mb, 3), "P": rng.choice([0, 3], n_mb),
                 "B": rng.integers(0, 4, n_mb)}[ftype].astype(np.int8)
        mvs = rng.integers(-40, 41, (n_mb, 2, 2)).astype(np.int32)
        levels = np.zeros((n_blocks, 64), np.int32)
        dense = rng.random((n_blocks, 64)) < rng.choice([0.02, 0.3, 1.0])
        levels[dense] = rng.integers(-300, 301, dense.sum())
        levels[rng.random(n_blocks) < 0.4] = 0
        f = CodedFrame(ftype, 3, (0, 6)[: "IPB".index(ftype)], 123, mvs, modes, levels)
        g = unpack_frame(pack_frame(f, w, h), w, h)
        assert (g.type, g.display, g.ref_displays, g.scale) == (ftype, 3, f.ref_displays, 123)
        assert np.array_equal(g.levels, levels)
        if ftype != "I":
            assert np.array_equal(g.modes, modes)
        for m in range(n_mb):
            for d in mb_directions(ftype, int(modes[m])):
                assert tuple(g.mvs[m, d]) == tuple(mvs[m, d])


def test_syntax_rejects_garbage():
    f = CodedFrame("P", 1, (0,), 50, np.zeros((12, 2, 2), np.int32), np.zeros(12, np.int8),
                   np.ones((72, 64), np.int32))
    data = pack_frame(f, 64, 48)
    # A cut payload reads zeros past its end (as the coder's own stripped flush does): it
    # cannot decode to the same levels, and fails with a BitstreamError at worst.
    try:
        g = unpack_frame(data[: len(data) // 2], 64, 48)
        assert not np.array_equal(g.levels, f.levels)
    except BitstreamError:
        pass
    with pytest.raises(BitstreamError, match="frame type"):
        unpack_frame(b"\x00\x20" + data[2:], 64, 48)


def test_schedule_model_closed_forms():
    from pipelines.video.schedule import Costs, simulate_order

    # One ME replica, a free transform and no latency: nothing ever waits, the makespan is the
    # sum of the ME times (4 GOPs of I + 3 P + 8 B).
    c = Costs(me=(0.0, 1.0, 2.0), transform=(0.0, 0.0, 0.0), latency=0.0)
    s = simulate_order(49, 12, 2, 0, 1, c)
    assert s.makespan == pytest.approx(4 * 3 * 1.0 + 4 * 8 * 2.0 + 0) and s.bubble == 0
    # Anchors-first with many replicas: every P frame waits for the previous anchor's
    # transform, so the chain I, P, P, P ... of ME + transform + latency bounds the makespan.
    c = Costs(me=(0.0, 1.0, 1.0), transform=(0.5, 0.5, 0.5), latency=0.25)
    chain = simulate_order(13, 12, 2, 0, 8, c)
    assert chain.makespan >= 4 * (1.0 + 0.5 + 0.25)


def test_min_bubble_order_beats_anchors_first_with_replicas():
    from pipelines.video.schedule import best_lookahead, simulate_order

    for replicas in (2, 3, 4):
        k = best_lookahead(12, 2, replicas)
        first = simulate_order(49, 12, 2, 0, replicas)
        best = simulate_order(49, 12, 2, k, replicas)
        assert k >= 1 and best.makespan < first.makespan and best.bubble < first.bubble
    assert simulate_order(49, 12, 2, best_lookahead(12, 2, 1), 1).makespan <= simulate_order(
        49, 12, 2, 0, 1).makespan
