"""Correlated factor shocks, one reproducible batch at a time.

Batch ``i`` draws from its own child stream ``SeedSequence(seed).spawn(n_batches)[i]``, so
its shocks depend only on ``(seed, i, batch_size)`` — not on replicas, order or resume point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from streampipe.stage import Context, Source

from .params import Params
from .portfolio import Portfolio, load_portfolio

__all__ = ["ScenarioGenerator", "batch_shocks", "n_batches"]


def n_batches(n_scenarios: int, batch_size: int) -> int:
    """Number of batches; the last one holds the remainder."""
    return -(-n_scenarios // batch_size)


def batch_shocks(chol: np.ndarray, seed_seq: np.random.SeedSequence, rows: int) -> np.ndarray:
    """``rows`` horizon returns ``Z @ chol.T`` with ``Z`` standard normal from ``seed_seq``."""
    z = np.random.default_rng(seed_seq).standard_normal((rows, chol.shape[0]))
    return z @ chol.T


class ScenarioGenerator(Source):
    """Source: yields ``{"batch": i, "shocks": (rows, n_factors) float64}`` factor returns.

    Params: ``portfolio`` (path), ``n_scenarios``, ``batch_size`` (10000), ``seed`` (0),
    ``horizon_days`` (overrides the portfolio's).  Shocks are normal with covariance
    ``horizon_days * cov_daily`` (square-root-of-time scaling).
    """

    PARAMS = frozenset({"portfolio", "n_scenarios", "batch_size", "seed", "horizon_days"})

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = Params(ctx.params, ctx.stage, self.PARAMS)
        self.n_scenarios = p.integer("n_scenarios")
        self.batch_size = p.integer("batch_size", 10_000)
        self.seed = p.integer("seed", 0, minimum=0)
        self.portfolio: Portfolio = load_portfolio(p.get("portfolio"), positions=False)
        self.chol = self.portfolio.shock_chol(p.number("horizon_days"))
        self.n_batches = n_batches(self.n_scenarios, self.batch_size)
        self._start = 0

    def seek(self, seq: int) -> None:
        """Resume at batch ``seq``: later batches are the same as in an uninterrupted run."""
        self._start = seq

    def generate(self) -> Iterator[dict[str, Any]]:
        children = np.random.SeedSequence(self.seed).spawn(self.n_batches)
        for i in range(self._start, self.n_batches):
            rows = min(self.batch_size, self.n_scenarios - i * self.batch_size)
            yield {"batch": i, "shocks": batch_shocks(self.chol, children[i], rows)}
