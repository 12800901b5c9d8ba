"""Split learning with round-robin clients: config, data, and the serial oracle.

Semantics (what the MPI run and :func:`train_round_robin_serial` both do):

* The training set is split into one shard per client (:func:`.data.shard`); the test set stays
  aside for evaluation.
* Each client has its own copy of the client-side stages (bottom, and head when U-shaped), all
  starting from the same initial weights; the server stages are one shared copy.
* An epoch is a sequence of minibatch steps, clients taking turns: round ``j`` gives each client
  in order ``0..C-1`` its ``j``-th minibatch (a client out of minibatches is skipped). A client's
  minibatches are its shard shuffled by ``default_rng([seed, client, epoch])``; incomplete ones
  are dropped.
* A step trains the active client's full path (its bottom, the server stages, its or the shared
  head) on one minibatch cut into ``microbatches``: summed microbatch gradients, divided by the
  minibatch size once, then one optimizer step on each stage of that path. Every stage has its
  own optimizer state; a client's stages step only on its turns.

The MPI side is the framework's (:mod:`streampipe.train`) with the :class:`.SplitLearning`
layout; a job says ``[train] uses = "pipelines.split_learning:SplitLearning"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.train import TrainConfig
from streampipe.train import parse_train as _parse_train
from streampipe.train.data import Dataset, minibatch_order
from streampipe.train.layers import Sequential
from streampipe.train.model_spec import build_model
from streampipe.train.optim import make_optimizer

from .topology import SplitLearning, round_robin
from .trainer import accumulate_minibatch, evaluate

__all__ = ["USES", "parse_train", "client_minibatches", "load_data", "build_stages",
           "initial_state", "train_round_robin_serial", "evaluate_clients"]

USES = "pipelines.split_learning:SplitLearning"


def parse_train(table: dict[str, Any], base: str | None = None) -> TrainConfig:
    """Validate a split-learning ``[train]`` table (``uses`` defaults to :data:`USES`)."""
    return _parse_train({"uses": USES, **table}, base=base)


def load_data(cfg: TrainConfig) -> tuple[list[Dataset], Dataset]:
    """Client shards of the training split, and the test split (as the ranks load them)."""
    from streampipe.train.data import load_source

    layout = cfg.layout()
    data = load_source(cfg.data["source"], cfg.base, cfg.loss) if layout.uses_source(cfg) \
        else None
    shards, test = layout.load_data(cfg, data)
    X = {c: np.asarray(s.X, cfg.np_dtype) for c, s in shards.items()}
    return [Dataset(X[c], shards[c].y) for c in sorted(shards)], test


def client_minibatches(n: int, minibatch: int, epoch: int, seed: int, client: int,
                       shuffle: bool = True) -> list[np.ndarray]:
    """Index arrays of a client's full minibatches in one epoch."""
    return minibatch_order(n, minibatch, epoch, seed, shuffle, (client,))


def build_stages(cfg: TrainConfig) -> list[Sequential]:
    """The initial model (layer tables) cut into its stages (every rank builds the same)."""
    return build_model(cfg.model, seed=cfg.seed, dtype=cfg.np_dtype).split(cfg.cuts)


def initial_state(cfg: TrainConfig) -> dict[str, tuple[Sequential, Any]]:
    """Checkpoint name -> (stage, optimizer) for every stage copy of the job."""
    layout: SplitLearning = cfg.layout()
    out: dict[str, tuple[Sequential, Any]] = {}
    for r in range(layout.size):
        stages = build_stages(cfg)
        for s, name in layout.copies(r).items():
            out[name] = (stages[s], make_optimizer(cfg.optimizer))
    return out


def _path(cfg: TrainConfig, state: dict[str, tuple[Sequential, Any]], client: int
          ) -> list[tuple[Sequential, Any]]:
    return [state[name] for name in cfg.layout().path_copies(client)]


def train_round_robin_serial(cfg: TrainConfig, shards: list[Dataset],
                             state: dict[str, tuple[Sequential, Any]] | None = None,
                             start_epoch: int = 0) -> dict[str, tuple[Sequential, Any]]:
    """The oracle: the same training in one process (see the module docstring)."""
    state = state if state is not None else initial_state(cfg)
    sizes = [len(s.y) for s in shards]
    for epoch in range(start_epoch, cfg.epochs):
        batches = [client_minibatches(n, cfg.minibatch, epoch, cfg.seed, c, cfg.shuffle)
                   for c, n in enumerate(sizes)]
        for c, j in round_robin(sizes, cfg.minibatch, epoch):
            path = _path(cfg, state, c)
            model = Sequential([layer for st, _ in path for layer in st.layers])
            idx = batches[c][j]
            accumulate_minibatch(model, shards[c].X[idx], shards[c].y[idx], cfg.microbatches,
                                 cfg.loss)
            for st, opt in path:
                opt.step(st.params, st.grads)
    return state


def evaluate_clients(cfg: TrainConfig, state: dict[str, tuple[Sequential, Any]],
                     test: Dataset) -> list[float]:
    """Test accuracy of each client's full model."""
    out = []
    for c in range(cfg.layout().clients):
        model = Sequential([layer for st, _ in _path(cfg, state, c) for layer in st.layers])
        out.append(evaluate(model, test))
    return out
