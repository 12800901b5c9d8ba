"""VaR, ES and their Monte Carlo standard errors from a loss estimator (exact or streaming).

Definitions, with losses ``L = -P&L`` and ``n`` scenarios:

* ``VaR_α`` = the ``ceil(n·α)``-th smallest loss.
* ``ES_α`` = ``VaR_α + Σ max(L - VaR_α, 0) / (n (1-α))`` (Rockafellar–Uryasev; equals the
  mean loss beyond VaR up to the ``ceil`` rounding).
* ``SE(VaR)`` = ``sqrt(α(1-α)/n) / f(VaR)``, ``f`` a Gaussian KDE (Silverman bandwidth).
* ``SE(ES)`` = ``std(max(L - VaR, 0)) / (sqrt(n) (1-α))``: it includes the noise of the VaR
  estimate, which the tail-only ``std(tail)/sqrt(n_tail)`` leaves out (~0.66× too small).
* 95% intervals are ``estimate ± z_0.975 · SE``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Protocol

__all__ = ["risk_result", "rank_of"]

Z95 = NormalDist().inv_cdf(0.975)


class LossEstimator(Protocol):  # what ExactLosses and StreamLosses provide
    mode: str
    n: int

    def quantile(self, k: int) -> tuple[float, int]: ...
    def tail_sums(self, v: float) -> tuple[float, float]: ...
    def density(self, v: float, h: float) -> float: ...
    def moments(self) -> Any: ...
    def info(self) -> dict[str, object]: ...


def rank_of(alpha: float, n: int) -> int:
    """1-based rank of the α-quantile, ``ceil(n·α)``, immune to ``n·α`` landing a hair above k."""
    return min(n, max(1, math.ceil(n * alpha - 1e-9)))


def _bandwidth(est: LossEstimator, n: int, std: float) -> float:
    """Silverman's rule: 0.9 · min(std, IQR/1.34) · n^(-1/5)."""
    iqr = est.quantile(rank_of(0.75, n))[0] - est.quantile(rank_of(0.25, n))[0]
    spread = min(std, iqr / 1.34) if iqr > 0 else std
    return 0.9 * spread * n**-0.2 if spread > 0 else 1e-12


def _level(est: LossEstimator, alpha: float, n: int, h: float) -> dict[str, Any]:
    tail = n * (1.0 - alpha)
    var, c = est.quantile(rank_of(alpha, n))
    s1, s2 = est.tail_sums(var)
    es = var + s1 / tail
    f = est.density(var, h)
    var_se = math.sqrt(alpha * (1.0 - alpha) / n) / f if f > 0 else math.inf
    mean_x = s1 / n
    es_se = math.sqrt(max(s2 / n - mean_x * mean_x, 0.0)) / (math.sqrt(n) * (1.0 - alpha))
    out: dict[str, Any] = {
        "confidence": alpha,
        "var": var,
        "var_se": var_se,
        "var_ci": [var - Z95 * var_se, var + Z95 * var_se],
        "es": es,
        "es_se": es_se,
        "es_ci": [es - Z95 * es_se, es + Z95 * es_se],
    }
    if est.mode == "stream":
        w = float(est.info()["bin_width"]) if c else 0.0
        out["var_error_bound"] = w
        out["es_error_bound"] = w * (1 + 2 * c) / tail
    return out


def risk_result(est: LossEstimator, levels: tuple[float, ...], batches: int) -> dict[str, Any]:
    """The Aggregator's result: VaR/ES per level with SEs and 95% CIs, and a P&L summary."""
    n = est.n
    if n == 0:
        raise ValueError("aggregate: no scenarios arrived; cannot estimate VaR")
    mom = est.moments()
    h = _bandwidth(est, n, mom.std)
    return {
        "mode": est.mode,
        "n": n,
        "batches": batches,
        "levels": [_level(est, a, n, h) for a in levels],
        # P&L = -loss, so its extremes swap
        "pnl": {"mean": -mom.mean, "std": mom.std, "min": -mom.max, "max": -mom.min, "n": n},
        "kde_bandwidth": h,
        **({"stream": est.info()} if est.mode == "stream" else {}),
    }
