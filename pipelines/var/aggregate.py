"""The sink: collects per-batch P&L and answers VaR/ES with errors.

Batches may arrive in any order (replicas, ``ordered = false``).  A small reorder buffer feeds
them to the estimator strictly by batch index, so every floating-point sum runs in the same
order and the result is bit-identical however the batches arrived.  The buffer only holds
batches that overtook a missing one: a handful with ``ordered = true``.

With ``pipeline.checkpoint = true`` the sink's state (the estimator's histogram or losses, the
moments, the next batch index) is checkpointed exactly, so ``streampipe run --resume`` ends
with the result of an uninterrupted run, bit for bit.
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
            self.levels = load_portfolio(p.get("portfolio"), positions=False).confidence
        self.mode = mode
        if mode == "exact":
            self.estimator: ExactLosses | StreamLosses = ExactLosses()
        else:
            bins = p.integer("bins", 65536, minimum=16)
            self.estimator = StreamLosses(bins, p.number("range_sigmas", 10.0))
        self._settings = self._describe(self.estimator)
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

    @staticmethod
    def _describe(est: ExactLosses | StreamLosses) -> dict[str, Any]:
        if isinstance(est, StreamLosses):
            return {"mode": "stream", "bins": est.bins, "range_sigmas": est.range_sigmas}
        return {"mode": "exact"}

    def checkpoint(self) -> dict[str, Any]:
        """The exact state after every batch below ``next`` (the runtime's high-water mark)."""
        if self._pending:
            raise RuntimeError(
                f"aggregate: cannot checkpoint with batches {sorted(self._pending)[:5]} waiting "
                f"for batch {self._next} (they arrived out of order); use pipeline.ordered = "
                "true with pipeline.checkpoint")
        return {"settings": self._settings, "next": self._next,
                "estimator": self.estimator.state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint`'s state: batches ``next`` on arrive next."""
        if state.get("settings") != self._settings:
            raise ValueError(f"aggregate: the checkpoint was made with {state.get('settings')}, "
                             f"this run has {self._settings}")
        est = state["estimator"]
        self.estimator = (StreamLosses if est["mode"] == "stream" else ExactLosses).from_state(est)
        self._next = int(state["next"])
        self._seen = set(range(self._next))
        self._pending = {}

    def result(self) -> VarResult:
        # batches after a gap (a missing index) still count, in index order
        for b in sorted(self._pending):
            self.estimator.add(self._pending.pop(b))
        return VarResult(risk_result(self.estimator, self.levels, len(self._seen)))
