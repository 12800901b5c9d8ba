"""Bring your own model: ``[train] model`` to a model adapter with stages to cut.

``model`` is either a list of layer tables (:func:`~streampipe.train.model_spec.build_model`)
or ``"module:build"`` / ``"path/to/file.py:build"`` naming a function (called with
``[train] model_args`` as keyword arguments) that returns

* a list of streampipe layers (:mod:`streampipe.train.layers`) or a
  :class:`~streampipe.train.layers.Sequential`: a :class:`~.layer_worker.LayerModel`, cuts
  index the layers; NumPy, or CuPy with ``device = "gpu"``;
* a ``torch.nn.Sequential``: a :class:`~.torch_adapter.TorchModel` (the ``[torch]`` extra),
  cuts index its children; CPU, or CUDA with ``device = "gpu"``.

Every rank builds the whole model from the same seed (NumPy's global RNG and, when the user's
module imported torch, ``torch.manual_seed``) and keeps copies of its stages; the ranks compare
a checksum of the initial weights at start, so a ``build`` that is not deterministic is an
error, not a silent divergence. Model adapters provide ``n_layers``, ``layer_names()``,
``worker(a, b, ...)`` (a :class:`~streampipe.train.worker.StageWorker` for layers
``[a, b)``), ``layer_times(x)`` (profiling for ``cuts = "auto"``), ``checksum()``,
``as_input(x)`` and ``as_target(y, loss)``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..job import JobError, resolve_uses
from .layer_worker import LayerModel
from .layers import Layer, Sequential
from .model_spec import build_model

__all__ = ["load_model", "layer_xp", "check_cuts"]


def layer_xp(device: str, rank: int = 0) -> Any:
    """NumPy, or CuPy for ``device = "gpu"`` / ``"auto"`` with a usable GPU (streampipe.gpu)."""
    from ..gpu import DeviceError, resolve_device

    try:
        return resolve_device(device, rank, stage="train", log=rank == 0)[1]
    except DeviceError as exc:
        raise ValueError(f"train.device: {exc}") from None


def _call_build(cfg: Any) -> Any:
    try:
        fn = resolve_uses(cfg.model, "train.model", base=cfg.base)
    except JobError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name == "torch":
            from .torch_adapter import TORCH_HINT

            raise ValueError(f"train.model: {cfg.model!r} imports torch, which is not "
                             f"installed; {TORCH_HINT}") from None
        raise ValueError(str(exc)) from None
    np.random.seed(cfg.seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(cfg.seed)
    try:
        return fn(**cfg.model_args)
    except Exception as exc:  # noqa: BLE001 - the user's build failed: name it
        raise ValueError(f"train.model: {cfg.model}(**model_args) failed: "
                         f"{type(exc).__name__}: {exc}") from exc


def load_model(cfg: Any, rank: int = 0) -> Any:
    """The job's model adapter, on the job's device and dtype (``rank``: node-local, for the
    choice of GPU)."""
    if isinstance(cfg.model, list):
        xp = layer_xp(cfg.device, rank)
        # drawn in the job's dtype, as the serial oracle draws them
        return LayerModel(build_model(cfg.model, seed=cfg.seed, xp=xp, dtype=cfg.np_dtype).layers,
                          xp, cfg.np_dtype)
    obj = _call_build(cfg)
    if isinstance(obj, Sequential):
        obj = obj.layers
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, Layer) for x in obj):
        return LayerModel(list(obj), layer_xp(cfg.device, rank), cfg.np_dtype)
    from .torch_adapter import TorchModel, is_torch_module, torch_device

    if is_torch_module(obj):
        return TorchModel(obj, cfg.np_dtype, torch_device(cfg.device, rank))
    raise ValueError(f"train.model: {cfg.model} returned {type(obj).__name__}; expected a "
                     "torch.nn.Sequential or a list of streampipe layers")


def check_cuts(model: Any, cuts: list[int]) -> None:
    """Cuts against the built model (a ``build`` reference is only known once built)."""
    n = model.n_layers
    prev = 0
    for i, c in enumerate(cuts):
        if not prev < c < n:
            raise ValueError(f"train.cuts[{i}]: must be an integer in {prev + 1}..{n - 1} (the "
                             f"model has {n} layers), got {c}")
        prev = c
