"""jobs/var.toml under real MPI: the result equals the single-process oracle exactly, whatever
the number of valuation replicas and the arrival order, and a linear portfolio's VaR/ES agree
with the delta-normal closed form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.var import VarResult, load_portfolio, run_serial
from tests.builtin_jobs import run_job
from tests.var.oracles import assert_delta_normal

PF = "pipelines/var/data/portfolio.toml"
LINEAR = "pipelines/var/data/linear.toml"
LEVELS = [0.99, 0.975]


def var_run(tmp_path, replicas: int, ordered: bool, portfolio: str, mode: str, n: int,
            batch: int, seed: int) -> tuple[dict, dict]:
    """(MPI result, serial result), both as JSON values (the run file stores JSON)."""
    mpi = run_job(
        "var", tmp_path,
        f"pipeline.ordered={str(ordered).lower()}",
        f"stages.value.replicas={replicas}",
        "stages.value.device=\"cpu\"",
        f"stages.scenarios.params.portfolio=\"{portfolio}\"",
        f"stages.scenarios.params.n_scenarios={n}",
        f"stages.scenarios.params.batch_size={batch}",
        f"stages.scenarios.params.seed={seed}",
        f"stages.value.params.portfolio=\"{portfolio}\"",
        f"stages.aggregate.params.mode=\"{mode}\"",
        name=f"var-{replicas}-{ordered}",
    )["meta"]["result"]
    serial = run_serial({"portfolio": portfolio, "n_scenarios": n, "batch_size": batch,
                         "seed": seed, "mode": mode, "confidence": LEVELS})
    assert isinstance(serial, VarResult)
    return mpi, json.loads(json.dumps(serial))


@pytest.mark.parametrize(
    "replicas, ordered, mode",
    [(1, True, "exact"), (2, False, "stream"), (3, True, "stream")],
)
def test_mpi_result_equals_serial_oracle(tmp_path, replicas, ordered, mode):
    # 23 batches of 1000 (the last one short): many batches per replica, so with
    # ordered = false they really can overtake each other.
    mpi, serial = var_run(tmp_path, replicas, ordered, PF, mode, 22_500, 1_000, 7)
    assert mpi["n"] == 22_500 and mpi["batches"] == 23
    # Shocks depend only on (seed, batch index), each scenario's P&L is summed in a fixed order
    # and the aggregator adds batches by index: every float must be identical, not just close.
    assert mpi == serial


def test_linear_portfolio_matches_delta_normal_within_3_se(tmp_path):
    mpi, serial = var_run(tmp_path, 2, True, LINEAR, "stream", 40_000, 4_000, 3)
    assert mpi == serial
    pf = load_portfolio(LINEAR)
    w = np.zeros(len(pf.spots))
    np.add.at(w, pf.lin_factor, pf.lin_quantity * pf.spots[pf.lin_factor])
    # Arithmetic returns and linear positions: P&L = w . r with r ~ N(0, h * cov), exactly
    # normal; the stream histogram's bias (one bin) is ~1e-4 SE.
    assert_delta_normal(mpi["levels"], math.sqrt(pf.horizon_days * w @ pf.cov_daily @ w), 0.02)
