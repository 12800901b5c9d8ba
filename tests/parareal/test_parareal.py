"""Parareal: convergence to the serial fine solution, error decay, and the streamed stages
driven in-process (feedback edge emulated) against serial parareal."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib

from pipelines.parareal import (
    CoarsePredictor,
    FineCorrector,
    HeatProblem,
    PararealCollector,
    PararealUpdate,
    PararealWork,
    coarse,
    fine,
    fine_serial,
    fine_solve_distributed,
    parareal_serial,
)
from streampipe.stage import Context

P = HeatProblem(nx=63, nu=1.0, T=0.1, n_slices=8, coarse_steps=1, fine_steps=200)


def test_fine_propagator_matches_exact_sine_decay():
    # Independent oracle: a single sine mode decays by the explicit Euler factor
    # (1 - 4 r sin^2(k pi h / 2))^steps exactly (it is an eigenvector of the scheme).
    p = HeatProblem(nx=31, nu=0.5, T=0.02, n_slices=1, fine_steps=100, modes=((3, 1.0),))
    lam = 1 - 4 * p.r_fine * np.sin(3 * np.pi * p.h / 2) ** 2
    np.testing.assert_allclose(fine(p, p.u0()), lam**100 * p.u0(), rtol=0, atol=1e-13)
    # and the implicit Euler coarse step by 1 / (1 + 4 r_c sin^2(k pi h / 2)).
    rc = p.nu * p.dt_slice / p.h**2
    np.testing.assert_allclose(coarse(p, p.u0()),
                               p.u0() / (1 + 4 * rc * np.sin(3 * np.pi * p.h / 2) ** 2),
                               rtol=0, atol=1e-13)


def test_boundary_values_give_linear_steady_state():
    # With left=1, right=3 and a long time the solution is the line 1 + 2x (to 1e-9: the
    # slowest mode decays by exp(-pi^2 nu T) = exp(-29.6) ~ 1e-13 relative).
    p = HeatProblem(nx=15, nu=1.0, T=3.0, n_slices=3, fine_steps=2000, left=1.0, right=3.0)
    np.testing.assert_allclose(fine_serial(p)[-1], 1 + 2 * p.x, atol=1e-9)


def test_parareal_converges_to_fine_in_n_iterations_with_geometric_decay():
    ref = fine_serial(P)
    its = parareal_serial(P.u0(), P.n_slices, P)
    err = [np.max(np.abs(U - ref)) for U in its]
    # After k iterations the first k slices are exact; k = N: everything, up to round-off of
    # ~N fine+coarse sweeps of O(1) values (1e-10 is a wide margin over ~1e-15).
    assert err[-1] < 1e-10
    for k in range(P.n_slices + 1):
        np.testing.assert_allclose(its[k][: k + 1], ref[: k + 1], rtol=0, atol=1e-12)
    # Monotone, geometric decay: the error contraction of parareal with implicit Euler G on the
    # heat equation is bounded by ~0.2984 (Gander & Vandewalle 2007, SISC 29(2)); with the
    # finitely many iterations the observed ratios stay below 0.3.
    ratios = [b / a for a, b in zip(err, err[1:], strict=False)]
    assert all(r <= 1.0 for r in ratios)
    assert max(ratios[:-1]) < 0.3, ratios


def test_problem_errors_name_the_field():
    with pytest.raises(ValueError, match=r"fine_steps: .* got 0.512; use fine_steps >= 103"):
        HeatProblem(nx=63, T=0.1, n_slices=8, fine_steps=100)
    with pytest.raises(ValueError, match=r"stages.work.params: unknown keys \['nxx'\]"):
        HeatProblem.from_params({"nxx": 3}, "stages.work.params")
    with pytest.raises(ValueError, match=r"stages.work.params.nu: must be > 0"):
        HeatProblem.from_params({"nu": -1.0}, "stages.work.params")


class _FeedbackRuntime:
    """Emulates the runtime's feedback store for an in-process, one-item-at-a-time drive."""

    def __init__(self) -> None:
        self.values: dict[int, Any] = {}
        self.sent = 0

    def send_feedback(self, seq: int, value: Any) -> None:
        assert seq not in self.values
        self.values[seq] = value
        self.sent += 1

    def wait_feedback(self, current: int, seq: int) -> Any:
        assert seq < current, "feedback must come from an earlier item"
        return self.values[seq]  # a KeyError here would be a deadlock in the real runtime

    def release_feedback(self, seq: int) -> None:
        del self.values[seq]


def _drive(params: dict) -> tuple[dict, _FeedbackRuntime]:
    rt = _FeedbackRuntime()
    work, pred, fine_st, upd, sink = (PararealWork(), CoarsePredictor(), FineCorrector(),
                                      PararealUpdate(), PararealCollector())
    ctxs = [Context(params=params if i == 0 else {}, stage=f"s{i}", _runtime=rt)
            for i in range(5)]
    for st, ctx in zip((work, pred, fine_st, upd, sink), ctxs, strict=True):
        st.setup(ctx)
    for seq, item in enumerate(work.generate()):
        for st, ctx in zip((pred, fine_st, upd), ctxs[1:4], strict=True):
            ctx.seq = seq
            item = st.process(item)
        sink.consume(item)
    return sink.result(), rt


def test_streamed_stages_equal_serial_parareal_and_release_all_feedback():
    params = {"nx": 63, "T": 0.1, "n_slices": 8, "fine_steps": 200, "iterations": 8}
    res, rt = _drive(params)
    its = parareal_serial(P.u0(), 8, P)
    # Same operations in the same order: the stream reproduces serial parareal bit for bit.
    for k in range(1, 9):
        np.testing.assert_array_equal(res["iterates"][k - 1], its[k])
    np.testing.assert_allclose(res["U"], fine_serial(P), rtol=0, atol=1e-10)
    # Feedback only where iteration k+1 uses it: (K-1) iterations x (N-1) slices, all released.
    assert rt.sent == 7 * 7 and rt.values == {}
    assert all(b <= a for a, b in zip(res["increments"], res["increments"][1:], strict=False))


def test_streamed_fewer_iterations_and_resume_position():
    res, _ = _drive({"nx": 63, "T": 0.1, "n_slices": 8, "fine_steps": 200, "iterations": 3})
    np.testing.assert_array_equal(res["U"], parareal_serial(P.u0(), 3, P)[3])
    src = PararealWork()
    src.setup(Context(params={"n_slices": 4, "fine_steps": 500, "nx": 31}))
    src.seek(6)
    assert [(i["k"], i["n"]) for i in src.generate()] == [(1, 2), (1, 3), (2, 0), (2, 1),
                                                          (2, 2), (2, 3), (3, 0), (3, 1),
                                                          (3, 2), (3, 3)]


def test_fine_solve_size_one_is_serial_and_rejects_bad_grid():
    u = P.u0()
    np.testing.assert_array_equal(
        fine_solve_distributed(None, u, P.dt_fine, P.fine_steps, nu=P.nu), fine(P, u))

    class One:  # a size-1 communicator behaves like no communicator
        def Get_size(self) -> int:
            return 1

        def Get_rank(self) -> int:
            return 0

    np.testing.assert_array_equal(fine_solve_distributed(One(), u, P.dt_fine, 7),
                                  fine_solve_distributed(None, u, P.dt_fine, 7))
    with pytest.raises(ValueError, match="u: need a 1-D grid"):
        fine_solve_distributed(None, np.zeros((2, 2)), 1e-5, 1)


def test_job_file_names_real_stages():
    job = tomllib.loads((Path(__file__).parents[2] / "jobs" / "parareal.toml").read_text())
    names = [s["name"] for s in job["stages"]]
    classes = [getattr(import_module(s["uses"].split(":")[0]), s["uses"].split(":")[1])
               for s in job["stages"]]
    assert classes == [PararealWork, CoarsePredictor, FineCorrector, PararealUpdate,
                       PararealCollector]
    fine_st = job["stages"][2]
    assert fine_st["group"] == 2 and job["stages"][3]["feedback_to"] == names[1]
    # The job's problem is valid: from_params raises on an unstable fine step or bad key.
    params = dict(job["stages"][0]["params"])
    K = params.pop("iterations")
    p = HeatProblem.from_params(params)
    assert K <= p.n_slices
