"""The stage worker for streampipe's own layers (NumPy, or CuPy on a GPU).

:class:`LayerModel` is a model made of :mod:`streampipe.train.layers` layers (from a job's layer
tables or a user's ``build`` function); :class:`LayerWorker` is one stage of it implementing
:class:`~streampipe.train.worker.StageWorker`. Recomputation (``recompute=True``) keeps only
each microbatch's stage input and runs the forward again right before its backward.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..gpu import to_host
from .layers import Layer, Sequential
from .losses import loss_fn
from .optim import Adam, make_optimizer
from .partition import measure_layer_times
from .worker import SumFn

__all__ = ["LayerModel", "LayerWorker"]

_PARAM_NAMES = ("weight", "bias")


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_host(a))


class LayerWorker:
    """One stage of a :class:`LayerModel` (see :class:`~streampipe.train.worker.StageWorker`)."""

    def __init__(self, stage: Sequential, opt: Any, *, loss: str | None = None,
                 recompute: bool = False, xp: Any = np) -> None:
        self.stage, self.opt, self.xp = stage, opt, xp
        self.loss_fn = loss_fn(loss) if loss is not None else None
        self.recompute = recompute
        self._inputs: dict[Hashable, Any] = {}  # recompute: the stage input of each microbatch
        self._grad_out: dict[Hashable, Any] = {}
        self._live: set[Hashable] = set()
        self.loss = 0.0
        self._n = 0
        self._codec: Any = None
        self.gpu: dict[str, Any] = {}  # device memory and staging figures (streampipe.gpu)
        if xp is not np:
            from ..gpu import WireCodec  # noqa: PLC0415 - only GPU stages need it

            self._codec = WireCodec(xp, self.gpu)

    def begin(self, n_samples: int) -> None:
        self.stage.zero_grad()
        self._n, self.loss = n_samples, 0.0

    def forward(self, mb: Hashable, x: Any, target: Any = None) -> Any:
        out = self.stage.forward(x, mb)
        if self.recompute:
            self.stage.drop(mb)
            self._inputs[mb] = x
        self._live.add(mb)
        if target is None:
            if self.loss_fn is not None:
                raise ValueError("the last stage needs each microbatch's target")
            return out
        loss, self._grad_out[mb] = self.loss_fn(out, target, reduction="sum")
        self.loss += float(loss)
        return None

    def _grad(self, mb: Hashable, grad: Any) -> Any:
        if self.recompute:
            self.stage.forward(self._inputs.pop(mb), mb)
        return self._grad_out.pop(mb) if self.loss_fn is not None else grad

    def backward(self, mb: Hashable, grad: Any = None) -> Any:
        gx = self.stage.backward(self._grad(mb, grad), mb)
        self._live.discard(mb)
        return gx

    def backward_input(self, mb: Hashable, grad: Any = None) -> Any:
        return self.stage.backward_input(self._grad(mb, grad), mb)

    def backward_weight(self, mb: Hashable) -> None:
        self.stage.backward_weight(mb)
        self._live.discard(mb)

    def step(self, reduce: SumFn | None = None) -> None:
        grads = self.stage.grads
        if reduce is not None and grads:
            flat = reduce(np.concatenate([_host(g).ravel() for g in grads]))
            at = 0
            for g in grads:
                g[...] = self.xp.asarray(flat[at:at + g.size].reshape(g.shape))
                at += g.size
        for g in grads:
            g /= self._n
        self.opt.step(self.stage.params, grads)

    def held(self) -> tuple[int, int]:
        seen: set[int] = set()
        total = 0
        arrays = [a for ly in self.stage.layers for a in ly.saved_arrays()]
        for a in [*arrays, *self._inputs.values(), *self._grad_out.values()]:
            if id(a) not in seen:
                seen.add(id(a))
                total += int(a.nbytes)
        return len(self._live), total

    def state(self) -> dict[str, Any]:
        layers = {}
        for k, layer in enumerate(self.stage.layers):
            if layer.params:
                layers[str(k)] = {n: _host(p).copy() for n, p in
                                  zip(_PARAM_NAMES, layer.params, strict=False)}
        o = self.opt
        opt: dict[str, Any] = {"kind": "adam" if isinstance(o, Adam) else "sgd",
                               "t": int(getattr(o, "t", 0))}
        if isinstance(o, Adam):
            opt.update({f"m{i}": _host(a).copy() for i, a in enumerate(o._m or [])})
        opt.update({f"v{i}": _host(a).copy() for i, a in enumerate(o._v or [])})
        return {"layers": layers, "optimizer": opt}

    def load_state(self, state: dict[str, Any], where: str) -> None:
        layers = state.get("layers", {})
        for k, layer in enumerate(self.stage.layers):
            got = layers.get(str(k))
            if bool(layer.params) != (got is not None):
                raise ValueError(f"checkpoint {where}: layer {k} does not match the model")
            for name, p in zip(_PARAM_NAMES, layer.params, strict=False):
                arr = np.asarray(got[name])
                if arr.shape != p.shape:
                    raise ValueError(f"checkpoint {where}/layers/{k}/{name}: shape {arr.shape}, "
                                     f"the model has {p.shape}")
                p[...] = self.xp.asarray(arr)
        o = state.get("optimizer", {})
        kind = "adam" if isinstance(self.opt, Adam) else "sgd"
        if o.get("kind") != kind:
            raise ValueError(f"checkpoint {where}/optimizer: saved {o.get('kind')!r}, job uses "
                             f"{kind!r}")

        def arrays(key: str) -> list[Any] | None:
            n = sum(1 for name in o if name[:1] == key and name[1:].isdigit())
            return [self.xp.asarray(o[f"{key}{i}"]) for i in range(n)] or None

        if isinstance(self.opt, Adam):
            self.opt.t = int(o["t"])
            self.opt._m = arrays("m")
        self.opt._v = arrays("v")

    def predict(self, x: Any) -> Any:
        key = ("predict",)
        out = self.stage.forward(x, key)
        self.stage.drop(key)
        return out

    def to_wire(self, value: Any) -> Any:
        return value if self._codec is None else self._codec.to_wire(value)

    def from_wire(self, value: Any) -> Any:
        return value if self._codec is None else self._codec.from_wire(value)


class LayerModel:
    """A model of streampipe layers, cut by layer index (``cuts`` index ``layers``)."""

    kind = "layers"

    def __init__(self, layers: Sequence[Layer], xp: Any = np, dtype: Any = np.float64) -> None:
        self.layers = [ly.to(xp, dtype) if (ly.xp is not xp or ly.dtype != np.dtype(dtype))
                       else ly for ly in layers]
        self.xp, self.dtype = xp, np.dtype(dtype)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def device_name(self) -> str:
        return "cpu" if self.xp is np else "gpu"

    def layer_names(self) -> list[str]:
        return [type(ly).__name__ for ly in self.layers]

    def stage(self, a: int, b: int) -> Sequential:
        """A copy of layers ``[a, b)`` (each stage copy owns its weights)."""
        return Sequential(copy.deepcopy(self.layers[a:b]))

    def worker(self, a: int, b: int, *, optimizer: dict[str, Any], loss: str | None,
               recompute: bool = False) -> LayerWorker:
        return LayerWorker(self.stage(a, b), make_optimizer(optimizer), loss=loss,
                           recompute=recompute, xp=self.xp)

    def checksum(self) -> float:
        """A number every rank that built the same model gets (the cross-rank check)."""
        return float(sum(float(_host(p).astype(np.float64).sum()) * (i + 1)
                         for i, p in enumerate(p for ly in self.layers for p in ly.params)))

    def as_input(self, x: np.ndarray) -> np.ndarray:
        """Host features in the model's dtype (workers move microbatches to the device)."""
        return np.asarray(x, dtype=self.dtype)

    def as_target(self, y: np.ndarray, loss: str) -> np.ndarray:
        return np.asarray(y, np.int64) if loss == "cross_entropy" else np.asarray(y, self.dtype)

    def layer_times(self, x: np.ndarray, repeats: int = 5) -> list[float]:
        """Median forward+backward time of each layer on sample input ``x``."""
        return measure_layer_times(Sequential(copy.deepcopy(self.layers)),
                                   self.xp.asarray(self.as_input(x)), repeats)
