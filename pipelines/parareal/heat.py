"""The 1-D heat equation u_t = nu u_xx on [0, 1] with constant Dirichlet boundary values, its
coarse (implicit Euler) and fine (explicit Euler) propagators, and serial parareal.

Grid: ``nx`` interior points x_i = i h, h = 1 / (nx + 1); time [0, T] cut into ``n_slices``
slices of length T / n_slices.  The coarse propagator G takes ``coarse_steps`` implicit Euler
steps per slice (stable for any step); the fine propagator F takes ``fine_steps`` explicit Euler
steps per slice and needs r = nu dt / h^2 <= 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streampipe import gpu

__all__ = ["HeatProblem", "coarse", "fine", "fine_serial", "parareal_serial"]


@dataclass(frozen=True)
class HeatProblem:
    """One parareal problem; ``modes`` = [(wave number, amplitude)] of the initial sine series."""

    nx: int = 63
    nu: float = 1.0
    T: float = 0.1
    n_slices: int = 8
    coarse_steps: int = 1
    fine_steps: int = 200
    left: float = 0.0
    right: float = 0.0
    modes: tuple[tuple[int, float], ...] = field(default=((1, 1.0), (4, 0.5), (9, 0.2)))

    def __post_init__(self) -> None:
        for name in ("nx", "n_slices", "coarse_steps", "fine_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        for name in ("nu", "T"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.r_fine > 0.5:
            need = int(np.ceil(self.nu * self.dt_fine * self.fine_steps / (0.5 * self.h**2)))
            raise ValueError(f"fine_steps: explicit Euler needs nu*dt/h^2 <= 0.5, got "
                             f"{self.r_fine:.3g}; use fine_steps >= {need}")

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str = "params") -> HeatProblem:
        """Build from a job's params table; unknown keys are an error naming the key."""
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        kw = dict(params)
        if "modes" in kw:
            kw["modes"] = tuple((int(k), float(a)) for k, a in kw["modes"])
        try:
            return cls(**kw)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None

    @property
    def h(self) -> float:
        return 1.0 / (self.nx + 1)

    @property
    def x(self) -> np.ndarray:
        return np.arange(1, self.nx + 1) * self.h

    @property
    def dt_slice(self) -> float:
        return self.T / self.n_slices

    @property
    def dt_fine(self) -> float:
        return self.dt_slice / self.fine_steps

    @property
    def r_fine(self) -> float:
        return self.nu * self.dt_fine / self.h**2

    def u0(self) -> np.ndarray:
        """Initial condition: the sine series plus the linear profile joining the boundaries."""
        x = self.x
        u = self.left + (self.right - self.left) * x
        for k, a in self.modes:
            u = u + a * np.sin(k * np.pi * x)
        return u


def coarse(p: HeatProblem, u: Any, xp: Any = np) -> Any:
    """G: ``coarse_steps`` implicit Euler steps over one slice (tridiagonal solves).

    The solves are sequential and small, so they run on the host whatever ``xp`` is; ``u`` may
    be on the host or the device, the result is an ``xp`` array.
    """
    from scipy.linalg import solve_banded

    u = gpu.to_host(u)
    dt = p.dt_slice / p.coarse_steps
    r = p.nu * dt / p.h**2
    ab = np.empty((3, p.nx))
    ab[0, :], ab[1, :], ab[2, :] = -r, 1 + 2 * r, -r
    bc = np.zeros(p.nx)
    bc[0], bc[-1] = r * p.left, r * p.right
    for _ in range(p.coarse_steps):
        u = solve_banded((1, 1), ab, u + bc)
    return u if xp is np else xp.asarray(u)


def fine(p: HeatProblem, u: Any, xp: Any = np) -> Any:
    """F: ``fine_steps`` explicit Euler steps over one slice (serial path of the same kernel
    that :func:`~pipelines.parareal.distributed.fine_solve_distributed` runs per block)."""
    from .distributed import fine_solve_distributed

    return fine_solve_distributed(None, u, p.dt_fine, p.fine_steps, nu=p.nu, left=p.left,
                                  right=p.right, xp=xp)


def fine_serial(p: HeatProblem) -> np.ndarray:
    """The serial fine solution at every slice boundary, shape (n_slices + 1, nx)."""
    out = [p.u0()]
    for _ in range(p.n_slices):
        out.append(fine(p, out[-1]))
    return np.array(out)


def parareal_serial(u0: np.ndarray, K: int, p: HeatProblem) -> list[np.ndarray]:
    """Parareal iterates U^0 .. U^K, each of shape (n_slices + 1, nx).

    U^{k+1}_{n+1} = G(U^{k+1}_n) + F(U^k_n) - G(U^k_n), U^k_0 = u0, U^0 the coarse sweep.
    After k iterations the first k slices equal the fine solution, so K = n_slices is exact.
    """
    N = p.n_slices
    U = [np.asarray(u0, dtype=np.float64)]
    for _ in range(N):
        U.append(coarse(p, U[-1]))
    iterates = [np.array(U)]
    for _ in range(K):
        prev = iterates[-1]
        new = [prev[0]]
        for n in range(N):
            new.append(correct(p, new[n], fine(p, prev[n]), coarse(p, prev[n])))
        iterates.append(np.array(new))
    return iterates


def correct(p: HeatProblem, u_new: Any, f_old: Any, g_old: Any, xp: Any = np) -> Any:
    """The parareal update G(U^{k+1}_n) + F(U^k_n) - G(U^k_n), in one fixed order of operations
    (the pipeline's corrector calls this too, so both give bit-identical iterates); the
    arrays are ``xp`` arrays (``u_new`` may be on the host)."""
    return coarse(p, u_new, xp) + f_old - g_old
