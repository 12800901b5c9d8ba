"""Parareal as a stream: work items (k, n) flow source -> predict -> fine -> correct -> collect,
with a feedback edge correct -> predict (see README.md).

Item (k, n) is "iteration k, slice n".  ``predict`` needs U^k_n: the coarse sweep for k = 0, u0
for n = 0, otherwise the value ``correct`` produced for item (k-1, n-1), which it receives over
the feedback edge (item seq k*N + n waits for seq (k-1)*N + n-1, i.e. ``ctx.seq - N - 1``).  The
fine solves of one iteration run concurrently on the replicas of the group stage ``fine`` while
``predict`` already waits on the first corrections of the next iteration.

Every stage computes with ``ctx.xp``, so ``predict``, ``fine`` and ``correct`` may run with
``device = "gpu"``: the fine solve then runs on the device (``fine_solve_distributed``), the
coarse tridiagonal solves on the host, and arrays cross between them explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from streampipe.stage import Context, Sink, Source, Stage

from .distributed import fine_solve_distributed
from .heat import HeatProblem, coarse, correct, fine_serial

__all__ = ["PararealWork", "CoarsePredictor", "FineCorrector", "PararealUpdate",
           "PararealCollector", "PararealResult", "format_parareal"]


class PararealWork(Source):
    """Emit ``{"k", "n", "problem"}`` for k < iterations, n < n_slices (k-major).

    Params: ``iterations`` (K, default n_slices) and the :class:`HeatProblem` fields.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        where = f"stages.{ctx.stage}.params"
        params = dict(ctx.params)
        self.K = params.pop("iterations", None)
        self.problem = HeatProblem.from_params(params, where)
        if self.K is None:
            self.K = self.problem.n_slices
        if not isinstance(self.K, int) or not 1 <= self.K <= self.problem.n_slices:
            raise ValueError(f"{where}.iterations: must be in 1..n_slices="
                             f"{self.problem.n_slices}, got {self.K!r}")
        self._start = 0

    def seek(self, seq: int) -> None:
        self._start = seq

    def generate(self) -> Iterator[dict[str, Any]]:
        N = self.problem.n_slices
        for seq in range(self._start, self.K * N):
            yield {"k": seq // N, "n": seq % N, "K": self.K, "problem": self.problem}


class CoarsePredictor(Stage):
    """Attach U^k_n (``u``) and its coarse propagation G(U^k_n) (``g``) to item (k, n)."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sweep: np.ndarray | None = None

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        p: HeatProblem = item["problem"]
        k, n = item["k"], item["n"]
        xp = self.ctx.xp
        if k == 0:
            if self.sweep is None:
                sweep = [p.u0()]
                for _ in range(p.n_slices - 1):
                    sweep.append(coarse(p, sweep[-1]))
                self.sweep = np.array(sweep)
            u = xp.asarray(self.sweep[n])
        elif n == 0:
            u = xp.asarray(p.u0())
        else:
            back = self.ctx.seq - p.n_slices - 1
            u = xp.asarray(self.ctx.feedback(back))  # host or device, as the edge brings it
            self.ctx.release_feedback(back)
        return {**item, "u": u, "g": coarse(p, u, xp)}


class FineCorrector(Stage):
    """Group stage: F(U^k_n) by :func:`fine_solve_distributed` over the group's ranks.

    The root (group rank 0) receives the item; the others are called with None and join the
    collective solve.  Only the root's return value travels on.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    def process(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        comm, xp = self.ctx.comm, self.ctx.xp
        if item is None:  # a non-root group rank: the root broadcasts what to solve
            fine_solve_distributed(comm, None, None, None, xp=xp)
            return None
        p: HeatProblem = item["problem"]
        f = fine_solve_distributed(comm, item["u"], p.dt_fine, p.fine_steps, nu=p.nu,
                                   left=p.left, right=p.right, xp=xp)
        return {**item, "f": f}


class PararealUpdate(Stage):
    """The sequential correction U^{k+1}_{n+1} = G(U^{k+1}_n) + F(U^k_n) - G(U^k_n).

    Items must arrive in order (one replica, ``ordered = true``).  Sends U^{k+1}_{n+1} back to
    ``predict`` when iteration k+1 < K needs it (n + 1 < N), and passes it downstream.
    """

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.u_new: np.ndarray | None = None

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        p: HeatProblem = item["problem"]
        k, n = item["k"], item["n"]
        if n == 0:
            self.u_new = p.u0()
        u = correct(p, self.u_new, item["f"], item["g"], self.ctx.xp)
        self.u_new = u
        if k + 1 < item["K"] and n + 1 < p.n_slices:
            self.ctx.send_feedback(u)
        return {"k": k + 1, "n": n + 1, "K": item["K"], "u": u, "problem": p}


class PararealResult(dict):
    """The collector's result (arrays become lists in the run file); ``str()`` is
    :func:`format_parareal`: the convergence per iteration, not the arrays."""

    def __str__(self) -> str:
        return format_parareal(self)


def format_parareal(r: dict[str, Any]) -> str:
    """Iterations, slices and grid, then per iteration the max change (and error vs the fine
    solution when the collector computed it)."""
    if r.get("U") is None:
        return "parareal: no iterates arrived"
    errors = r.get("errors")
    lines = [f"parareal: {r['iterations']} iterations over {r['n_slices']} slices, "
             f"nx = {r['nx']}" + ("" if errors else "  (set collect.params.check_fine = true "
                                  "for errors vs the serial fine solution)")]
    head = f"{'k':>3}  {'max |U^k - U^(k-1)|':>20}" + (f"  {'max |U^k - fine|':>17}"
                                                        if errors else "")
    lines += [head, "-" * len(head)]
    for k in range(1, r["iterations"] + 1):
        inc = r["increments"][k - 2] if k >= 2 else None
        row = f"{k:>3}  {'-' if inc is None else f'{inc:.3e}':>20}"
        if errors:
            row += f"  {errors[k - 1]:>17.3e}"
        lines.append(row)
    return "\n".join(lines)


class PararealCollector(Sink):
    """Collect the iterates.  Result (:class:`PararealResult`): ``U`` = U^K (N+1, nx),
    ``iterates`` U^1..U^K, ``increments`` [max |U^k - U^{k-1}| over the slice boundaries for
    k = 2..K] (they shrink as parareal converges), ``iterations``, ``n_slices``, ``nx``; with
    param ``check_fine = true`` also ``errors`` [max |U^k - fine| for k = 1..K], which costs one
    serial fine solve on this rank."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        unknown = set(ctx.params) - {"check_fine"}
        if unknown:
            raise ValueError(f"stages.{ctx.stage}.params: unknown keys {sorted(unknown)} "
                             "(known: ['check_fine'])")
        self.check_fine = ctx.params.get("check_fine", False)
        if not isinstance(self.check_fine, bool):
            raise ValueError(f"stages.{ctx.stage}.params.check_fine: must be true or false, "
                             f"got {self.check_fine!r}")
        self.rows: dict[tuple[int, int], np.ndarray] = {}
        self.u0: np.ndarray | None = None
        self.problem: HeatProblem | None = None
        self.K = 0

    def consume(self, item: dict[str, Any]) -> None:
        self.rows[item["k"], item["n"]] = np.asarray(item["u"])
        self.problem = item["problem"]
        self.u0 = self.problem.u0()
        self.K = max(self.K, item["k"])

    def iterate(self, k: int) -> np.ndarray:
        n_max = max(n for kk, n in self.rows if kk == k)
        return np.array([self.u0] + [self.rows[k, n] for n in range(1, n_max + 1)])

    def result(self) -> PararealResult:
        if not self.rows or self.problem is None:
            return PararealResult(U=None, iterates=[], increments=[], iterations=0)
        its = [self.iterate(k) for k in range(1, self.K + 1)]
        inc = [float(np.max(np.abs(b - a))) for a, b in zip(its, its[1:], strict=False)]
        out = PararealResult(U=its[-1], iterates=its, increments=inc, iterations=self.K,
                             n_slices=self.problem.n_slices, nx=self.problem.nx)
        if self.check_fine:
            ref = fine_serial(self.problem)
            out["errors"] = [float(np.max(np.abs(u - ref[:len(u)]))) for u in its]
        return out
