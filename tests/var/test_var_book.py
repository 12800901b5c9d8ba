"""Books of 10^5 positions: position files (CSV, HDF5) load exactly and name the bad row and
field; the valuation is vectorised over positions; a linear book of 10^5 positions still meets
the delta-normal closed form; the aggregator's checkpoint resumes bit for bit."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pipelines.var import Aggregator, PortfolioError, ScenarioGenerator, Valuation, run_serial
from pipelines.var.book import generate_book, write_book
from pipelines.var.portfolio import load_portfolio
from streampipe import cupy_standin
from streampipe.stage import Context
from tests.var.oracles import assert_delta_normal

FACTORS = """
[model]
horizon_days = 1
returns = "{returns}"

[[factors]]
name = "A"
spot = 100.0
daily_vol = 0.02

[[factors]]
name = "B"
spot = 50.0
daily_vol = 0.01

[[factors]]
name = "C"
spot = 20.0
daily_vol = 0.015

[correlation]
uniform = 0.3
"""
NAMES, SPOTS = ("A", "B", "C"), np.array([100.0, 50.0, 20.0])


def book_portfolio(tmp_path, book: str, returns: str = "log", name: str = "pf.toml"):
    p = tmp_path / name
    p.write_text(FACTORS.format(returns=returns) + "\n[book]\n" + book + "\n")
    return p


def stage(cls, **params):
    s = cls()
    s.setup(Context(params=params, stage="s"))
    return s


ARRAYS = ("lin_factor", "lin_quantity", "opt_factor", "opt_quantity", "opt_strike",
          "opt_expiry", "opt_vol", "opt_rate", "opt_call", "opt_base", "lin_weight")


@pytest.mark.parametrize("suffix", ["csv", "h5"])
def test_book_files_load_exactly_what_was_written(tmp_path, suffix):
    cols = generate_book(NAMES, SPOTS, 20_000, seed=3, option_fraction=0.3)
    write_book(tmp_path / f"book.{suffix}", cols)
    gen = load_portfolio(book_portfolio(tmp_path, "generate = { positions = 20_000, seed = 3, "
                                                  "option_fraction = 0.3 }", name="g.toml"))
    pf = load_portfolio(book_portfolio(tmp_path, f'file = "book.{suffix}"'))
    assert pf.n_positions == 20_000 and 5_000 < len(pf.opt_factor) < 7_000
    for k in ARRAYS:
        assert np.array_equal(getattr(pf, k), getattr(gen, k)), k
    # independent of the loader: the linear weights are sum(quantity * spot) per factor
    lin = cols["kind"] == "linear"
    f = np.searchsorted(NAMES, cols["factor"][lin])
    w = np.bincount(f, weights=cols["quantity"][lin] * SPOTS[f], minlength=3)
    np.testing.assert_allclose(pf.lin_weight, w, rtol=1e-12)


BAD = [
    ("strike", 3, "-3", "row 3 (line 5): strike: must be > 0, got -3.0"),
    ("factor", 1, "Z", "row 1 (line 3): factor: unknown factor 'Z' (factors: A, B, C)"),
    ("kind", 2, "swap", "row 2 (line 4): kind: must be 'linear' or 'option', got 'swap'"),
    ("quantity", 4, "lots", "row 4 (line 6): quantity: must be a number, got 'lots'"),
    ("quantity", 0, "", "row 0 (line 2): quantity: missing"),
    ("vol", 3, "", "row 3 (line 5): vol: missing (required for an option)"),
    ("type", 3, "straddle", "row 3 (line 5): type: must be 'call' or 'put', got 'straddle'"),
    ("strike", 0, "10", "row 0 (line 2): strike: only options have it (this row is linear)"),
]


@pytest.mark.parametrize("column, row, value, message", BAD)
def test_bad_csv_rows_name_file_row_and_field(tmp_path, column, row, value, message):
    rows = ["kind,factor,quantity,type,strike,expiry,vol,rate",
            "linear,A,10,,,,,", "linear,B,-5,,,,,", "linear,C,7,,,,,",
            "option,A,3,call,100,0.5,0.2,0.01", "option,B,2,put,45,1.0,0.3,"]
    head = rows[0].split(",")
    cells = rows[row + 1].split(",")
    cells[head.index(column)] = value
    rows[row + 1] = ",".join(cells)
    (tmp_path / "book.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(PortfolioError, match=re.escape(f"book.csv: {message}")):
        load_portfolio(book_portfolio(tmp_path, 'file = "book.csv"'))


def test_bad_hdf5_and_table_errors(tmp_path):
    cols = generate_book(NAMES, SPOTS, 50, seed=1, option_fraction=0.5)
    opt = int(np.flatnonzero(cols["kind"] == "option")[7])
    cols["expiry"][opt] = 0.0
    write_book(tmp_path / "book.h5", cols)
    with pytest.raises(PortfolioError, match=rf"book\.h5: row {opt}: expiry: must be > 0, got 0.0"):
        load_portfolio(book_portfolio(tmp_path, 'file = "book.h5"'))
    (tmp_path / "x.csv").write_text("kind,factor,qty\nlinear,A,1\n")
    with pytest.raises(PortfolioError, match=r"x\.csv: column 'qty': unknown"):
        load_portfolio(book_portfolio(tmp_path, 'file = "x.csv"'))
    with pytest.raises(PortfolioError, match=r"book\.generate\.positions: must be an integer"):
        load_portfolio(book_portfolio(tmp_path, "generate = { positions = 0 }"))
    with pytest.raises(PortfolioError, match=r"positions file .*nope\.csv.*not found"):
        load_portfolio(book_portfolio(tmp_path, 'file = "nope.csv"'))
    p = tmp_path / "u.toml"
    p.write_text(FACTORS.format(returns="log").replace("uniform = 0.3", "uniform = -0.6")
                 + "\n[book]\ngenerate = { positions = 5 }\n")
    with pytest.raises(PortfolioError, match=r"correlation\.uniform: must be in \(-0\.5, 1\)"):
        load_portfolio(p)


def test_a_scenario_s_pnl_does_not_depend_on_its_pass(tmp_path):
    """With hundreds of options the row sums are pairwise: valued alone, in a small pass or a
    whole batch, a scenario's P&L is the same bit for bit (CPU)."""
    pf = book_portfolio(tmp_path, "generate = { positions = 2_000, option_fraction = 0.3 }")
    shocks = np.random.default_rng(2).standard_normal((400, 3)) * 0.02
    whole = stage(Valuation, portfolio=str(pf))
    small = stage(Valuation, portfolio=str(pf), gpu_memory_budget=1_000_000)
    assert 1 < small.rows_per_pass(400) < 50
    ref = whole.value(shocks)
    np.testing.assert_array_equal(small.value(shocks), ref)
    for i in (0, 123, 399):
        np.testing.assert_array_equal(whole.value(shocks[i:i + 1]), ref[i:i + 1])


def test_valuation_launches_do_not_grow_with_the_book(tmp_path):
    """One launch per pass for all options: the kernel count is the same for 100 and for
    10,000 options (the old loop launched three per position)."""
    counts = []
    for n in (100, 10_000):
        pf = book_portfolio(tmp_path, f"generate = {{ positions = {n}, option_fraction = 0.5 }}",
                            name=f"pf{n}.toml")
        cupy_standin.configure()
        s = Valuation()
        s.setup(Context(params={"portfolio": str(pf)}, xp=cupy_standin, device="gpu"))
        shocks = cupy_standin.asarray(np.full((64, 3), 0.01))
        cupy_standin.reset_stats()
        s.value(shocks)
        counts.append(cupy_standin.stats()["launches"])
    assert counts[0] == counts[1] < 20


def test_a_linear_book_of_100k_positions_meets_the_delta_normal_closed_form(tmp_path):
    pf_path = book_portfolio(tmp_path, "generate = { positions = 100_000, seed = 11, "
                                       "option_fraction = 0.0 }", returns="arithmetic")
    res = run_serial({"portfolio": str(pf_path), "n_scenarios": 40_000, "batch_size": 10_000,
                      "seed": 5, "mode": "stream", "confidence": [0.99, 0.975]})
    pf = load_portfolio(pf_path)
    assert pf.n_positions == 100_000 and len(pf.opt_factor) == 0
    # the oracle's weights straight from the generated columns, not from the loader
    cols = generate_book(NAMES, SPOTS, 100_000, seed=11, option_fraction=0.0)
    f = np.searchsorted(NAMES, cols["factor"])
    w = np.bincount(f, weights=cols["quantity"] * SPOTS[f], minlength=3)
    assert_delta_normal(res["levels"], math.sqrt(pf.horizon_days * w @ pf.cov_daily @ w), 0.03)


@pytest.mark.parametrize("mode", ["exact", "stream"])
def test_aggregator_checkpoint_resumes_bit_for_bit(mode):
    params = {"portfolio": "pipelines/var/data/portfolio.toml", "n_scenarios": 30_000,
              "batch_size": 3_000, "seed": 4}
    gen = stage(ScenarioGenerator, **params)
    val = stage(Valuation, portfolio=params["portfolio"])
    items = [val.process(it) for it in gen.generate()]
    whole = stage(Aggregator, mode=mode, portfolio=params["portfolio"])
    for it in items:
        whole.consume(it)
    expect = whole.result()
    for cut in (1, 4, 9):
        first = stage(Aggregator, mode=mode, portfolio=params["portfolio"])
        for it in items[:cut]:
            first.consume(it)
        state = first.checkpoint()
        resumed = stage(Aggregator, mode=mode, portfolio=params["portfolio"])
        resumed.restore(state)
        for it in items[cut:]:
            resumed.consume(it)
        assert resumed.result() == expect  # every float identical
    other = stage(Aggregator, mode="exact" if mode == "stream" else "stream",
                  portfolio=params["portfolio"])
    with pytest.raises(ValueError, match="the checkpoint was made with"):
        other.restore(state)
    early = stage(Aggregator, mode=mode, portfolio=params["portfolio"])
    early.consume(items[2])  # overtook batches 0 and 1
    with pytest.raises(RuntimeError, match="ordered = true with pipeline.checkpoint"):
        early.checkpoint()
