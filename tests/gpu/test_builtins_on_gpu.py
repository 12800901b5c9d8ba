"""Every built-in pipeline with its compute stages on ``device = "gpu"`` against its CPU run.

On a machine without a GPU the ranks use the strict CuPy stand-in (``tests/gpu_harness.py``
sets ``STREAMPIPE_CUPY_STANDIN=strict`` for them), so a host/device mix-up in a built-in fails
here as it would on a GPU; on a GPU (``benchmarks/gpu_check.py``) the same tests use CuPy.

Equality: bit-exact for video and genomics (integer pipelines), within a stated tolerance for
VaR (``pnl_tolerance``: summation order and CUDA's ``normcdf``), parareal (1e-12: every device
op is one IEEE operation, as on the CPU) and training (1e-9 on O(1) weights: cuBLAS sums in
another order). Video and genomics are checked in their own folders (pointers below).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.builtin_jobs import run_job
from tests.gpu_harness import standin_env

pytestmark = pytest.mark.gpu


def gpu_run(job, tmp_path, *sets, **kw):
    with standin_env():
        return run_job(job, tmp_path, *sets, **kw)


# ----------------------------------------------------------------------------- VaR


def _var_levels_close(run, serial, tol):
    assert run["n"] == serial["n"] and run["batches"] == serial["batches"]
    for a, b in zip(run["levels"], serial["levels"], strict=True):
        # VaR is an order statistic and ES a tail mean: each moves at most by the largest
        # P&L change (2x for ES, which also moves with VaR)
        assert abs(a["var"] - b["var"]) <= tol and abs(a["es"] - b["es"]) <= 2 * tol


@pytest.mark.parametrize("job, portfolio, n, batch", [
    ("var", "pipelines/var/data/portfolio.toml", 20_000, 2_000),
    ("var-book", "pipelines/var/data/book.toml", 1_000, 500),
])
def test_var_on_gpu_equals_cpu_within_the_pnl_tolerance(tmp_path, job, portfolio, n, batch):
    from pipelines.var import ScenarioGenerator, load_portfolio, run_serial
    from pipelines.var.valuation import pnl_tolerance
    from streampipe.stage import Context

    params = {"n_scenarios": n, "batch_size": batch, "seed": 3}
    run = gpu_run(job, tmp_path, "stages.value.device=\"gpu\"", "stages.aggregate.params.mode="
                  "\"exact\"", *(f"stages.scenarios.params.{k}={v}" for k, v in params.items()),
                  timeout=120)["meta"]["result"]
    serial = json.loads(json.dumps(run_serial({"portfolio": portfolio, **params, "mode": "exact",
                                               **({"confidence": [0.99, 0.975]}
                                                  if job == "var" else {})})))
    gen = ScenarioGenerator()
    gen.setup(Context(params={"portfolio": portfolio, **params}))
    pf = load_portfolio(portfolio)
    tol = max(float(pnl_tolerance(pf, it["shocks"]).max()) for it in gen.generate())
    _var_levels_close(run, serial, tol)


# ----------------------------------------------------------------------------- parareal

# nx = 31 (h = 1/32), 4 slices of T/4 with 60 explicit steps: nu dt / h^2 = 0.43 <= 1/2
PARAREAL = {"nx": 31, "nu": 1.0, "T": 0.1, "n_slices": 4, "coarse_steps": 1, "fine_steps": 60}


def test_parareal_on_gpu_equals_cpu(tmp_path):
    from pipelines.parareal import HeatProblem, parareal_serial

    run = gpu_run("parareal", tmp_path, *(f"stages.work.params.{k}={v}"
                                          for k, v in PARAREAL.items()),
                  "stages.work.params.iterations=4", "stages.fine.replicas=1",
                  "stages.fine.group=2", "stages.predict.device=\"gpu\"",
                  "stages.fine.device=\"gpu\"", "stages.correct.device=\"gpu\"")
    res = run["meta"]["result"]
    p = HeatProblem(**PARAREAL)
    serial = parareal_serial(p.u0(), 4, p)
    for k, u in enumerate(res["iterates"], start=1):
        assert np.max(np.abs(np.array(u) - serial[k])) <= 1e-12, k
    gpu_ranks = [r for r in run["ranks"] if r["stage"] in ("predict", "fine", "correct")]
    assert all(r.get("gpu_items_timed", 0) > 0 for r in gpu_ranks if r["group_rank"] == 0)


# ----------------------------------------------------------------------------- video

# The shipped video job with ME and transform on GPU ranks is checked byte for byte against the
# CPU encoder in tests/video/test_video_gpu.py::test_video_job_on_gpu_ranks_equals_the_cpu_run.


# ----------------------------------------------------------------------------- genomics
# The genomics job on device = "gpu" is checked bit-exact against the CPU mapping, read for read,
# in tests/genomics/test_mapper_gpu.py::test_genomics_job_with_gpu_mapper.


# ----------------------------------------------------------------------------- training


def test_split_learning_on_gpu_equals_cpu_within_1e_9(tmp_path):
    from streampipe.train import checkpoint

    small = ["train.epochs=1", "train.clients=1", "train.u_shape=false", "train.cuts=[2]",
             "train.microbatches=2", "train.minibatch=32", 'train.data.source="synthetic"',
             "train.data.limit=128"]
    cpu, dev = tmp_path / "cpu", tmp_path / "gpu"
    cpu.mkdir()
    dev.mkdir()
    gpu_run("split-learning", dev, *small, 'train.device="gpu"',
            f'train.checkpoint="{dev / "w.h5"}"')
    run_job("split-learning", cpu, *small, f'train.checkpoint="{cpu / "w.h5"}"')
    a, _, _ = checkpoint.load(str(cpu / "w.h5"))
    b, _, _ = checkpoint.load(str(dev / "w.h5"))
    assert a and sorted(a) == sorted(b)
    for name in a:
        assert sorted(a[name]["layers"]) == sorted(b[name]["layers"])
        for layer, la in a[name]["layers"].items():
            lb = b[name]["layers"][layer]
            for k in la:
                assert np.max(np.abs(np.asarray(la[k]) - np.asarray(lb[k]))) <= 1e-9, (name, k)
