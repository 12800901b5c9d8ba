"""The Python front: build a pipeline in code or load a job file, and run it under MPI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .faults import Fault
from .job import JobError, JobSpec, StageSpec, load_job, validate
from .runtime import RunOptions, run_rank

__all__ = ["Pipeline", "run", "run_spec"]


class Pipeline:
    """A pipeline built in Python; ``run()`` does what ``streampipe run`` does for a job file.

    Example::

        p = sp.Pipeline("squares", capacity=8, ordered=True)
        p.add(Numbers, params={"n": 100}).add(Square, replicas=3).add(Collect)
        result = p.run()        # under mpiexec -n 5
    """

    def __init__(self, name: str = "pipeline", *, capacity: int = 8, ordered: bool = True,
                 batch: int = 64, max_delay: float | None = None) -> None:
        self.name, self.capacity, self.ordered, self.batch = name, capacity, ordered, batch
        self.max_delay = max_delay
        self.stages: list[StageSpec] = []

    def add(self, stage: Any, *, name: str | None = None, replicas: int = 1, group: int = 1,
            capacity: int | None = None, device: str = "cpu", feedback_to: str | None = None,
            timeout: float | None = None, params: dict[str, Any] | None = None,
            inputs: list[str] | None = None, join: str | None = None, route: str = "balance",
            key: Any = None) -> Pipeline:
        """Append a stage: a Stage/Source/Sink class, an instance, or an ``@sp.stage`` function.

        ``inputs`` names the stages it reads (default: the stage added before it; a Source reads
        nothing); ``join`` ("merge" or "zip") how several inputs meet; ``route = "key"`` with
        ``key`` (a function of the item, or ``"module:function"``) sends every item with the
        same key to the same replica (docs/graphs.md). The same fields as a job file's."""
        default = getattr(stage, "__name__", type(stage).__name__).lower()
        self.stages.append(StageSpec(
            name=name or default, uses=f"<python:{default}>", replicas=replicas, group=group,
            capacity=capacity, device=device, feedback_to=feedback_to, timeout=timeout,
            params=dict(params or {}), obj=stage,
            inputs=list(inputs) if inputs is not None else None, join=join, route=route,
            key=key))
        return self

    def spec(self) -> JobSpec:
        """The validated JobSpec of this pipeline."""
        settings = {} if self.max_delay is None else {"max_delay": self.max_delay}
        spec = JobSpec(self.name, list(self.stages), self.capacity, self.ordered, self.batch,
                       settings=settings)
        for i, st in enumerate(spec.stages):
            for key, value in (("replicas", st.replicas), ("group", st.group)):
                if value < 1:
                    raise JobError(f"stages[{i}].{key}: must be >= 1, got {value}")
        validate(spec)
        return spec

    def run(self, out: str | None = None, **options: Any) -> Any:
        """Run under MPI (all ranks call this); returns the sink's result on every rank."""
        return run_spec(self.spec(), out=out, **options)


def run_spec(spec: JobSpec, out: str | None = None, comm: Any = None,
             faults: list[Fault] | None = None, **options: Any) -> Any:
    """Run a JobSpec on ``comm`` (default COMM_WORLD); every rank of the job calls this."""
    from mpi4py import MPI

    comm = comm or MPI.COMM_WORLD
    if comm.Get_size() == 1 and spec.ranks > 1:
        raise JobError(f"job {spec.name!r} needs {spec.ranks} ranks: start it with "
                       f"`mpiexec -n {spec.ranks} python {Path(sys.argv[0]).name}` "
                       "or `streampipe run JOB`")
    opts = RunOptions(out=out, faults=list(faults or []), **options)
    return run_rank(spec, comm, opts)


def run(job: str | Path, overrides: list[str] | None = None, out: str | None = None,
        **options: Any) -> Any:
    """Load a TOML job and run it under MPI; returns the sink's result on every rank."""
    return run_spec(load_job(job, overrides), out=out, **options)
