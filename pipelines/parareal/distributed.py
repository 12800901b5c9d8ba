"""The fine propagator as a group computation: explicit Euler on a block-decomposed grid.

Each rank owns a contiguous block of the interior points plus one ghost cell per side; a step
exchanges the edge values with the neighbours, then updates the block.  Every point is updated
by the same expression in the same order as on one rank, so the result equals the serial one
bit for bit.

On a GPU (``xp`` = CuPy) the blocks live on the device and every step is the same four
elementwise operations, each one IEEE operation in a kernel of its own (no contraction into an
FMA is possible across kernels), so a GPU run equals the CPU run.  Scatter, gather and the halo
exchange go through the host unless the MPI is CUDA-aware (``streampipe.gpu.cuda_aware_mpi``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe import gpu

__all__ = ["fine_solve_distributed"]


def _step(ext: Any, r: float) -> None:
    """One explicit Euler step of the interior of ``ext`` (ghost cells at both ends)."""
    ext[1:-1] = ext[1:-1] + r * (ext[:-2] - 2.0 * ext[1:-1] + ext[2:])


def fine_solve_distributed(comm: Any, u: Any, dt: float | None,
                           steps: int | None, *, nu: float = 1.0, left: float = 0.0,
                           right: float = 0.0, root: int = 0, xp: Any = np) -> Any:
    """``steps`` explicit Euler steps of u_t = nu u_xx (h = 1/(len(u)+1), Dirichlet ``left``,
    ``right``) on the ranks of ``comm``; returns the result on ``root`` (an ``xp`` array), None
    elsewhere.

    ``u``, ``dt``, ``steps``, ``nu``, ``left`` and ``right`` are read on ``root`` only (others may
    pass None).  ``comm`` None or of size 1 is the serial solver.  ``xp`` is where the blocks are
    computed (NumPy, or CuPy on a GPU stage); ``u`` may be on the host or the device.
    """
    size = 1 if comm is None else comm.Get_size()
    rank = 0 if comm is None else comm.Get_rank()
    if rank == root:
        u = xp.ascontiguousarray(xp.asarray(u, dtype=xp.float64))
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
    ext = xp.empty(m + 2)
    ext[0], ext[-1] = left, right  # kept only on the ranks at the domain's ends
    if size == 1:
        ext[1:-1] = u
        for _ in range(steps):
            _step(ext, r)
        return ext[1:-1].copy()

    from mpi4py import MPI

    direct = xp is np or gpu.cuda_aware_mpi()  # may MPI read and write xp's memory itself
    stage = (lambda a: a) if direct else gpu.to_host
    block = np.empty(m) if not direct else ext[1:-1]
    comm.Scatterv([stage(u), counts, displs, MPI.DOUBLE] if rank == root else None, block,
                  root=root)
    if not direct:
        ext[1:-1] = xp.asarray(block)
    lo = rank - 1 if rank > 0 else MPI.PROC_NULL
    hi = rank + 1 if rank < size - 1 else MPI.PROC_NULL
    ghost = np.empty(2) if not direct else None
    for _ in range(steps):
        # Send my first point left while receiving my right ghost, and the reverse; PROC_NULL
        # leaves the fixed boundary values of the end ranks untouched.
        if direct:
            comm.Sendrecv(ext[1:2], dest=lo, sendtag=1, recvbuf=ext[-1:], source=hi, recvtag=1)
            comm.Sendrecv(ext[-2:-1], dest=hi, sendtag=2, recvbuf=ext[0:1], source=lo,
                          recvtag=2)
        else:
            edges = gpu.to_host(ext[xp.asarray([1, m])])  # both edge values in one copy
            ghost[0], ghost[1] = (left if lo == MPI.PROC_NULL else 0.0,
                                  right if hi == MPI.PROC_NULL else 0.0)
            comm.Sendrecv(edges[0:1], dest=lo, sendtag=1, recvbuf=ghost[1:2], source=hi,
                          recvtag=1)
            comm.Sendrecv(edges[1:2], dest=hi, sendtag=2, recvbuf=ghost[0:1], source=lo,
                          recvtag=2)
            ext[xp.asarray([0, m + 1])] = ghost
        _step(ext, r)
    out = np.empty(n) if rank == root else None
    comm.Gatherv(stage(ext[1:-1]), [out, counts, displs, MPI.DOUBLE] if rank == root else None,
                 root=root)
    return xp.asarray(out) if rank == root and xp is not np else out
