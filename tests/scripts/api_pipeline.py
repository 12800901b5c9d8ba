"""Run under mpiexec -n 6: the Python API builds and runs a pipeline, and sp.run runs a job file."""

import json
import sys

import streampipe as sp
from tests.stages import Collect, Numbers, Square


@sp.stage
def plus_one(x):
    return x + 1


p = sp.Pipeline("api", capacity=4, ordered=True)
p.add(Numbers, name="numbers", params={"n": 50}).add(Square, replicas=3).add(plus_one).add(Collect)
result = p.run(out=sys.argv[1], quiet=True)
job_result = sp.run(sys.argv[2], overrides=["stages.numbers.params.n=7"], quiet=True)

from mpi4py import MPI  # noqa: E402

rank = MPI.COMM_WORLD.Get_rank()
with open(f"{sys.argv[3]}/rank{rank}.json", "w") as f:  # ranks' stdout lines can interleave
    json.dump({"rank": rank, "pipeline": result, "job": job_result}, f)
