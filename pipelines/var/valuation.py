"""Full revaluation, vectorised over positions: a scenario batch's P&L in a fixed number of
kernels, however many positions the book holds.

Per pass over ``m`` scenarios (rows of factor returns ``r``, shape ``(m, F)``):

* linear positions, aggregated per factor (``Portfolio.lin_weight``):
  ``pnl_lin = sum_f w_f * g_f`` with ``g = r`` (arithmetic) or ``expm1(r)`` (log returns);
* options, all of them in one launch: the shocked factor levels ``L = S * exp(r)`` (or
  ``S * max(1 + r, 0)``) and one ``(m, n_options)`` matrix
  ``q_j * (BS(L[:, f_j], K_j, T_j, vol_j, rate_j) - base_j)``, a CuPy ``ElementwiseKernel`` on a
  GPU (:func:`.pricing.bs_pnl`), then its row sums.

Row sums run along each row whatever ``m`` is, so a scenario's P&L does not depend on the batch
or sub-batch it was valued in; on the CPU it is bit-identical for any sub-batching.  A GPU adds
the same terms in another order (and CUDA's ``normcdf``), so GPU and CPU agree to the tolerance
in :func:`pnl_tolerance`.

Memory: a pass holds ``bytes_per_scenario`` per row; a batch holds its shocks (uploaded whole
by the runtime before the stage sees them), its P&L, the portfolio's parameter arrays and a
small per-pass overhead.  ``gpu_memory_budget`` bounds all of it (:meth:`Valuation.rows_per_pass`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe import gpu
from streampipe.stage import Context, Stage

from .params import Params
from .portfolio import Portfolio, load_portfolio
from .pricing import bs_pnl

__all__ = ["Valuation", "AddPnl", "revalue", "bytes_per_scenario", "pnl_tolerance",
           "DeviceBook", "PARTS"]

ALIGN = 512  # CuPy rounds every allocation up to this
# Per-pass allocations besides the per-row ones (each at least one ALIGN unit on a GPU).
_PASS_ALLOCATIONS = 12
# Float64 (m, n_options) temporaries alive at once in the NumPy Black–Scholes (gathered levels,
# d1, d2, the reflected arguments, the two CDFs and their Cephes temporaries, price, value);
# the CUDA kernel holds only its output.
_CPU_OPTION_TEMPS = 24
_GPU_OPTION_TEMPS = 1
CPU_PASS_BYTES = 16 * 2**20  # NumPy: passes that stay near the caches (measured fastest)


def _rounded(nbytes: int) -> int:
    return -(-int(nbytes) // ALIGN) * ALIGN


def bytes_per_scenario(pf: Portfolio, on_gpu: bool = True) -> int:
    """Peak working set of one scenario row in :func:`revalue`, in bytes.

    Per row: the linear part (``g``, ``g * w``: 2F), the option part (``exp(r)``, levels: 2F, and
    the ``(m, n_options)`` temporaries), and four scalars (row sums, the P&L).
    """
    temps = _GPU_OPTION_TEMPS if on_gpu else _CPU_OPTION_TEMPS
    n_opt = len(pf.opt_factor)
    return 8 * (4 * pf.n_factors + temps * n_opt + 4)


class DeviceBook:
    """The portfolio's arrays on ``xp``, uploaded once (setup), and what they occupy."""

    def __init__(self, pf: Portfolio, xp: Any) -> None:
        self.xp = xp
        arrays = {"spots": pf.spots, "lin_weight": pf.lin_weight,
                  "factor": pf.opt_factor.astype(np.int32), "strike": pf.opt_strike,
                  "expiry": pf.opt_expiry, "vol": pf.opt_vol, "rate": pf.opt_rate,
                  "call": pf.opt_call.astype(np.int32), "quantity": pf.opt_quantity,
                  "base": pf.opt_base}
        self.nbytes = sum(_rounded(a.nbytes) for a in arrays.values())
        for name, a in arrays.items():
            setattr(self, name, xp.asarray(a))
        self.n_factors, self.n_options = pf.n_factors, len(pf.opt_factor)
        self.log = pf.returns == "log"
        self.has_linear = bool(np.any(pf.lin_weight != 0))


PARTS = ("all", "linear", "options")


def revalue(pf: Portfolio, shocks: Any, xp: Any = np, book: DeviceBook | None = None,
            part: str = "all") -> Any:
    """P&L of the portfolio under each row of factor returns ``shocks`` (rows, F), on ``xp``.

    Linear positions: ``quantity * spot * g`` with ``g = r`` (arithmetic returns) or
    ``expm1(r)`` (log returns).  Options: ``quantity * (BS(S') - BS(S))`` with
    ``S' = S * exp(r)`` or ``S * max(1 + r, 0)``; expiry is held fixed (no theta over the horizon).
    ``shocks`` must already be on ``xp`` (``xp.asarray`` it); ``book`` is the portfolio on
    ``xp`` (made once per stage; made here when not given). ``part``: value only the linear
    positions or only the options ("all": both; the sum of the two parts is this, bit for bit).
    """
    b = book if book is not None else DeviceBook(pf, xp)
    r = shocks
    pnl = None
    if b.has_linear and part != "options":
        g = xp.expm1(r) if b.log else r
        pnl = _row_sums(xp, g * b.lin_weight)
    if b.n_options and part != "linear":
        levels = b.spots * (xp.exp(r) if b.log else xp.maximum(1.0 + r, 0.0))
        value = bs_pnl(xp, levels, b.factor, b.strike, b.expiry, b.vol, b.rate, b.call,
                       b.quantity, b.base)
        opt = _row_sums(xp, value)
        pnl = opt if pnl is None else pnl + opt
    return pnl if pnl is not None else xp.zeros(r.shape[0])


def _row_sums(xp: Any, a: Any) -> Any:
    """Row sums in an order that depends only on the row (C order: NumPy sums each row
    pairwise, whatever the number of rows; an F-order matrix would be summed column by column)."""
    return xp.ascontiguousarray(a).sum(axis=1)


def pnl_tolerance(pf: Portfolio, shocks: np.ndarray) -> np.ndarray:
    """Per scenario, how far a GPU's P&L may be from the CPU's (the CPU is exact to ~1e-14).

    The GPU adds the same terms in another order (at most ``n u sum|terms|`` for ``n`` terms,
    u = 2^-53) and prices with CUDA's ``normcdf``/``exp``/``log`` (a few ulp where the NumPy path
    uses Cephes, < 3e-14 relative): an option's price is off by at most about
    ``1e-12 (S' + K)``.  The bound is that sum with a factor 10 of headroom.
    """
    u = np.finfo(np.float64).eps / 2
    log = pf.returns == "log"
    g = np.expm1(shocks) if log else shocks
    lin_terms = np.abs(g * pf.lin_weight).sum(axis=1)
    tol = 10 * (pf.n_factors * u * lin_terms)
    if len(pf.opt_factor):
        lv = pf.spots * (np.exp(shocks) if log else np.maximum(1 + shocks, 0))
        size = np.abs(pf.opt_quantity) * (lv[:, pf.opt_factor] + pf.opt_strike)
        tol = tol + 10 * (1e-12 + len(pf.opt_factor) * u) * size.sum(axis=1)
    return tol


class Valuation(Stage):
    """Stage: ``{"batch", "shocks"}`` -> ``{"batch", "pnl"}`` (float64, one per row, on the
    stage's device: the runtime brings it to the host for a CPU stage downstream).

    Params: ``portfolio`` (path), ``part`` ("all" default, "linear" or "options": value only
    those positions, for a graph that values the two in branches and adds them with
    :class:`AddPnl`), ``gpu_memory_budget`` (bytes, optional): the working set of
    an item (its shocks, its P&L, the portfolio on the device and a pass of sub-batch rows)
    stays under the budget.  Without it a GPU uses half of its free memory, NumPy passes of
    about 16 MiB (faster than larger ones: the temporaries stay in cache).
    """

    PARAMS = frozenset({"portfolio", "gpu_memory_budget", "part"})

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = Params(ctx.params, ctx.stage, self.PARAMS)
        self.xp = ctx.xp
        self.on_gpu = ctx.xp is not np
        self.portfolio = load_portfolio(p.get("portfolio"))
        self.part = p.choice("part", PARTS, "all")
        self.book = DeviceBook(self.portfolio, self.xp)
        self.row_bytes = bytes_per_scenario(self.portfolio, self.on_gpu)
        self.budget = p.number("gpu_memory_budget")
        self._fail = p.fail
        if self.budget is not None:
            fixed = self.book.nbytes + self.pass_overhead
            if self.budget < fixed + self.row_bytes:
                p.fail("gpu_memory_budget", f"{self.budget:.0f} bytes is below one scenario "
                       f"({self.row_bytes}) plus the portfolio's arrays ({fixed})")

    @property
    def pass_overhead(self) -> int:
        return _PASS_ALLOCATIONS * ALIGN

    def rows_per_pass(self, rows: int) -> int:
        """Rows valued at once for a batch of ``rows`` scenarios (under the budget)."""
        xp = self.xp
        item = _rounded(8 * rows * self.portfolio.n_factors) + _rounded(8 * rows)
        fixed = item + self.book.nbytes + self.pass_overhead
        if self.budget is not None:
            room = self.budget - fixed
            if room < self.row_bytes:
                self._fail("gpu_memory_budget", f"{self.budget:.0f} bytes cannot hold a batch of "
                           f"{rows} scenarios: its shocks and P&L ({item} bytes), the portfolio "
                           f"({self.book.nbytes}) and one scenario's working set "
                           f"({self.row_bytes}); raise it or lower the batch size")
        elif self.on_gpu:
            room = int(0.5 * gpu.available_bytes(xp))
        else:
            room = CPU_PASS_BYTES
        return max(1, min(rows, int(room // self.row_bytes)))

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        shocks = item["shocks"]
        if shocks.ndim != 2 or shocks.shape[1] != self.portfolio.n_factors:
            raise ValueError(
                f"batch {item.get('batch')}: shocks have shape {shocks.shape}, expected "
                f"(rows, {self.portfolio.n_factors}) for this portfolio"
            )
        return {"batch": item["batch"], "pnl": self.value(shocks)}

    def value(self, shocks: Any) -> Any:
        """P&L of each row of ``shocks`` (host or device), on this stage's device."""
        xp = self.xp
        shocks = xp.asarray(shocks, dtype=xp.float64)
        rows = shocks.shape[0]
        step = self.rows_per_pass(rows)
        out = xp.empty(rows, dtype=xp.float64)
        for a in range(0, rows, step):
            out[a : a + step] = revalue(self.portfolio, shocks[a : a + step], xp, self.book,
                                        self.part)
        return out


class AddPnl(Stage):
    """Stage: the zipped ``({"batch", "pnl"}, {"batch", "pnl"})`` of the linear and the option
    branch of one scenario batch -> ``{"batch", "pnl"}``, their sum (``join = "zip"``; the same
    sum, in the same order, as a single Valuation of the whole book)."""

    def process(self, item: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        lin, opt = item
        if lin["batch"] != opt["batch"]:
            raise ValueError(f"zip paired batch {lin['batch']} with batch {opt['batch']}")
        return {"batch": lin["batch"], "pnl": lin["pnl"] + opt["pnl"]}
