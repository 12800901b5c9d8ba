"""The whole VaR pipeline in one process: the oracle for distributed runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe import gpu
from streampipe.stage import Context

from .aggregate import Aggregator
from .params import ParamError
from .result import format_result
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
        out = val.process({**item, "shocks": xp.asarray(item["shocks"])})
        agg.consume({**out, "pnl": gpu.to_host(out["pnl"])})  # the runtime's to_wire, here
    return agg.result()
