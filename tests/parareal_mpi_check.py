"""Run under mpiexec by test_parareal_mpi.py: the distributed fine solve and the FineCorrector
group protocol on COMM_WORLD, compared on rank 0 with the serial solver (prints one line)."""

import numpy as np
from mpi4py import MPI

from pipelines.parareal import FineCorrector, HeatProblem, fine_solve_distributed
from streampipe.stage import Context

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
# nx = 50 does not divide by 3: blocks of 17, 17, 16 test uneven splits; boundaries non-zero.
p = HeatProblem(nx=50, nu=0.7, T=0.05, n_slices=2, fine_steps=2000, left=0.3, right=-0.2)
u = p.u0() if rank == 0 else None
dist = fine_solve_distributed(comm, u, p.dt_fine, p.fine_steps, nu=p.nu, left=p.left,
                              right=p.right)
stage = FineCorrector()
stage.setup(Context(comm=comm, group_rank=rank, rank=rank, size=comm.Get_size()))
item = {"k": 0, "n": 0, "K": 1, "problem": p, "u": u} if rank == 0 else None
out = stage.process(item)
if rank == 0:
    serial = fine_solve_distributed(None, p.u0(), p.dt_fine, p.fine_steps, nu=p.nu,
                                    left=p.left, right=p.right)
    d1 = np.max(np.abs(dist - serial))
    d2 = np.max(np.abs(out["f"] - serial))
    print(f"RESULT size={comm.Get_size()} solve={d1:.3e} stage={d2:.3e}", flush=True)
else:
    assert dist is None and out is None
