"""The serial reference trainer for streampipe layers: what pipelined training must reproduce.

Gradient convention (DESIGN.md): each microbatch contributes the gradient of its *summed* loss,
the contributions are added in microbatch order, and the total is divided by the minibatch size
once before the optimizer step. A pipeline that runs each stage's backwards in microbatch order
(GPipe and 1F1B as built by :mod:`streampipe.schedule`) then matches this to rounding
(~1e-15 in float64); dividing per microbatch or averaging means drifts.

:func:`minibatches` and :func:`microbatch_bounds` are shared with the pipelined version so that
both see the same samples in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from streampipe.train.data import Dataset, minibatch_order
from streampipe.train.layers import Sequential
from streampipe.train.local import microbatch_bounds
from streampipe.train.losses import loss_fn

__all__ = ["TrainResult", "minibatches", "microbatch_bounds", "accumulate_minibatch",
           "train_serial", "evaluate"]


class TrainResult(NamedTuple):
    epoch_loss: list[float]  # mean training loss per sample, per epoch
    steps: int


def minibatches(n: int, minibatch: int, epoch: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Sample indices of each full minibatch of an epoch (shuffled by ``(seed, epoch)``).

    The incomplete last minibatch is dropped so every step divides by the same size.
    """
    yield from minibatch_order(n, minibatch, epoch, seed)


def accumulate_minibatch(model: Sequential, X: Any, y: Any, n_micro: int,
                         loss: str = "cross_entropy") -> float:
    """Zero the grads, add each microbatch's summed-loss gradient in order, divide by len(y) once.

    Returns the minibatch's summed loss. Leaves the averaged gradient in ``model.grads``.
    """
    model.zero_grad()
    fn = loss_fn(loss)
    total = 0.0
    for a, b in microbatch_bounds(len(y), n_micro):
        out = model.forward(X[a:b], mb=a)
        value, g = fn(out, y[a:b], reduction="sum")
        model.backward(g, mb=a)
        total += float(value)
    for g in model.grads:
        g /= len(y)
    return total


def train_serial(model: Sequential, data: Dataset, minibatch: int, n_micro: int, epochs: int,
                 opt: Any, *, seed: int = 0) -> TrainResult:
    """Train ``model`` in place: ``epochs`` passes of minibatch steps with microbatch accumulation.

    ``opt`` has ``step(params, grads)`` (see :mod:`.optim`). Data go to the model's array module
    and dtype here.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs: must be an integer >= 0, got {epochs!r}")
    xp = model.layers[0].xp
    dtype = model.layers[0].dtype
    X = xp.asarray(data.X, dtype=dtype)
    y = xp.asarray(data.y)
    losses, steps = [], 0
    for epoch in range(epochs):
        total = seen = 0
        for idx in minibatches(len(data.y), minibatch, epoch, seed):
            idx = xp.asarray(idx)
            total += accumulate_minibatch(model, X[idx], y[idx], n_micro)
            seen += len(idx)
            opt.step(model.params, model.grads)
            steps += 1
        losses.append(total / seen)
    return TrainResult(losses, steps)


def evaluate(model: Sequential, data: Dataset, batch: int = 512) -> float:
    """Classification accuracy of ``model`` on ``data`` (argmax of the logits)."""
    xp = model.layers[0].xp
    X = xp.asarray(data.X, dtype=model.layers[0].dtype)
    correct = 0
    for a in range(0, len(data.y), batch):
        logits = model.forward(X[a:a + batch], mb=("eval", a))
        model.drop(("eval", a))  # inference: drop what forward kept for a backward
        correct += int((xp.argmax(logits, axis=1) == xp.asarray(data.y[a:a + batch])).sum())
    return correct / len(data.y)
