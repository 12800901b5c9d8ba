"""streampipe: stream pipelines on MPI, one rank per stage, bounded credit-based queues.

Public API::

    import streampipe as sp

    class Square(sp.Stage):
        def process(self, x):
            return x * x

Build a pipeline with :class:`Pipeline` or describe it in a TOML job file and run it with
``streampipe run JOB`` (or :func:`run` under ``mpiexec``).  :mod:`streampipe.gpu` (also
``sp.gpu``) holds the GPU helpers a stage may use: memory budgets, device arrays, and
``register_kernel_reference`` for the CuPy stand-in (docs/gpu.md).  :mod:`streampipe.train`
(also ``sp.train``) is pipeline-parallel training of your own model: a job's ``[train]`` table,
the :class:`~streampipe.train.StageWorker` protocol and :class:`~streampipe.train.Layout`
(docs/training.md).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import gpu, train
from .api import Pipeline, run, run_spec
from .faults import Fault
from .job import JobError, JobSpec, StageSpec, load_job
from .plan import Plan, make_plan
from .runtime import RunOptions
from .stage import Context, FunctionStage, Sink, Source, Stage, StageError, stage

__all__ = [
    "Context", "Fault", "FunctionStage", "JobError", "JobSpec", "Pipeline", "Plan", "RunOptions",
    "Sink", "Source", "Stage", "StageError", "StageSpec", "load_job", "make_plan", "run",
    "run_spec", "stage", "gpu", "train", "__version__",
]
