"""The ``[train]`` table of a job file: validated into a :class:`TrainConfig` (plain data).

Errors name the field (``train.cuts[1]``, ``train.data.source``) and are raised before any rank
starts. Keys a layout adds (split learning's ``clients``, ``u_shape``, ...) are declared by the
layout class named in ``train.uses`` (:class:`streampipe.train.layout.Layout`) and validated
here with the framework's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..job import resolve_uses
from ..schedule import GENERATORS
from .losses import LOSSES
from .model_spec import build_model
from .optim import make_optimizer

__all__ = ["TrainConfig", "parse_train", "SCHEDULES", "check_types", "job_path"]

SCHEDULES = (*GENERATORS, "interleaved")
DEVICES = ("cpu", "gpu", "auto")

KEYS: dict[str, Any] = {
    "uses": str, "model": (list, str), "model_args": dict, "cuts": (list, str), "stages": int,
    "schedule": str, "microbatches": int, "virtual": int, "minibatch": int, "epochs": int,
    "dtype": str, "seed": int, "optimizer": dict, "loss": str, "data": dict, "checkpoint": str,
    "resume": str, "layer_times": list, "device": str, "recompute": bool, "replicas": list,
}
DATA_KEYS: dict[str, Any] = {"source": str, "shuffle": bool}


@dataclass
class TrainConfig:
    """The validated ``[train]`` table (framework keys; ``extra`` holds the layout's)."""

    model: list[dict[str, Any]] | str
    cuts: list[int] | str
    n_stages: int
    uses: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)
    schedule: str = "1f1b"
    microbatches: int = 4
    virtual: int = 1
    minibatch: int = 32
    epochs: int = 1
    dtype: str = "float64"
    seed: int = 0
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "sgd", "lr": 0.1})
    loss: str = "cross_entropy"
    data: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    resume: str = ""
    layer_times: list[float] = field(default_factory=list)
    device: str = "cpu"
    recompute: bool = False
    replicas: list[int] = field(default_factory=list)
    base: str | None = None  # the job file (relative paths are resolved from its folder)
    extra: dict[str, Any] = field(default_factory=dict)
    layout_cls: Any = None

    @property
    def np_dtype(self) -> Any:
        return np.dtype(self.dtype)

    @property
    def auto_cuts(self) -> bool:
        return self.cuts == "auto"

    @property
    def shuffle(self) -> bool:
        return bool(self.data.get("shuffle", True))

    def layout(self) -> Any:
        """The job's :class:`~streampipe.train.layout.Layout` (who runs what)."""
        return self.layout_cls(self)


def check_types(table: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    """Unknown keys and wrong types are errors naming ``where.key``."""
    for k, v in table.items():
        if k not in allowed:
            raise ValueError(f"{where}.{k}: unknown key (allowed: {', '.join(allowed)})")
        want = allowed[k]
        wants = want if isinstance(want, tuple) else (want,)
        if float in wants and isinstance(v, int) and not isinstance(v, bool):
            continue
        if isinstance(v, bool) and bool not in wants or not isinstance(v, want):
            names = " or ".join(getattr(w, "__name__", str(w)) for w in wants)
            raise ValueError(f"{where}.{k}: expected {names}, got {type(v).__name__} {v!r}")


def _layout_class(uses: str, base: str | None) -> Any:
    from .layout import Layout, Pipeline

    if not uses:
        return Pipeline
    cls = resolve_uses(uses, "train.uses", base=base)
    if not (isinstance(cls, type) and issubclass(cls, Layout)):
        raise ValueError(f"train.uses: {uses!r} is not a streampipe.train.Layout subclass")
    return cls


def job_path(name: str, base: str | None) -> Path:
    """A file named in a job: as given when it exists, else relative to the job file's folder
    (the rule of ``uses`` in :func:`streampipe.job.resolve_uses`)."""
    p = Path(name)
    if not p.is_absolute() and base is not None and not p.exists():
        p = Path(base).parent / p
    return p


def _check_model_ref(ref: str, base: str | None) -> None:
    """Cheap checks of ``module:build`` / ``file.py:build`` (the ranks import and build it)."""
    import importlib.util

    if ":" not in ref:
        raise ValueError(f"train.model: expected 'module:build' or 'path/to/file.py:build', "
                         f"got {ref!r}")
    target = ref.rpartition(":")[0]
    if target.endswith(".py"):
        if not job_path(target, base).exists():
            raise ValueError(f"train.model: file {target!r} not found")
    else:
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ValueError(f"train.model: module {target!r} not found")


def parse_train(table: dict[str, Any], base: str | None = None) -> TrainConfig:
    """Validate a job's ``[train]`` table; errors name the field (``train.cuts[1]``)."""
    table = dict(table)
    uses = table.get("uses", "")
    if not isinstance(uses, str):
        raise ValueError(f"train.uses: expected str, got {type(uses).__name__} {uses!r}")
    cls = _layout_class(uses, base)
    check_types(table, {**KEYS, **cls.KEYS}, "train")
    check_types(table.get("data", {}), {**DATA_KEYS, **cls.DATA_KEYS}, "train.data")
    extra = {k: table.pop(k) for k in list(table) if k in cls.KEYS}
    for k in ("model", "cuts"):
        if k not in table:
            raise ValueError(f"train.{k}: required")
    model, cuts = table["model"], table["cuts"]
    n_layers = None
    if isinstance(model, list):
        try:
            n_layers = len(build_model(model, seed=table.get("seed", 0)))
        except ValueError as e:
            raise ValueError(f"train.{e}") from None
    else:
        _check_model_ref(model, base)
    if isinstance(cuts, str):
        if cuts != "auto":
            raise ValueError(f"train.cuts: a list of cut points or \"auto\", got {cuts!r}")
        if "stages" not in table:
            raise ValueError("train.stages: required with cuts = \"auto\" (how many stages)")
        n_stages = table["stages"]
        if n_stages < 2 or (n_layers is not None and n_stages > n_layers):
            raise ValueError(f"train.stages: must be in 2..{n_layers or 'layers'}, got {n_stages}")
    else:
        prev = 0
        top = n_layers - 1 if n_layers is not None else None
        for i, c in enumerate(cuts):
            if not isinstance(c, int) or isinstance(c, bool) or not prev < c or (
                    top is not None and c > top):
                rng = f"{prev + 1}..{top}" if top is not None else f">= {prev + 1}"
                raise ValueError(f"train.cuts[{i}]: must be an integer in {rng} (cuts increase "
                                 f"and every stage keeps a layer), got {c!r}")
            prev = c
        n_stages = len(cuts) + 1
        if table.get("stages", n_stages) != n_stages:
            raise ValueError(f"train.stages: {table['stages']} but cuts give {n_stages} stages")
    table.pop("stages", None)
    cfg = TrainConfig(model=model, cuts=cuts, n_stages=n_stages, base=base, extra=extra,
                      layout_cls=cls, **{k: v for k, v in table.items()
                                         if k not in ("model", "cuts")})
    for k in ("microbatches", "minibatch"):
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
        raise ValueError(f"train.schedule: must be one of {', '.join(SCHEDULES)}, "
                         f"got {cfg.schedule!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"train.loss: must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.device not in DEVICES:
        raise ValueError(f"train.device: must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    for i, t in enumerate(cfg.layer_times):
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not t >= 0:
            raise ValueError(f"train.layer_times[{i}]: must be a time >= 0, got {t!r}")
    if cfg.layer_times and n_layers is not None and len(cfg.layer_times) != n_layers:
        raise ValueError(f"train.layer_times: needs one time per layer ({n_layers}), "
                         f"got {len(cfg.layer_times)}")
    for i, k in enumerate(cfg.replicas):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"train.replicas[{i}]: must be an integer >= 1, got {k!r}")
    try:
        make_optimizer(cfg.optimizer)
    except ValueError as e:
        msg = str(e)
        raise ValueError(f"train.{msg}" if msg.startswith("optimizer") else
                         f"train.optimizer.{msg}") from None
    cfg.layout()  # raises on a layout that cannot work (names the field)
    return cfg
