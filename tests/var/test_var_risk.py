"""Monte Carlo VaR/ES of linear portfolios against the delta-normal closed form.

With arithmetic returns a linear portfolio's P&L is wᵀr, r ~ N(0, hΣ): exactly normal with
σ² = h·wᵀΣw, so VaR_α = z_α σ and ES_α = φ(z_α)/(1-α) σ with no approximation.  The oracle is
computed here from the TOML text (tomllib + scipy), independently of the pipeline's parser.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from pipelines.var import run_serial

DATA = Path(__file__).resolve().parents[2] / "pipelines" / "var" / "data"

# A second portfolio unlike the first: covariance form, 5-day horizon, a long-short pair with
# negative correlation, and a short FX leg.
HEDGED = """
[model]
horizon_days = 5
returns = "arithmetic"

[[factors]]
name = "X"
spot = 75.0

[[factors]]
name = "Y"
spot = 20.0

[[factors]]
name = "FX"
spot = 0.9

[covariance]
matrix = [[4.0e-4, -1.2e-4, 1.0e-5], [-1.2e-4, 2.5e-4, 0.0], [1.0e-5, 0.0, 3.6e-5]]

[[positions]]
kind = "linear"
factor = "X"
quantity = 4000

[[positions]]
kind = "linear"
factor = "Y"
quantity = -6000

[[positions]]
kind = "linear"
factor = "FX"
quantity = -250000
"""


def delta_normal_sigma(doc: dict) -> float:
    """σ of the horizon P&L wᵀr from the raw TOML document."""
    names = [f["name"] for f in doc["factors"]]
    spots = np.array([f["spot"] for f in doc["factors"]])
    if "covariance" in doc:
        cov = np.array(doc["covariance"]["matrix"])
    else:
        vol = np.array([f["daily_vol"] for f in doc["factors"]])
        cov = np.array(doc["correlation"]["matrix"]) * np.outer(vol, vol)
    w = np.zeros(len(names))
    for p in doc["positions"]:
        i = names.index(p["factor"])
        w[i] += p["quantity"] * spots[i]
    return math.sqrt(doc["model"]["horizon_days"] * w @ cov @ w)


@pytest.fixture(scope="module", params=["linear", "hedged"])
def case(request, tmp_path_factory):
    if request.param == "linear":
        path = DATA / "linear.toml"
    else:
        path = tmp_path_factory.mktemp("pf") / "hedged.toml"
        path.write_text(HEDGED)
    doc = tomllib.loads(path.read_text())
    params = {
        "portfolio": str(path),
        "n_scenarios": 200_000,
        "batch_size": 20_000,
        "seed": 2024,
        "mode": "exact",
        "confidence": [0.99, 0.975],
    }
    return run_serial(params), delta_normal_sigma(doc)


@pytest.mark.parametrize("level", [0, 1])
def test_var_es_within_three_standard_errors(case, level):
    result, sigma = case
    lv = result["levels"][level]
    a = lv["confidence"]
    z = norm.ppf(a)
    var_exact = z * sigma
    es_exact = norm.pdf(z) / (1 - a) * sigma
    # 3 reported Monte Carlo SEs: the SE formulas match the repeated-run spread (DESIGN.md)
    assert abs(lv["var"] - var_exact) < 3 * lv["var_se"], (lv["var"], var_exact, lv["var_se"])
    assert abs(lv["es"] - es_exact) < 3 * lv["es_se"], (lv["es"], es_exact, lv["es_se"])
    assert lv["var_ci"][0] < lv["var"] < lv["var_ci"][1]


@pytest.mark.parametrize("level", [0, 1])
def test_standard_errors_match_normal_theory(case, level):
    result, sigma = case
    lv = result["levels"][level]
    a, n = lv["confidence"], result["n"]
    z = norm.ppf(a)
    # For a normal P&L the VaR SE is sqrt(a(1-a)/n) / (φ(z)/σ); the KDE density is within a
    # few percent of φ(z)/σ at n = 2e5 (bandwidth bias + noise), so allow 10%.
    var_se = math.sqrt(a * (1 - a) / n) * sigma / norm.pdf(z)
    assert lv["var_se"] == pytest.approx(var_se, rel=0.10)
    # ES SE: std of X = max(Z - z, 0) for a standard normal Z, in closed form:
    # E[X] = φ(z) - z(1-Φ(z)),  E[X²] = (1+z²)(1-Φ(z)) - zφ(z)
    m1 = norm.pdf(z) - z * norm.sf(z)
    m2 = (1 + z * z) * norm.sf(z) - z * norm.pdf(z)
    es_se = sigma * math.sqrt(m2 - m1 * m1) / (math.sqrt(n) * (1 - a))
    assert lv["es_se"] == pytest.approx(es_se, rel=0.10)


def test_pnl_summary_matches_normal(case):
    result, sigma = case
    p = result["pnl"]
    n = p["n"]
    # mean of n normals: SE σ/sqrt(n); std: SE σ/sqrt(2n); 4 SE bounds
    assert abs(p["mean"]) < 4 * sigma / math.sqrt(n)
    assert abs(p["std"] - sigma) < 4 * sigma / math.sqrt(2 * n)
    assert p["min"] < -4 * sigma and p["max"] > 4 * sigma  # 2e5 normals reach past ±4σ
