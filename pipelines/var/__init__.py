"""Monte Carlo Value-at-Risk: correlated factor shocks -> full revaluation -> VaR/ES.

Stages for a job file (``uses = "pipelines.var:Valuation"``) and a serial oracle::

    scenarios  ScenarioGenerator  (Source)  {"batch", "shocks"}
    value      Valuation          (Stage)   {"batch", "pnl"}   NumPy or CuPy
    aggregate  Aggregator         (Sink)    result(): VaR/ES, SEs, CIs, P&L summary

and, for a graph that values linear positions and options in two branches (jobs/var-graph.toml),
``Valuation`` with ``part = "linear" | "options"`` and ``AddPnl`` joining the two (zip).

See README.md in this directory for the portfolio schema and the estimators.
"""

from .aggregate import Aggregator
from .params import ParamError
from .portfolio import Portfolio, PortfolioError, load_portfolio, parse_portfolio
from .pricing import bs_price, norm_cdf
from .result import VarResult, format_result
from .scenarios import ScenarioGenerator
from .serial import run_serial
from .valuation import AddPnl, Valuation, revalue

__all__ = [
    "ScenarioGenerator",
    "Valuation",
    "AddPnl",
    "Aggregator",
    "run_serial",
    "format_result",
    "VarResult",
    "Portfolio",
    "PortfolioError",
    "ParamError",
    "load_portfolio",
    "parse_portfolio",
    "bs_price",
    "norm_cdf",
    "revalue",
]
