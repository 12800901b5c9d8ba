"""Softmax cross-entropy on logits, returning the loss and its gradient together."""

from __future__ import annotations

from typing import Any

__all__ = ["softmax_cross_entropy"]


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


def _xp(a: Any) -> Any:
    try:
        import cupy

        return cupy.get_array_module(a)
    except ImportError:
        import numpy

        return numpy
