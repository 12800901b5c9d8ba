"""The fine propagator as a group computation: explicit Euler on a block-decomposed grid.

Each rank owns a contiguous block of the interior points plus one ghost cell per side; a step
exchanges the edge values with the neighbours, then updates the block.  Every point is updated
by the same expression in the same order as on one rank, so the result equals the serial one
bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fine_solve_distributed"]


def _step(ext: np.ndarray, r: float) -> None:
    """One explicit Euler step of the interior of ``ext`` (ghost cells at both ends)."""
    ext[1:-1] = ext[1:-1] + r * (ext[:-2] - 2.0 * ext[1:-1] + ext[2:])


def fine_solve_distributed(comm: Any, u: np.ndarray | None, dt: float | None,
                           steps: int | None, *, nu: float = 1.0, left: float = 0.0,
                           right: float = 0.0, root: int = 0) -> np.ndarray | None:
    """``steps`` explicit Euler steps of u_t = nu u_xx (h = 1/(len(u)+1), Dirichlet ``left``,
    ``right``) on the ranks of ``comm``; returns the result on ``root``, None elsewhere.

    ``u``, ``dt``, ``steps``, ``nu``, ``left`` and ``right`` are read on ``root`` only (others may
    pass None).  ``comm`` None or of size 1 is the serial solver.
    """
    size = 1 if comm is None else comm.Get_size()
    rank = 0 if comm is None else comm.Get_rank()
    if rank == root:
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.ndim != 1:
            raise ValueError(f"u: need a 1-D grid, got shape {u.shape}")
        if u.size < size:
            raise ValueError(f"u: {u.size} grid points cannot be split over {size} ranks")
        header = (u.size, float(dt), int(steps), float(nu), float(left), float(right))
    else:
        header = None
    if size > 1:
        header = comm.bcast(header, root=root)
    n, dt, steps, nu, left, right = header
    r = nu * dt * (n + 1) ** 2  # nu dt / h^2 with h = 1/(n+1)

    counts = np.array([len(b) for b in np.array_split(np.arange(n), size)])
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
    m = int(counts[rank])
    ext = np.empty(m + 2)
    ext[0], ext[-1] = left, right  # kept only on the ranks at the domain's ends
    if size == 1:
        ext[1:-1] = u
        for _ in range(steps):
            _step(ext, r)
        return ext[1:-1].copy()

    from mpi4py import MPI

    comm.Scatterv([u, counts, displs, MPI.DOUBLE] if rank == root else None, ext[1:-1],
                  root=root)
    lo = rank - 1 if rank > 0 else MPI.PROC_NULL
    hi = rank + 1 if rank < size - 1 else MPI.PROC_NULL
    for _ in range(steps):
        # Send my first point left while receiving my right ghost, and the reverse; PROC_NULL
        # leaves the fixed boundary values of the end ranks untouched.
        comm.Sendrecv(ext[1:2], dest=lo, sendtag=1, recvbuf=ext[-1:], source=hi, recvtag=1)
        comm.Sendrecv(ext[-2:-1], dest=hi, sendtag=2, recvbuf=ext[0:1], source=lo, recvtag=2)
        _step(ext, r)
    out = np.empty(n) if rank == root else None
    comm.Gatherv(ext[1:-1], [out, counts, displs, MPI.DOUBLE] if rank == root else None,
                 root=root)
    return out
