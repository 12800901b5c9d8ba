"""The delta-normal closed form the VaR tests check Monte Carlo results against."""

from __future__ import annotations

from scipy.stats import norm


def assert_delta_normal(levels: list[dict], sigma: float, se_cap: float) -> None:
    """Each level's VaR/ES within 3 of its own SEs of a N(0, sigma²) loss's closed form.

    Losses normal with sd ``sigma``: VaR = sigma·z_a, ES = sigma·phi(z_a)/(1 - a).  The SEs are
    the estimators' own (KDE quantile SE; ES SE including the VaR noise); 3 SE is a two-sided
    99.7% band.  ``se_cap`` keeps the check from being empty: each SE under that share of its
    value.
    """
    for lv in levels:
        a = lv["confidence"]
        z = norm.ppf(a)
        var_true, es_true = sigma * z, sigma * norm.pdf(z) / (1 - a)
        assert abs(lv["var"] - var_true) < 3 * lv["var_se"], (a, lv["var"], var_true)
        assert abs(lv["es"] - es_true) < 3 * lv["es_se"], (a, lv["es"], es_true)
        assert lv["var_se"] < se_cap * var_true and lv["es_se"] < se_cap * es_true
