"""jobs/var-graph.toml (linear positions and options valued in two branches, zipped per scenario
batch and added before aggregation) under real MPI: the result equals the single-process VaR
oracle bit for bit (the two parts add up to the whole book's P&L in the same order), with the
option branch replicated and the scenario batches arriving at the zip in any interleaving."""

from __future__ import annotations

import json

import pytest

from pipelines.var import run_serial
from tests.builtin_jobs import run_job

PF = "pipelines/var/data/portfolio.toml"


@pytest.mark.parametrize("replicas", [1, 3])
def test_graph_job_equals_the_serial_oracle(tmp_path, replicas):
    n, batch, seed = 18_500, 1_000, 11
    mpi = run_job(
        "var-graph", tmp_path,
        f"stages.options.replicas={replicas}", "stages.options.device=\"cpu\"",
        f"stages.scenarios.params.n_scenarios={n}",
        f"stages.scenarios.params.batch_size={batch}", f"stages.scenarios.params.seed={seed}",
        name=f"vg-{replicas}",
    )["meta"]["result"]
    serial = run_serial({"portfolio": PF, "n_scenarios": n, "batch_size": batch, "seed": seed,
                         "mode": "stream", "confidence": [0.99, 0.975]})
    assert mpi["n"] == n and mpi["batches"] == 19
    assert mpi == json.loads(json.dumps(serial))
