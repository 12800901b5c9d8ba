"""Black–Scholes and the normal CDF of pipelines.var against independent answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.var import bs_price, norm_cdf


def bs_scalar(S: float, K: float, T: float, vol: float, r: float, call: bool) -> float:
    """Textbook Black–Scholes with math.erfc (an implementation independent of the pipeline's)."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    d1 = (math.log(S / K) + (r + 0.5 * vol * vol) * T) / (vol * math.sqrt(T))
    d2 = d1 - vol * math.sqrt(T)
    if call:
        return S * phi(d1) - K * math.exp(-r * T) * phi(d2)
    return K * math.exp(-r * T) * phi(-d2) - S * phi(-d1)


def test_norm_cdf_matches_math_erfc():
    x = np.linspace(-10.0, 10.0, 40001)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    # Cephes ndtr is good to ~6e-14 relative; measured max 2.9e-14 on this grid.
    assert np.max(np.abs(norm_cdf(x) - ref) / ref) < 5e-14
    deep = np.linspace(-37.0, -10.0, 5001)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in deep])
    # exp(-x²/2) magnifies the rounding of x² (x² ~ 700 -> ~1e-13 relative)
    assert np.max(np.abs(norm_cdf(deep) - ref) / ref) < 5e-13
    assert norm_cdf(np.array([-40.0, 0.0, 40.0])).tolist() == [0.0, 0.5, 1.0]


def test_hull_textbook_values():
    # Hull, Options, Futures and Other Derivatives, the worked BSM example: c = 4.76, p = 0.81
    call = float(bs_price(np, 42.0, 40.0, 0.5, 0.2, 0.1, 1))
    put = float(bs_price(np, 42.0, 40.0, 0.5, 0.2, 0.1, 0))
    assert abs(call - 4.76) < 0.005 and abs(put - 0.81) < 0.005


def test_put_call_parity_and_independent_formula():
    rng = np.random.default_rng(7)
    n = 2000
    S = rng.uniform(5, 300, n)
    K = rng.uniform(5, 300, n)
    T = rng.uniform(0.01, 3, n)
    vol = rng.uniform(0.05, 1.0, n)
    r = rng.uniform(-0.01, 0.1, n)
    c = bs_price(np, S, K, T, vol, r, np.ones(n, dtype=np.int32))
    p = bs_price(np, S, K, T, vol, r, np.zeros(n, dtype=np.int32))
    # parity C - P = S - K e^{-rT}: exact in exact arithmetic; prices ~1e2 -> rounding ~1e-13
    parity = c - p - (S - K * np.exp(-r * T))
    assert np.max(np.abs(parity) / np.maximum(S, K)) < 1e-12
    ref_c = np.array([bs_scalar(*a, True) for a in zip(S, K, T, vol, r, strict=True)])
    ref_p = np.array([bs_scalar(*a, False) for a in zip(S, K, T, vol, r, strict=True)])
    # both sides are ~1e-14-accurate CDFs times prices: agree to 1e-12 of the larger of S, K
    assert np.max(np.abs(c - ref_c) / np.maximum(S, K)) < 1e-12
    assert np.max(np.abs(p - ref_p) / np.maximum(S, K)) < 1e-12


def test_zero_spot_limits():
    # S -> 0: a call is worthless, a put is worth the discounted strike
    v = bs_price(np, np.array([0.0, 0.0]), 50.0, 2.0, 0.3, 0.05, np.array([1, 0]))
    assert v[0] == 0.0
    assert v[1] == pytest.approx(50.0 * math.exp(-0.1), rel=1e-15)
