"""streampipe's own layers: explicit forward/backward, written once through an ``xp`` module.

Every layer keeps the inputs it needs for its backward *per microbatch key*: ``forward(x, mb)``
stores, ``backward(grad, mb)`` pops. That is what lets one stage hold several microbatches in
flight (1F1B), and the number of stored keys is the stage's live-activation count.

``backward`` returns the gradient with respect to the input and *adds* the parameter gradients
into ``grads`` (accumulation over microbatches; :meth:`Layer.zero_grad` clears them). It is
:meth:`Layer.backward_input` followed by :meth:`Layer.backward_weight`, the two halves a
zero-bubble schedule runs apart (``I`` and ``W`` actions): the first returns the input gradient
and keeps what the second needs (a layer's input and its output gradient), the second adds the
parameter gradients. Layers without parameters do all their work in ``backward_input``.

Weights are drawn with NumPy from a seed and moved to ``xp``, so NumPy and CuPy models start
identical; :meth:`Layer.to` moves a built layer to another array module or dtype.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..gpu import to_host

__all__ = ["Layer", "Linear", "ReLU", "GELU", "Conv2d", "Flatten", "Reshape", "Sequential"]


class Layer:
    """Base class: ``params`` and ``grads`` are parallel lists of arrays (empty if none)."""

    def __init__(self, xp: Any = np, dtype: Any = np.float32) -> None:
        self.xp = xp
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: must be float32 or float64, got {self.dtype}")
        self.params: list[Any] = []
        self.grads: list[Any] = []
        self._saved: dict[Hashable, Any] = {}
        self._wsaved: dict[Hashable, Any] = {}  # what backward_weight needs, per microbatch

    def _add_param(self, value: np.ndarray) -> Any:
        p = self.xp.asarray(value.astype(self.dtype))
        self.params.append(p)
        self.grads.append(self.xp.zeros_like(p))
        return p

    def zero_grad(self) -> None:
        for g in self.grads:
            g[...] = 0

    def __deepcopy__(self, memo: dict) -> Layer:
        # a copy owns its arrays and nothing in flight; the array module is shared
        new = copy.copy(self)
        new.params = [p.copy() for p in self.params]
        new.grads = [g.copy() for g in self.grads]
        new._saved, new._wsaved = {}, {}
        return new

    def to(self, xp: Any, dtype: Any) -> Layer:
        """Move parameters and gradients to array module ``xp`` and ``dtype`` (in place)."""
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.params = [xp.asarray(to_host(p), dtype=self.dtype) for p in self.params]
        self.grads = [xp.zeros_like(p) for p in self.params]
        return self

    @property
    def live(self) -> int:
        """How many microbatches' activations this layer holds for a backward still to come."""
        return len(self._saved.keys() | self._wsaved.keys())

    def saved_arrays(self) -> list[Any]:
        """Every array kept for a pending backward (for the bytes-held measurement)."""
        out, stack = [], [*self._saved.values(), *self._wsaved.values()]
        while stack:
            v = stack.pop()
            if isinstance(v, tuple):
                stack.extend(v)
            elif hasattr(v, "nbytes"):
                out.append(v)
        return out

    def drop(self, mb: Hashable) -> None:
        """Forget what a forward of ``mb`` kept (inference, profiling, recomputation)."""
        self._saved.pop(mb, None)
        self._wsaved.pop(mb, None)

    def _save(self, mb: Hashable, value: Any) -> None:
        if mb in self._saved:
            raise RuntimeError(f"{type(self).__name__}: microbatch {mb!r} is already in flight")
        self._saved[mb] = value

    def _pop(self, mb: Hashable) -> Any:
        try:
            return self._saved.pop(mb)
        except KeyError:
            raise RuntimeError(
                f"{type(self).__name__}: backward for microbatch {mb!r} without its forward"
            ) from None

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        raise NotImplementedError

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        """The input gradient of ``mb``; a layer with parameters keeps what its weights need."""
        raise NotImplementedError

    def backward_weight(self, mb: Hashable = 0) -> None:
        """Add the parameter gradients of ``mb`` (after :meth:`backward_input`)."""

    def backward(self, grad: Any, mb: Hashable = 0) -> Any:
        gx = self.backward_input(grad, mb)
        self.backward_weight(mb)
        return gx


def _rng(seed: int | np.random.SeedSequence) -> np.random.Generator:
    return np.random.default_rng(seed)


class Linear(Layer):
    """``y = x @ W + b`` with ``W`` of shape (n_in, n_out); He-normal init (ReLU/GELU nets)."""

    def __init__(self, n_in: int, n_out: int, *, seed: Any = 0, xp: Any = np,
                 dtype: Any = np.float32) -> None:
        super().__init__(xp, dtype)
        rng = _rng(seed)
        self._add_param(rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in))
        self._add_param(np.zeros(n_out))

    W = property(lambda self: self.params[0])
    b = property(lambda self: self.params[1])

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        self._save(mb, x)
        return x @ self.W + self.b

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        self._wsaved[mb] = (self._pop(mb), grad)
        return grad @ self.W.T

    def backward_weight(self, mb: Hashable = 0) -> None:
        x, grad = self._wsaved.pop(mb)
        self.grads[0] += x.T @ grad
        self.grads[1] += grad.sum(axis=0)


class ReLU(Layer):
    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        mask = x > 0
        self._save(mb, mask)
        return x * mask

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        return grad * self._pop(mb)


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Layer):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        t = self.xp.tanh(_GELU_C * (x + 0.044715 * x**3))
        self._save(mb, (x, t))
        return 0.5 * x * (1 + t)

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        x, t = self._pop(mb)
        dudx = _GELU_C * (1 + 3 * 0.044715 * x**2)
        return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dudx)


class Conv2d(Layer):
    """2-D convolution on (N, C, H, W) via im2col; weight (O, C, KH, KW), bias (O,).

    im2col loops over the KH*KW kernel offsets with strided slices (no scatter), so the same
    code runs on NumPy and CuPy.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0, seed: Any = 0, xp: Any = np,
                 dtype: Any = np.float32) -> None:
        super().__init__(xp, dtype)
        for name, v, lo in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                            ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                            ("padding", padding, 0)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"Conv2d.{name}: must be an integer >= {lo}, got {v!r}")
        self.k, self.stride, self.padding = kernel_size, stride, padding
        fan_in = in_channels * kernel_size * kernel_size
        rng = _rng(seed)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self._add_param(rng.standard_normal(shape) * math.sqrt(2.0 / fan_in))
        self._add_param(np.zeros(out_channels))

    W = property(lambda self: self.params[0])
    b = property(lambda self: self.params[1])

    def _out_size(self, n: int) -> int:
        out = (n + 2 * self.padding - self.k) // self.stride + 1
        if out < 1:
            raise ValueError(f"Conv2d: input size {n} too small for kernel {self.k}")
        return out

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        xp, p, s, k = self.xp, self.padding, self.stride, self.k
        n, c, h, w = x.shape
        oh, ow = self._out_size(h), self._out_size(w)
        xpad = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        cols = xp.empty((n, oh, ow, c, k, k), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                patch = xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]  # (n, c, oh, ow)
                cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
        cols = cols.reshape(n * oh * ow, c * k * k)
        self._save(mb, (cols, x.shape))
        out = cols @ self.W.reshape(self.W.shape[0], -1).T + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        xp, p, s, k = self.xp, self.padding, self.stride, self.k
        cols, (n, c, h, w) = self._pop(mb)
        o, oh, ow = grad.shape[1], grad.shape[2], grad.shape[3]
        g2 = grad.transpose(0, 2, 3, 1).reshape(n * oh * ow, o)
        self._wsaved[mb] = (cols, g2)
        dcols = (g2 @ self.W.reshape(o, -1)).reshape(n, oh, ow, c, k, k)
        dx = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=grad.dtype)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + s * oh:s, j:j + s * ow:s] += dcols[:, :, :, :, i, j].transpose(
                    0, 3, 1, 2
                )
        return dx[:, :, p:p + h, p:p + w] if p else dx

    def backward_weight(self, mb: Hashable = 0) -> None:
        cols, g2 = self._wsaved.pop(mb)
        self.grads[0] += (g2.T @ cols).reshape(self.W.shape)
        self.grads[1] += g2.sum(axis=0)


class Reshape(Layer):
    """Reshape each sample to ``shape`` (e.g. 64 pixels -> (1, 8, 8) for a Conv2d)."""

    def __init__(self, shape: Sequence[int], *, xp: Any = np, dtype: Any = np.float32) -> None:
        super().__init__(xp, dtype)
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        self._save(mb, x.shape)
        return x.reshape((x.shape[0],) + self.shape)

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        return grad.reshape(self._pop(mb))


class Flatten(Reshape):
    """(N, ...) -> (N, prod(...))."""

    def __init__(self, *, xp: Any = np, dtype: Any = np.float32) -> None:
        super().__init__((-1,), xp=xp, dtype=dtype)


class Sequential:
    """Layers applied in order; :meth:`split` cuts it into pipeline stages sharing the layers."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def params(self) -> list[Any]:
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self) -> list[Any]:
        return [g for layer in self.layers for g in layer.grads]

    @property
    def live(self) -> int:
        """Microbatches in flight (forward done, backward not yet) on this stage."""
        return max((layer.live for layer in self.layers), default=0)

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def forward(self, x: Any, mb: Hashable = 0) -> Any:
        for layer in self.layers:
            x = layer.forward(x, mb)
        return x

    def backward(self, grad: Any, mb: Hashable = 0) -> Any:
        for layer in reversed(self.layers):
            grad = layer.backward(grad, mb)
        return grad

    def backward_input(self, grad: Any, mb: Hashable = 0) -> Any:
        for layer in reversed(self.layers):
            grad = layer.backward_input(grad, mb)
        return grad

    def backward_weight(self, mb: Hashable = 0) -> None:
        for layer in self.layers:
            layer.backward_weight(mb)

    def drop(self, mb: Hashable) -> None:
        for layer in self.layers:
            layer.drop(mb)

    def split(self, cuts: Sequence[int]) -> list[Sequential]:
        """Stages ``layers[0:c1], layers[c1:c2], ...`` for interior cut points ``cuts``.

        ``cuts`` must be strictly increasing in ``1..len-1`` (every stage gets a layer), as
        returned by :func:`streampipe.train.partition.balance_by_time`.
        """
        bounds = [0, *cuts, len(self.layers)]
        for i in range(1, len(bounds)):
            if not bounds[i - 1] < bounds[i]:
                raise ValueError(
                    f"cuts: must increase strictly within 1..{len(self.layers) - 1}, got "
                    f"{list(cuts)}"
                )
        return [Sequential(self.layers[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
