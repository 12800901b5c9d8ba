"""The sink: collects per-batch P&L and answers VaR/ES with errors.

Batches may arrive in any order (replicas, ``ordered = false``).  A small reorder buffer feeds
them to the estimator strictly by batch index, so every floating-point sum runs in the same
order and the result is bit-identical however the batches arrived.  The buffer only holds
batches that overtook a missing one: a handful with ``ordered = true``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.stage import Context, Sink

from .estimators import ExactLosses, StreamLosses
from .params import Params
from .portfolio import load_portfolio
from .result import VarResult
from .risk import risk_result

__all__ = ["Aggregator"]


class Aggregator(Sink):
    """Sink: ``{"batch", "pnl"}`` items -> :meth:`result` with VaR/ES per confidence level.

    Params: ``mode`` ("stream" default, bounded memory | "exact", keeps all losses),
    ``confidence`` (list; default the portfolio's ``model.confidence``), ``portfolio`` (path,
    only read for that default), ``bins`` (65536) and ``range_sigmas`` (10) for stream mode.
    """

    PARAMS = frozenset({"mode", "confidence", "portfolio", "bins", "range_sigmas"})

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = Params(ctx.params, ctx.stage, self.PARAMS)
        mode = p.choice("mode", ("stream", "exact"), "stream")
        if "confidence" in p.params:
            self.levels = p.levels("confidence", ())
        else:
            self.levels = load_portfolio(p.get("portfolio")).confidence
        if mode == "exact":
            self.estimator: ExactLosses | StreamLosses = ExactLosses()
        else:
            bins = p.integer("bins", 65536, minimum=16)
            self.estimator = StreamLosses(bins, p.number("range_sigmas", 10.0))
        self._pending: dict[int, np.ndarray] = {}
        self._seen: set[int] = set()
        self._next = 0

    def consume(self, item: dict[str, Any]) -> None:
        try:
            b, pnl = item["batch"], item["pnl"]
        except (TypeError, KeyError) as e:
            raise ValueError(
                f"aggregate: expected a {{'batch', 'pnl'}} dict, got {item!r:.80}"
            ) from e
        if b in self._seen:
            raise ValueError(f"aggregate: batch {b} arrived twice")
        self._seen.add(b)
        # losses are kept as -P&L; negation is exact, so nothing is lost
        self._pending[b] = -np.asarray(pnl, dtype=np.float64).ravel()
        while self._next in self._pending:
            self.estimator.add(self._pending.pop(self._next))
            self._next += 1

    def result(self) -> VarResult:
        # batches after a gap (a missing index) still count, in index order
        for b in sorted(self._pending):
            self.estimator.add(self._pending.pop(b))
        return VarResult(risk_result(self.estimator, self.levels, len(self._seen)))
