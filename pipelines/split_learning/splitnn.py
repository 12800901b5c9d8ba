"""Split learning with round-robin clients: the ``[train]`` table, data, and the serial oracle.

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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Dataset, load_digits, shard, train_test_split
from .layers import Sequential
from .model import build_model
from .optim import make_optimizer
from .topology import SCHEDULES, Topology
from .trainer import accumulate_minibatch, evaluate

__all__ = ["TrainConfig", "parse_train", "client_minibatches", "round_robin", "load_data",
           "build_stages", "train_round_robin_serial", "evaluate_clients"]


@dataclass
class TrainConfig:
    """The validated ``[train]`` table of a job file."""

    model: list[dict[str, Any]]
    cuts: list[int]
    schedule: str = "1f1b"
    microbatches: int = 4
    virtual: int = 1
    minibatch: int = 32
    epochs: int = 1
    clients: int = 1
    u_shape: bool = False
    dtype: str = "float64"
    seed: int = 0
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "sgd", "lr": 0.1})
    data: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    resume: str = ""
    layer_times: list[float] = field(default_factory=list)
    audit_samples: int = 300

    @property
    def topology(self) -> Topology:
        return Topology(len(self.cuts) + 1, self.clients, self.u_shape, self.schedule,
                        self.microbatches, self.virtual)

    @property
    def np_dtype(self) -> Any:
        return np.dtype(self.dtype)


_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": list, "cuts": list, "schedule": str, "microbatches": int, "virtual": int,
    "minibatch": int, "epochs": int, "clients": int, "u_shape": bool, "dtype": str, "seed": int,
    "optimizer": dict, "data": dict, "checkpoint": str, "resume": str, "layer_times": list,
    "audit_samples": int,
}
_DATA_KEYS = {"source": str, "test_fraction": float, "shard": str, "alpha": float, "limit": int}


def _check_types(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for k, v in table.items():
        if k not in allowed:
            raise ValueError(f"{where}.{k}: unknown key (allowed: {', '.join(allowed)})")
        want = allowed[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            continue
        if isinstance(v, bool) and want is not bool or not isinstance(v, want):
            raise ValueError(f"{where}.{k}: expected {getattr(want, '__name__', want)}, "
                             f"got {type(v).__name__} {v!r}")


def parse_train(table: dict[str, Any]) -> TrainConfig:
    """Validate a job's ``[train]`` table; errors name the field (``train.cuts[1]``)."""
    _check_types(table, _KEYS, "train")
    for k in ("model", "cuts"):
        if k not in table:
            raise ValueError(f"train.{k}: required")
    _check_types(table.get("data", {}), _DATA_KEYS, "train.data")
    cfg = TrainConfig(**{k: v for k, v in table.items()})
    for k in ("microbatches", "minibatch", "clients"):
        if getattr(cfg, k) < 1:
            raise ValueError(f"train.{k}: must be >= 1, got {getattr(cfg, k)}")
    if cfg.epochs < 0:
        raise ValueError(f"train.epochs: must be >= 0, got {cfg.epochs}")
    if cfg.microbatches > cfg.minibatch:
        raise ValueError(f"train.microbatches: must be <= minibatch ({cfg.minibatch}), "
                         f"got {cfg.microbatches}")
    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"train.dtype: must be 'float32' or 'float64', got {cfg.dtype!r}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"train.schedule: must be one of {sorted(SCHEDULES)}, "
                         f"got {cfg.schedule!r}")
    try:
        build_model(cfg.model, seed=cfg.seed)
    except ValueError as e:
        raise ValueError(f"train.{e}") from None
    n = len(cfg.model)
    prev = 0
    for i, c in enumerate(cfg.cuts):
        if not isinstance(c, int) or isinstance(c, bool) or not prev < c < n:
            raise ValueError(f"train.cuts[{i}]: must be an integer in {prev + 1}..{n - 1} "
                             f"(cuts increase and every stage keeps a layer), got {c!r}")
        prev = c
    for i, t in enumerate(cfg.layer_times):
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not t >= 0:
            raise ValueError(f"train.layer_times[{i}]: must be a time >= 0, got {t!r}")
    if cfg.layer_times and len(cfg.layer_times) != n:
        raise ValueError(f"train.layer_times: needs one time per layer ({n}), "
                         f"got {len(cfg.layer_times)}")
    try:
        make_optimizer(cfg.optimizer)
    except ValueError as e:
        msg = str(e)
        raise ValueError(f"train.{msg}" if msg.startswith("optimizer") else
                         f"train.optimizer.{msg}") from None
    cfg.topology  # noqa: B018 - raises on a topology that cannot work
    return cfg


# ---------------------------------------------------------------------------- data and order


def load_data(cfg: TrainConfig) -> tuple[list[Dataset], Dataset]:
    """Client shards of the training split, and the test split (features in ``cfg.dtype``)."""
    d = cfg.data
    full = load_digits(d.get("source", "auto"), dtype=cfg.np_dtype)
    train, test = train_test_split(full, float(d.get("test_fraction", 0.25)), seed=cfg.seed)
    limit = int(d.get("limit", 0))
    if limit:
        train = Dataset(train.X[:limit], train.y[:limit])
    shards = shard(train, cfg.clients, d.get("shard", "iid"), alpha=float(d.get("alpha", 0.5)),
                   seed=cfg.seed)
    for c, s in enumerate(shards):
        if len(s.y) < cfg.minibatch:
            raise ValueError(f"train.minibatch: client {c} has only {len(s.y)} samples, fewer "
                             f"than one minibatch of {cfg.minibatch}")
    return shards, test


def client_minibatches(n: int, minibatch: int, epoch: int, seed: int, client: int
                       ) -> list[np.ndarray]:
    """Index arrays of a client's full minibatches in one epoch."""
    perm = np.random.default_rng([seed, client, epoch]).permutation(n)
    return [perm[k * minibatch:(k + 1) * minibatch] for k in range(n // minibatch)]


def round_robin(sizes: list[int], minibatch: int, epoch: int) -> Iterator[tuple[int, int]]:
    """``(client, j)`` for every step of an epoch: clients take turns, round ``j`` by round."""
    counts = [n // minibatch for n in sizes]
    for j in range(max(counts, default=0)):
        for c, k in enumerate(counts):
            if j < k:
                yield c, j


# ---------------------------------------------------------------------------- models


def build_stages(cfg: TrainConfig, xp: Any = np) -> list[Sequential]:
    """The initial model cut into its stages (every rank builds the same weights)."""
    return build_model(cfg.model, seed=cfg.seed, xp=xp, dtype=cfg.np_dtype).split(cfg.cuts)


def initial_state(cfg: TrainConfig) -> dict[str, tuple[Sequential, Any]]:
    """Checkpoint name -> (stage, optimizer) for every stage copy of the job."""
    topo = cfg.topology
    out: dict[str, tuple[Sequential, Any]] = {}
    for c in range(cfg.clients):
        stages = build_stages(cfg)
        for s in topo.client_stages:
            out[topo.stage_name(s, c)] = (stages[s], make_optimizer(cfg.optimizer))
    stages = build_stages(cfg)
    for s in topo.server_stages:
        out[topo.stage_name(s)] = (stages[s], make_optimizer(cfg.optimizer))
    return out


def path_of(cfg: TrainConfig, state: dict[str, tuple[Sequential, Any]], client: int
            ) -> list[tuple[Sequential, Any]]:
    """The (stage, optimizer) pairs of ``client``'s full model, in stage order."""
    topo = cfg.topology
    return [state[topo.stage_name(s, client)] for s in range(topo.n_stages)]


def train_round_robin_serial(cfg: TrainConfig, shards: list[Dataset],
                             state: dict[str, tuple[Sequential, Any]] | None = None,
                             start_epoch: int = 0) -> dict[str, tuple[Sequential, Any]]:
    """The oracle: the same training in one process (see the module docstring)."""
    state = state if state is not None else initial_state(cfg)
    sizes = [len(s.y) for s in shards]
    for epoch in range(start_epoch, cfg.epochs):
        batches = [client_minibatches(n, cfg.minibatch, epoch, cfg.seed, c)
                   for c, n in enumerate(sizes)]
        for c, j in round_robin(sizes, cfg.minibatch, epoch):
            path = path_of(cfg, state, c)
            model = Sequential([layer for st, _ in path for layer in st.layers])
            idx = batches[c][j]
            accumulate_minibatch(model, shards[c].X[idx], shards[c].y[idx], cfg.microbatches)
            for st, opt in path:
                opt.step(st.params, st.grads)
    return state


def evaluate_clients(cfg: TrainConfig, state: dict[str, tuple[Sequential, Any]],
                     test: Dataset) -> list[float]:
    """Test accuracy of each client's full model."""
    out = []
    for c in range(cfg.clients):
        model = Sequential([layer for st, _ in path_of(cfg, state, c) for layer in st.layers])
        out.append(evaluate(model, test))
    return out
