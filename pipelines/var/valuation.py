"""Full revaluation: each scenario's P&L is every position repriced at the shocked spots.

The arithmetic is written once against ``xp`` (NumPy or CuPy); only Black–Scholes has a
dedicated CuPy kernel (see :mod:`.pricing`).  Position P&Ls are added left to right in file
order, one column at a time, so a scenario's P&L does not depend on the batch or sub-batch it
was valued in, nor on the device (each addition is one IEEE rounding on both).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.stage import Context, Stage

from .params import Params
from .portfolio import Portfolio, load_portfolio
from .pricing import bs_price

__all__ = ["Valuation", "revalue", "bytes_per_scenario"]

# Float64 temporaries per option per scenario in bs_price (shocked spot, d1, d2, two CDFs,
# price, P&L and the CDF's internal arrays), rounded up: an estimate for the memory budget.
_OPTION_TEMPS = 16


def bytes_per_scenario(pf: Portfolio) -> int:
    """Estimated peak working set of one scenario in :func:`revalue`, in bytes."""
    n_lin, n_opt = len(pf.lin_factor), len(pf.opt_factor)
    return 8 * (3 * pf.n_factors + 2 * n_lin + _OPTION_TEMPS * n_opt + 2)


def revalue(pf: Portfolio, shocks: Any, xp: Any = np) -> Any:
    """P&L of the portfolio under each row of factor returns ``shocks`` (rows, F), on ``xp``.

    Linear positions: ``quantity * spot * g`` with ``g = r`` (arithmetic returns) or
    ``expm1(r)`` (log returns).  Options: ``quantity * (BS(S') - BS(S))`` with
    ``S' = S * exp(r)`` or ``S * max(1 + r, 0)``; expiry is held fixed (no theta over the horizon).
    """
    r = xp.asarray(shocks, dtype=xp.float64)
    log = pf.returns == "log"
    pnl = xp.zeros(r.shape[0], dtype=xp.float64)
    if len(pf.lin_factor):
        rl = r[:, xp.asarray(pf.lin_factor)]
        g = xp.expm1(rl) if log else rl
        w = pf.lin_quantity * pf.spots[pf.lin_factor]
        for j in range(len(pf.lin_factor)):
            pnl += float(w[j]) * g[:, j]
    if len(pf.opt_factor):
        ro = r[:, xp.asarray(pf.opt_factor)]
        spot = xp.asarray(pf.spots[pf.opt_factor])
        shocked = spot * (xp.exp(ro) if log else xp.maximum(1.0 + ro, 0.0))
        price = bs_price(
            xp,
            shocked,
            xp.asarray(pf.opt_strike),
            xp.asarray(pf.opt_expiry),
            xp.asarray(pf.opt_vol),
            xp.asarray(pf.opt_rate),
            xp.asarray(pf.opt_call),
        )
        q, base = pf.opt_quantity, pf.opt_base
        for j in range(len(pf.opt_factor)):
            pnl += float(q[j]) * (price[:, j] - float(base[j]))
    return pnl


class Valuation(Stage):
    """Stage: ``{"batch", "shocks"}`` -> ``{"batch", "pnl"}`` (host NumPy float64, one per row).

    Params: ``portfolio`` (path), ``gpu_memory_budget`` (bytes, optional): rows are valued in
    sub-batches of at most ``budget // bytes_per_scenario`` so the device working set stays
    under the budget.  ``ctx.xp`` picks NumPy or CuPy; results always come back to the host.
    """

    PARAMS = frozenset({"portfolio", "gpu_memory_budget"})

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = Params(ctx.params, ctx.stage, self.PARAMS)
        self.xp = ctx.xp
        self.portfolio = load_portfolio(p.get("portfolio"))
        self.rows_per_pass: int | None = None
        budget = p.number("gpu_memory_budget")
        if budget is not None:
            need = bytes_per_scenario(self.portfolio)
            if budget < need:
                p.fail("gpu_memory_budget", f"{budget:.0f} bytes is below one scenario ({need})")
            self.rows_per_pass = int(budget // need)

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        shocks = item["shocks"]
        if shocks.ndim != 2 or shocks.shape[1] != self.portfolio.n_factors:
            raise ValueError(
                f"batch {item.get('batch')}: shocks have shape {shocks.shape}, expected "
                f"(rows, {self.portfolio.n_factors}) for this portfolio"
            )
        return {"batch": item["batch"], "pnl": self.value(shocks)}

    def value(self, shocks: np.ndarray) -> np.ndarray:
        """Host P&L of each row of ``shocks``, in sub-batches under the memory budget."""
        rows = shocks.shape[0]
        step = self.rows_per_pass or max(rows, 1)
        out = np.empty(rows, dtype=np.float64)
        for a in range(0, rows, step):
            pnl = revalue(self.portfolio, shocks[a : a + step], self.xp)
            out[a : a + step] = _to_host(pnl)
        return out


def _to_host(a: Any) -> np.ndarray:
    """CuPy -> NumPy copy (synchronising the stream); NumPy arrays pass through."""
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)
