"""Pipeline-parallel training: a model cut into stages, trained over MPI with microbatches.

A ``[train]`` table in a job file describes the model (streampipe layers or a torch
``Sequential``, :mod:`.model`), the cuts, the schedule (:mod:`streampipe.schedule`), the data
(:mod:`.data`), the device and the layout of stages on ranks (:mod:`.layout`; split learning is
the built-in layout :mod:`pipelines.split_learning`). ``streampipe run JOB`` starts the ranks;
each runs :func:`run_train`. See docs/training.md.

Modules, one idea each: :mod:`.config` the ``[train]`` table; :mod:`.layout` who runs what;
:mod:`.model` loading a user's model, :mod:`.layer_worker` and :mod:`.torch_adapter` the two
model kinds; :mod:`.worker` the stage-worker protocol; :mod:`.executor` one rank's actions;
:mod:`.wire` the links on the stream transport; :mod:`.replicas` data-parallel all-reduce;
:mod:`.session` the per-rank driver; :mod:`.results` report and summary; :mod:`.checkpoint`
HDF5 checkpoints; :mod:`.plan` ``streampipe plan``; :mod:`.local` the in-process executor;
:mod:`.layers`, :mod:`.losses`, :mod:`.optim`, :mod:`.partition`, :mod:`.model_spec` the
numerical parts for streampipe's own layers.
"""

from __future__ import annotations

from .config import TrainConfig, parse_train
from .layout import Layout, Pipeline
from .plan import plan_text
from .session import run_train, train_ranks
from .worker import StageWorker

__all__ = ["Layout", "Pipeline", "StageWorker", "TrainConfig", "parse_train", "plan_text",
           "run_train", "train_ranks"]
