"""Bias-corrected distance correlation: independence, dependence, exact cases, a loop oracle."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.split_learning import dcor2_biased, dcor2_u


def _omega_loops(x, y):
    """Unbiased dCov² by the Huo & Székely (2016) formula, written with plain sums (oracle)."""
    n = len(x)
    a = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    b = np.sqrt(((y[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    ab = sum(a[i, j] * b[i, j] for i in range(n) for j in range(n) if i != j)
    ai, bi = a.sum(1), b.sum(1)
    return (ab - 2 / (n - 2) * (ai * bi).sum() + a.sum() * b.sum() / ((n - 1) * (n - 2))) / (
        n * (n - 3))


def test_matches_loop_formula():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    y[:, 0] += x[:, 0] ** 2
    ref = _omega_loops(x, y) / np.sqrt(_omega_loops(x, x) * _omega_loops(y, y))
    assert dcor2_u(x, y) == pytest.approx(ref, rel=1e-10)


def test_independent_high_dimensional_near_zero():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((500, 64)), rng.standard_normal((500, 32))
    # unbiased: sd of the estimate under independence is ~1/n-ish (~0.003 here); 0.05 is >10 sd
    assert abs(dcor2_u(x, y)) < 0.05
    # while the plain estimator reports strong "dependence" (DESIGN.md: dCor ~0.52, dCor² ~0.27)
    assert dcor2_biased(x, y) > 0.2


def test_dependent_is_large():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 64))
    noise = 0.1 * rng.standard_normal((500, 32))
    y = np.tanh(x[:, :32] @ rng.standard_normal((32, 32)) / 4) + noise
    assert dcor2_u(x, y) > 0.3


def test_similarity_transform_gives_one():
    # distances of 3 Q x + c are 3x those of x, so U-centred matrices are proportional: dCor² = 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 5))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert dcor2_u(x, 3 * x @ q + 7) == pytest.approx(1.0, abs=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        dcor2_u(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        dcor2_u(np.zeros((3, 2)), np.zeros((3, 2)))
    assert dcor2_u(np.ones((6, 2)), np.arange(6.0)[:, None]) == 0.0
