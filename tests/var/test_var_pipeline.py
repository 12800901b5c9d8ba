"""The VaR stages end to end without MPI: reproducibility, order independence, full
revaluation, streaming vs exact aggregation, memory-budgeted sub-batches, and CuPy vs NumPy."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import numpy as np
import pytest

from pipelines.var import (
    Aggregator,
    ScenarioGenerator,
    Valuation,
    format_result,
    load_portfolio,
    run_serial,
)
from pipelines.var.estimators import ExactLosses, StreamLosses
from pipelines.var.risk import risk_result
from pipelines.var.valuation import pnl_tolerance
from streampipe.stage import Context
from tests.gpu_harness import xp_gpu  # noqa: F401,F811 - a fixture

PF = "pipelines/var/data/portfolio.toml"
PARAMS = {"portfolio": PF, "n_scenarios": 60_000, "batch_size": 7_000, "seed": 11}


def stage(cls, **params):
    s = cls()
    s.setup(Context(params=params, stage=cls.__name__))
    return s


def valued_batches(params=PARAMS):
    gen = stage(ScenarioGenerator, **params)
    val = stage(Valuation, portfolio=params["portfolio"])
    return [val.process(item) for item in gen.generate()]


def aggregate(items, **params):
    agg = stage(Aggregator, portfolio=PF, **params)
    for it in items:
        agg.consume(it)
    return agg.result()


def bs_math(S, K, T, vol, r, call):
    """Independent scalar Black–Scholes (math.erfc)."""
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    d1 = (math.log(S / K) + (r + 0.5 * vol * vol) * T) / (vol * math.sqrt(T))
    d2 = d1 - vol * math.sqrt(T)
    df = K * math.exp(-r * T)
    return S * phi(d1) - df * phi(d2) if call else df * phi(-d2) - S * phi(-d1)


def test_batches_are_seeded_per_index():
    gen = stage(ScenarioGenerator, **PARAMS)
    items = list(gen.generate())
    assert [it["batch"] for it in items] == list(range(9))  # ceil(60000 / 7000)
    assert sum(len(it["shocks"]) for it in items) == 60_000
    assert items[-1]["shocks"].shape == (60_000 - 8 * 7_000, 4)
    # batch i is Z @ (sqrt(h) L)ᵀ with Z from SeedSequence(seed).spawn(n)[i]: recompute batch 5
    pf = load_portfolio(PF)
    child = np.random.SeedSequence(11).spawn(9)[5]
    z = np.random.default_rng(child).standard_normal((7_000, 4))
    np.testing.assert_array_equal(
        items[5]["shocks"], z @ (np.linalg.cholesky(pf.cov_daily) * math.sqrt(pf.horizon_days)).T
    )
    # a resumed source gives the same later batches
    gen2 = stage(ScenarioGenerator, **PARAMS)
    gen2.seek(6)
    later = list(gen2.generate())
    assert [it["batch"] for it in later] == [6, 7, 8]
    for a, b in zip(later, items[6:], strict=True):
        np.testing.assert_array_equal(a["shocks"], b["shocks"])


def test_shock_covariance_is_horizon_covariance():
    items = list(stage(ScenarioGenerator, **{**PARAMS, "n_scenarios": 200_000}).generate())
    r = np.concatenate([it["shocks"] for it in items])
    pf = load_portfolio(PF)
    target = pf.horizon_days * pf.cov_daily
    sd = np.sqrt(np.diag(target))
    # sample correlation/variance of 2e5 normals: SE <= 1/sqrt(n) ~ 2.2e-3 (corr), sqrt(2/n) (var)
    corr = np.corrcoef(r.T)
    assert np.max(np.abs(corr - target / np.outer(sd, sd))) < 5 * 2.3e-3
    assert np.max(np.abs(r.var(axis=0) / sd**2 - 1)) < 5 * math.sqrt(2 / 2e5)


@pytest.mark.parametrize("mode", ["exact", "stream"])
def test_result_is_bit_identical_in_any_arrival_order(mode):
    items = valued_batches()
    serial = run_serial({**PARAMS, "mode": mode})
    for order in (items[::-1], random.Random(3).sample(items, len(items))):
        assert aggregate(order, mode=mode) == serial  # exact float equality, every field
    # replicas: two Valuation instances splitting the batches give the same items
    gen = stage(ScenarioGenerator, **PARAMS)
    vals = [stage(Valuation, portfolio=PF) for _ in range(2)]
    split = [vals[it["batch"] % 2].process(it) for it in gen.generate()]
    assert aggregate(split[1::2] + split[::2], mode=mode) == serial


def test_single_position_pnl_is_full_revaluation(tmp_path):
    text = """
[model]
horizon_days = 3
[[factors]]
name = "S"
spot = 42.0
daily_vol = 0.02
[[positions]]
kind = "option"
factor = "S"
type = "%s"
quantity = -250
strike = 40.0
expiry = 0.5
vol = 0.2
rate = 0.1
"""
    for typ in ("call", "put"):
        path = tmp_path / f"{typ}.toml"
        path.write_text(text % typ)
        params = {"portfolio": str(path), "n_scenarios": 500, "batch_size": 500, "seed": 5}
        (item,) = stage(ScenarioGenerator, **params).generate()
        pnl = stage(Valuation, portfolio=str(path)).process(item)["pnl"]
        r = item["shocks"][:, 0]
        base = bs_math(42.0, 40.0, 0.5, 0.2, 0.1, typ == "call")
        ref = np.array(
            [
                -250 * (bs_math(42.0 * math.exp(x), 40.0, 0.5, 0.2, 0.1, typ == "call") - base)
                for x in r
            ]
        )
        # two ~1e-14-accurate pricers: differences ~1e-14 * 250 * 42; bound 1e-10 absolute
        assert np.max(np.abs(pnl - ref)) < 1e-10
    # a linear position with arithmetic returns: P&L is quantity*spot*r, bit for bit
    lin = load_portfolio("linear.toml")
    shocks = np.random.default_rng(0).normal(0, 0.02, (100, 3))
    pnl = stage(Valuation, portfolio="linear.toml").process({"batch": 0, "shocks": shocks})["pnl"]
    w = lin.lin_quantity * lin.spots
    np.testing.assert_array_equal(
        pnl, ((0.0 + w[0] * shocks[:, 0]) + w[1] * shocks[:, 1]) + w[2] * shocks[:, 2]
    )


def test_memory_budget_sub_batches_give_identical_pnl():
    items = list(stage(ScenarioGenerator, **PARAMS).generate())[:2]
    whole = stage(Valuation, portfolio=PF)
    # the budget holds the batch's shocks and P&L (7000 x (4 + 1) x 8 = 280 kB) plus passes
    small = stage(Valuation, portfolio=PF, gpu_memory_budget=400_000)
    assert 1 < small.rows_per_pass(7000) < 200  # the budget really splits a 7000-row batch
    assert whole.rows_per_pass(7000) == 7000
    for it in items:
        # each scenario's P&L is computed row-wise in a fixed order: sub-batching is invisible
        np.testing.assert_array_equal(small.process(it)["pnl"], whole.process(it)["pnl"])
    one = stage(Valuation, portfolio=PF)
    np.testing.assert_array_equal(one.value(items[0]["shocks"][5:6]),
                                  whole.value(items[0]["shocks"])[5:6])  # a row alone, too


def test_budget_below_the_batch_itself_is_refused():
    (item,) = list(stage(ScenarioGenerator, **PARAMS).generate())[:1]
    small = stage(Valuation, portfolio=PF, gpu_memory_budget=200_000)  # < 280 kB of batch
    with pytest.raises(ValueError, match=r"gpu_memory_budget: 200000 bytes cannot hold a batch "
                                         r"of 7000 scenarios: its shocks and P&L"):
        small.process(item)


def test_stream_mode_within_its_stated_error_of_exact():
    items = valued_batches({**PARAMS, "n_scenarios": 100_000, "batch_size": 10_000})
    exact = aggregate(items, mode="exact")
    stream = aggregate(items, mode="stream")
    assert stream["n"] == exact["n"] == 100_000
    for e, s in zip(exact["levels"], stream["levels"], strict=True):
        # the stated bounds (estimators.py): VaR within one bin, ES within w(1+2c)/(n(1-α))
        assert 0 < s["var_error_bound"] < 0.05 * e["var_se"]  # bins ~3e-4 σ, SE ~1e-2 σ
        assert abs(s["var"] - e["var"]) <= s["var_error_bound"]
        assert abs(s["es"] - e["es"]) <= s["es_error_bound"] + 1e-12 * abs(e["es"])
        # binned KDE with bins ~1e-3 of the bandwidth: density agrees to well under 1%
        assert s["var_se"] == pytest.approx(e["var_se"], rel=1e-2)
        assert s["es_se"] == pytest.approx(e["es_se"], rel=1e-3)
    for key in ("mean", "std"):  # Chan's merge vs one-pass numpy
        assert stream["pnl"][key] == pytest.approx(exact["pnl"][key], rel=1e-10)
    for key in ("min", "max", "n"):
        assert stream["pnl"][key] == exact["pnl"][key]


def test_stream_overflow_keeps_tail_exact():
    # The first batch sets a narrow range; later batches are 50x wider, so the 99% quantile
    # lies in the exact overflow list: VaR must then equal exact mode's bit for bit.
    rng = np.random.default_rng(9)
    batches = [rng.standard_normal(5_000)] + [50 * rng.standard_t(3, 5_000) for _ in range(7)]
    ex, st = ExactLosses(), StreamLosses(bins=1024, range_sigmas=4.0)
    for b in batches:
        ex.add(b)
        st.add(b)
    e, s = risk_result(ex, (0.99, 0.9), 8), risk_result(st, (0.99, 0.9), 8)
    assert s["stream"]["overflow"] > 0.5 * 40_000
    for le, ls in zip(e["levels"], s["levels"], strict=True):
        assert ls["var_error_bound"] == 0.0 and ls["var"] == le["var"]
        assert ls["es"] == pytest.approx(le["es"], rel=1e-12)
        assert ls["es_se"] == pytest.approx(le["es_se"], rel=1e-9)


def test_aggregator_rejects_duplicate_batches_and_empty_runs():
    items = valued_batches()[:2]
    agg = stage(Aggregator, portfolio=PF, mode="exact")
    agg.consume(items[0])
    with pytest.raises(ValueError, match="batch 0 arrived twice"):
        agg.consume(items[0])
    with pytest.raises(ValueError, match="no scenarios"):
        stage(Aggregator, portfolio=PF).result()


def test_format_result_shows_each_level():
    r = run_serial({**PARAMS, "mode": "exact"})
    text = format_result(r)
    rows = [line.split() for line in text.splitlines() if line.strip().endswith("]")]
    assert len(rows) == len(r["levels"])
    for lv, row in zip(r["levels"], rows, strict=True):
        assert f"{lv['confidence']:.2%}" in text
        assert f"{lv['var']:,.2f}" in text and f"{lv['es_ci'][1]:,.2f}" in text
        # the standard errors as printed are the ones the intervals are built from:
        # CI = estimate +- z(0.975) SE, so its half-width over z is the SE (to the printed cent)
        num = [float(x.strip("[],").replace(",", "")) for x in row[1:]]
        var, var_se, var_lo, var_hi, es, es_se, es_lo, es_hi = num
        z = NormalDist().inv_cdf(0.975)
        assert var_se == pytest.approx((var_hi - var_lo) / (2 * z), abs=0.01)
        assert es_se == pytest.approx((es_hi - es_lo) / (2 * z), abs=0.01)
        assert var_se > 0 and es_se > 0 and var == pytest.approx(lv["var"], abs=0.005)
    assert "60,000 scenarios" in text


@pytest.mark.gpu
def test_gpu_valuation_matches_numpy_within_the_stated_tolerance(xp_gpu):  # noqa: F811
    cp = xp_gpu
    item = next(iter(stage(ScenarioGenerator, **PARAMS).generate()))
    cpu = stage(Valuation, portfolio=PF).process(item)["pnl"]
    gpu_stage = Valuation()
    gpu_stage.setup(Context(params={"portfolio": PF, "gpu_memory_budget": 2**20}, xp=cp,
                            device="gpu"))
    assert gpu_stage.rows_per_pass(7000) < 7000  # several passes
    dev = gpu_stage.process({"batch": 0, "shocks": cp.asarray(item["shocks"])})["pnl"]
    assert isinstance(dev, cp.ndarray) and dev.dtype == np.float64  # stays on the device
    tol = pnl_tolerance(load_portfolio(PF), item["shocks"])
    assert np.all(np.abs(dev.get() - cpu) <= tol)
    assert np.max(tol) < 1e-6 * np.max(np.abs(cpu))  # and the tolerance is not vacuous
