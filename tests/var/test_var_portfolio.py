"""Portfolio files and stage params: good files load right, bad ones name the field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipelines.var import (
    Aggregator,
    ParamError,
    PortfolioError,
    ScenarioGenerator,
    Valuation,
    load_portfolio,
    run_serial,
)
from streampipe.stage import Context

GOOD = """
[model]
horizon_days = 10
confidence = [0.99]

[[factors]]
name = "A"
spot = 100.0
daily_vol = 0.02

[[factors]]
name = "B"
spot = 50.0
daily_vol = 0.01

[correlation]
matrix = [[1.0, 0.5], [0.5, 1.0]]

[[positions]]
kind = "linear"
factor = "A"
quantity = 10

[[positions]]
kind = "option"
factor = "B"
type = "put"
quantity = 3
strike = 45.0
expiry = 0.5
vol = 0.2
rate = 0.01
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pf.toml"
    p.write_text(text)
    return p


def test_good_file_loads(tmp_path):
    pf = load_portfolio(write(tmp_path, GOOD))
    assert pf.factors == ("A", "B")
    # daily covariance = corr * outer(vol, vol)
    np.testing.assert_array_equal(
        pf.cov_daily, [[0.02**2, 0.5 * 0.02 * 0.01], [0.5 * 0.02 * 0.01, 0.01**2]]
    )
    assert pf.opt_factor.tolist() == [1] and pf.opt_call.tolist() == [0]
    assert pf.horizon_days == 10.0 and pf.confidence == (0.99,)


def test_shipped_portfolios_load():
    full = load_portfolio("pipelines/var/data/portfolio.toml")
    assert len(full.opt_factor) >= 3 and len(full.lin_factor) >= 3
    lin = load_portfolio("linear.toml")  # resolved under pipelines/var/data/
    assert len(lin.opt_factor) == 0 and lin.returns == "arithmetic"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("vol = 0.2", "vol = -0.2", "positions[1].vol: must be > 0, got -0.2"),
        ("strike = 45.0\n", "", "positions[1].strike: missing"),
        ("daily_vol = 0.01", "daily_vol = 0", "factors[1].daily_vol: must be > 0"),
        ("[0.5, 1.0]]", "[0.5, 1.0], [0.0, 0.0]]", "correlation.matrix: must be a 2x2"),
        ("[[1.0, 0.5], [0.5, 1.0]]", "[[1.0, 0.5], [0.4, 1.0]]", "correlation.matrix[0][1]"),
        ('type = "put"', 'type = "straddle"', "positions[1].type: must be 'call' or 'put'"),
        ('factor = "B"', 'factor = "C"', "positions[1].factor: unknown factor 'C'"),
        ("quantity = 10", "quantitty = 10", "positions[0].quantitty: unknown key"),
        ("confidence = [0.99]", "confidence = [99]", "model.confidence[0]"),
        ('kind = "linear"', 'kind = "swap"', "positions[0].kind"),
    ],
)
def test_bad_field_is_named(tmp_path, old, new, field):
    assert old in GOOD
    with pytest.raises(PortfolioError, match=re.escape(field)):
        load_portfolio(write(tmp_path, GOOD.replace(old, new, 1)))


def test_not_positive_definite(tmp_path):
    # three factors with pairwise correlations 0.9, 0.9, -0.9: a valid-looking but impossible matrix
    text = GOOD.replace(
        "[correlation]\nmatrix = [[1.0, 0.5], [0.5, 1.0]]",
        '[[factors]]\nname = "C"\nspot = 1.0\ndaily_vol = 0.01\n\n'
        "[correlation]\nmatrix = [[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]",
    )
    with pytest.raises(PortfolioError, match=r"correlation\.matrix: not positive definite"):
        load_portfolio(write(tmp_path, text))


def test_covariance_form_and_its_errors(tmp_path):
    base = GOOD.replace("daily_vol = 0.02\n", "").replace("daily_vol = 0.01\n", "")
    cov = base.replace(
        "[correlation]\nmatrix = [[1.0, 0.5], [0.5, 1.0]]",
        "[covariance]\nmatrix = [[4e-4, 1e-4], [1e-4, 1e-4]]",
    )
    np.testing.assert_array_equal(
        load_portfolio(write(tmp_path, cov)).cov_daily, [[4e-4, 1e-4], [1e-4, 1e-4]]
    )
    bad = cov.replace("[1e-4, 1e-4]]", "[1e-4, 1e-5]]").replace("[[4e-4", "[[1e-5")
    with pytest.raises(PortfolioError, match=r"covariance\.matrix: not positive definite"):
        load_portfolio(write(tmp_path, bad))
    both = cov.replace("spot = 50.0", "spot = 50.0\ndaily_vol = 0.01")
    with pytest.raises(PortfolioError, match=r"factors\[1\]\.daily_vol: not used with"):
        load_portfolio(write(tmp_path, both))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(PortfolioError, match="cannot read file"):
        load_portfolio(tmp_path / "nope.toml")
    with pytest.raises(PortfolioError, match="not valid TOML"):
        load_portfolio(write(tmp_path, "[model\nhorizon_days = 1"))
    with pytest.raises(PortfolioError, match="positions: missing"):
        load_portfolio(write(tmp_path, GOOD.split("[[positions]]")[0]))


@pytest.mark.parametrize(
    ("cls", "params", "msg"),
    [
        (ScenarioGenerator, {"n_scenarios": 0}, "stages.s.params.n_scenarios: must be >= 1"),
        (ScenarioGenerator, {}, "stages.s.params.n_scenarios: missing"),
        (ScenarioGenerator, {"n_scenarios": 5, "sed": 1}, "stages.s.params.sed: unknown"),
        (Valuation, {"gpu_memory_budget": 8}, "gpu_memory_budget: 8 bytes is below one"),
        (Aggregator, {"mode": "fast"}, "stages.s.params.mode: must be one of"),
        (Aggregator, {"confidence": [1.5]}, "stages.s.params.confidence[0]"),
    ],
)
def test_bad_params_are_named(cls, params, msg):
    with pytest.raises(ParamError, match=re.escape(msg)):
        cls().setup(Context(params=params, stage="s"))


def test_run_serial_rejects_unknown_param():
    with pytest.raises(ParamError, match=r"params\.n_scenario: unknown"):
        run_serial({"n_scenario": 10})
