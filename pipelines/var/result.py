"""The VaR result: a plain dict (JSON-friendly, stored in the run file) that prints as a table."""

from __future__ import annotations

from typing import Any

__all__ = ["VarResult", "format_result"]


class VarResult(dict):
    """The Aggregator's result dict; ``str()`` is :func:`format_result`, so ``streampipe run``
    prints the VaR/ES table instead of the raw dict."""

    def __str__(self) -> str:
        return format_result(self)


def _money(x: float) -> str:
    return f"{x:,.2f}"


def format_result(result: dict[str, Any]) -> str:
    """A small table: VaR and ES with standard errors and 95% confidence intervals per level,
    then the P&L summary."""
    n = result["n"]
    lines = [f"Monte Carlo VaR / ES  ({n:,} scenarios, {result['mode']} estimator)"]
    head = (f"{'level':>7}  {'VaR':>14}  {'SE':>12}  {'95% CI':>31}  {'ES':>14}  {'SE':>12}  "
            f"{'95% CI':>31}")
    lines += [head, "-" * len(head)]
    for lv in result["levels"]:
        vci = "[" + ", ".join(map(_money, lv["var_ci"])) + "]"
        eci = "[" + ", ".join(map(_money, lv["es_ci"])) + "]"
        lines.append(
            f"{lv['confidence']:>7.2%}  {_money(lv['var']):>14}  {_money(lv['var_se']):>12}  "
            f"{vci:>31}  {_money(lv['es']):>14}  {_money(lv['es_se']):>12}  {eci:>31}"
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
