"""Losses on a stage's output, returning the loss and its gradient together (NumPy or CuPy).

Both are *summed over the samples* of a microbatch: pipelined training adds each microbatch's
summed-loss gradient and divides by the minibatch size once, which is the gradient of the
minibatch's mean loss (what ``torch.nn.functional.cross_entropy`` and ``mse_loss`` give with
their default ``reduction="mean"``). ``mse`` is, per sample, the mean of the squared errors over
the non-batch dimensions, so that the same division by the minibatch size gives torch's mean
over every element.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..gpu import is_device_array

__all__ = ["softmax_cross_entropy", "mse", "LOSSES", "loss_fn"]


def softmax_cross_entropy(logits: Any, labels: Any, reduction: str = "sum") -> tuple[Any, Any]:
    """Loss and d(loss)/d(logits) for integer class ``labels``.

    ``reduction="sum"`` adds the per-sample losses; that is the form pipelined training wants:
    each microbatch's summed gradient is accumulated and the total divided by the minibatch size
    once, which matches single-process training to rounding. ``"mean"`` divides by the batch.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction: must be 'sum' or 'mean', got {reduction!r}")
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits/labels: need (N, C) and (N,), got {logits.shape} and {labels.shape}"
        )
    n = logits.shape[0]
    xp = _xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # log-sum-exp without overflow
    logz = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    logp = shifted - logz
    rows = xp.arange(n)
    loss = -logp[rows, labels].sum()
    grad = xp.exp(logp)
    grad[rows, labels] -= 1
    if reduction == "mean":
        loss, grad = loss / n, grad / n
    return loss, grad


def mse(out: Any, target: Any, reduction: str = "sum") -> tuple[Any, Any]:
    """Squared error, averaged over each sample's elements and summed (or averaged) over samples."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction: must be 'sum' or 'mean', got {reduction!r}")
    if out.shape != target.shape:
        raise ValueError(f"output/target: need the same shape, got {out.shape} and "
                         f"{target.shape}")
    per = max(out[0].size, 1) if out.ndim > 1 else 1
    diff = out - target
    loss = (diff * diff).sum() / per
    grad = diff * (2.0 / per)
    if reduction == "mean":
        loss, grad = loss / out.shape[0], grad / out.shape[0]
    return loss, grad


LOSSES: dict[str, Callable[..., tuple[Any, Any]]] = {
    "cross_entropy": softmax_cross_entropy, "mse": mse,
}


def loss_fn(name: str) -> Callable[..., tuple[Any, Any]]:
    """The loss called ``name`` in ``[train] loss``."""
    if name not in LOSSES:
        raise ValueError(f"train.loss: must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def _xp(a: Any) -> Any:
    if is_device_array(a):
        import cupy  # noqa: PLC0415 - installed (or the stand-in) when a device array exists

        return cupy
    import numpy

    return numpy
