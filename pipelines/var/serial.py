"""The whole VaR pipeline in one process (the oracle for distributed runs) and its printout."""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.stage import Context

from .aggregate import Aggregator
from .params import ParamError
from .scenarios import ScenarioGenerator
from .valuation import Valuation

__all__ = ["run_serial", "split_params", "format_result"]

_STAGES = (("scenarios", ScenarioGenerator), ("value", Valuation), ("aggregate", Aggregator))


def split_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route one flat params dict to the stages that know each key (``portfolio`` goes to all)."""
    known = frozenset().union(*(cls.PARAMS for _, cls in _STAGES))
    extra = sorted(set(params) - known)
    if extra:
        raise ParamError(
            f"params.{extra[0]}: unknown parameter (known: {', '.join(sorted(known))})"
        )
    return {name: {k: v for k, v in params.items() if k in cls.PARAMS} for name, cls in _STAGES}


def run_serial(params: dict[str, Any], xp: Any = np) -> dict[str, Any]:
    """Generate, value and aggregate every batch in order in this process; returns the result.

    ``params`` is the union of the three stages' params, e.g. ``{"portfolio": ...,
    "n_scenarios": 100_000, "batch_size": 10_000, "seed": 1, "mode": "exact"}``.
    """
    per_stage = split_params(params)
    gen, val, agg = ScenarioGenerator(), Valuation(), Aggregator()
    for (name, _), stage in zip(_STAGES, (gen, val, agg), strict=True):
        stage.setup(Context(params=per_stage[name], stage=name, xp=xp if stage is val else np))
    for item in gen.generate():
        agg.consume(val.process(item))
    return agg.result()


def _money(x: float) -> str:
    return f"{x:,.2f}"


def format_result(result: dict[str, Any]) -> str:
    """A small table: VaR and ES with 95% confidence intervals per level, then the P&L summary."""
    n = result["n"]
    lines = [f"Monte Carlo VaR / ES  ({n:,} scenarios, {result['mode']} estimator)"]
    head = f"{'level':>7}  {'VaR':>14}  {'95% CI':>31}  {'ES':>14}  {'95% CI':>31}"
    lines += [head, "-" * len(head)]
    for lv in result["levels"]:
        vci = "[" + ", ".join(map(_money, lv["var_ci"])) + "]"
        eci = "[" + ", ".join(map(_money, lv["es_ci"])) + "]"
        lines.append(
            f"{lv['confidence']:>7.2%}  {_money(lv['var']):>14}  {vci:>31}  "
            f"{_money(lv['es']):>14}  {eci:>31}"
        )
    p = result["pnl"]
    lines.append(
        f"P&L: mean {_money(p['mean'])}  std {_money(p['std'])}  "
        f"min {_money(p['min'])}  max {_money(p['max'])}  n {p['n']:,}"
    )
    if "stream" in result:
        s = result["stream"]
        lines.append(
            f"stream histogram: {s['bins']} bins of {s['bin_width']:.4g}, "
            f"{s['overflow']} losses kept exactly outside the range"
        )
    return "\n".join(lines)
