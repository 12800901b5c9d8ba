"""jobs/parareal.toml under real MPI: with K = n_slices iterations the pipeline's final solution
is the serial fine solution, the error against it falls with every iteration, and every
iterate is the serial parareal iterate — with the group stage `fine` at 1 and 2 replicas."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.parareal import HeatProblem, fine_serial, parareal_serial
from tests.builtin_jobs import run_job

# nx = 63 (h = 1/64), 6 slices of T/6 with 200 explicit steps: nu dt / h^2 = 0.34 <= 1/2.
PROBLEM = {"nx": 63, "nu": 1.0, "T": 0.1, "n_slices": 6, "coarse_steps": 1, "fine_steps": 200}


@pytest.mark.parametrize("replicas", [1, 2])
def test_k_equals_n_reproduces_the_fine_solution(tmp_path, replicas):
    sets = [f"stages.work.params.{k}={v}" for k, v in PROBLEM.items()]
    run = run_job("parareal", tmp_path, *sets, "stages.work.params.iterations=6",
                  f"stages.fine.replicas={replicas}", "stages.fine.group=2",
                  "stages.collect.params.check_fine=true")
    res = run["meta"]["result"]
    p = HeatProblem(**PROBLEM)
    fine = fine_serial(p)
    U = np.array(res["U"])
    assert U.shape == (p.n_slices + 1, p.nx)
    # After k iterations slices 0..k are exact, so K = N gives the fine solution; the
    # distributed fine solve does the serial arithmetic, so 1e-10 is a loose bound on ~1e-16.
    assert np.max(np.abs(U - fine)) <= 1e-10

    its = [np.array(u) for u in res["iterates"]]
    assert len(its) == 6
    errors = [float(np.max(np.abs(u - fine))) for u in its]
    # the error falls with every iteration (parareal for the heat equation contracts) ...
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    # ... from a coarse-dominated start: the check is not trivially met by tiny numbers
    assert errors[0] > 1e-4
    # the collector's own error column is the same computation
    np.testing.assert_allclose(res["errors"], errors, rtol=0, atol=1e-15)
    # Every iterate equals serial parareal (same `correct`, same fine arithmetic): tolerance
    # 1e-12 absolute on values of order 1.
    serial = parareal_serial(p.u0(), 6, p)
    for k, u in enumerate(its, start=1):
        assert np.max(np.abs(u - serial[k])) <= 1e-12, k
    assert res["increments"] == [float(np.max(np.abs(b - a))) for a, b in zip(its, its[1:],
                                                                               strict=False)]
