"""Optimizers for streampipe layers, updating parameter arrays in place: SGD with momentum, Adam.

``step(params, grads)`` takes parallel lists; state is created on the first step, so one
optimizer object per pipeline stage serves that stage's slice of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SGD", "Adam", "make_optimizer"]


def _positive(name: str, v: float, allow_zero: bool = False) -> float:
    v = float(v)
    if not (v > 0 or (allow_zero and v == 0)):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return v


class SGD:
    """``v = momentum * v + g; p -= lr * v`` (PyTorch's form; momentum 0 is plain SGD)."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.0) -> None:
        self.lr = _positive("lr", lr)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum: must be < 1, got {self.momentum}")
        self._v: list[Any] | None = None

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> None:
        if self.momentum == 0:
            for p, g in zip(params, grads, strict=True):
                p -= self.lr * g
            return
        if self._v is None:
            self._v = [g.copy() for g in grads]
        else:
            for v, g in zip(self._v, grads, strict=True):
                v *= self.momentum
                v += g
        for p, v in zip(params, self._v, strict=True):
            p -= self.lr * v


class Adam:
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.lr = _positive("lr", lr)
        self.eps = _positive("eps", eps)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ValueError(f"{name}: must be in [0, 1), got {b}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.t = 0
        self._m: list[Any] | None = None
        self._v: list[Any] | None = None

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> None:
        if self._m is None:
            self._m = [g * 0 for g in grads]
            self._v = [g * 0 for g in grads]
        self.t += 1
        c1 = 1 - self.beta1**self.t
        c2 = 1 - self.beta2**self.t
        for p, g, m, v in zip(params, grads, self._m, self._v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= self.lr * (m / c1) / ((v / c2) ** 0.5 + self.eps)


def make_optimizer(spec: dict[str, Any]) -> SGD | Adam:
    """Build from a job-file table such as ``{"name": "sgd", "lr": 0.1, "momentum": 0.9}``."""
    spec = dict(spec)
    name = spec.pop("name", "sgd")
    kinds = {"sgd": SGD, "adam": Adam}
    if name not in kinds:
        raise ValueError(f"optimizer.name: must be one of {sorted(kinds)}, got {name!r}")
    try:
        return kinds[name](**spec)
    except TypeError as e:
        raise ValueError(f"optimizer: {e}") from None
