"""HDF5 checkpoints of a split-learning run: weights and optimizer state per stage, epoch, RNG.

Layout::

    /                               [format, epoch, seed, rng]
    /stages/{name}/layers/{k}/weight, bias       (layer k of the stage; only layers with params)
    /stages/{name}/optimizer        [kind, t]     datasets m{i}, v{i} (Adam) or v{i} (SGD)

``epoch`` is the number of finished epochs. Minibatch order is drawn from
``default_rng([seed, client, epoch])`` and no layer is random, so ``(seed, epoch)`` is the whole
RNG state; it is stored as ``rng`` for the reader's benefit. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .layers import Sequential
from .optim import SGD, Adam

__all__ = ["stage_state", "load_stage_state", "save", "load"]

FORMAT = 1
_PARAM_NAMES = ("weight", "bias")


def stage_state(stage: Sequential, opt: Any) -> dict[str, Any]:
    """Plain arrays of one stage: ``{"layers": {k: {"weight", "bias"}}, "optimizer": {...}}``."""
    layers = {}
    for k, layer in enumerate(stage.layers):
        if layer.params:
            layers[k] = {n: np.array(p) for n, p in zip(_PARAM_NAMES, layer.params, strict=False)}
    if isinstance(opt, Adam):
        o = {"kind": "adam", "t": opt.t, "m": [np.array(a) for a in opt._m or []],
             "v": [np.array(a) for a in opt._v or []]}
    elif isinstance(opt, SGD):
        o = {"kind": "sgd", "t": 0, "m": [], "v": [np.array(a) for a in opt._v or []]}
    else:
        raise TypeError(f"checkpoint: unsupported optimizer {type(opt).__name__}")
    return {"layers": layers, "optimizer": o}


def load_stage_state(stage: Sequential, opt: Any, state: dict[str, Any], where: str) -> None:
    """Copy ``state`` (from :func:`stage_state` or :func:`load`) into ``stage`` and ``opt``."""
    for k, layer in enumerate(stage.layers):
        got = state["layers"].get(k)
        if bool(layer.params) != (got is not None):
            raise ValueError(f"checkpoint {where}: layer {k} does not match the model")
        for name, p in zip(_PARAM_NAMES, layer.params, strict=False):
            arr = got[name]
            if arr.shape != p.shape:
                raise ValueError(f"checkpoint {where}/layers/{k}/{name}: shape {arr.shape}, "
                                 f"the model has {p.shape}")
            p[...] = layer.xp.asarray(arr)
    o = state["optimizer"]
    kind = "adam" if isinstance(opt, Adam) else "sgd"
    if o["kind"] != kind:
        raise ValueError(f"checkpoint {where}/optimizer: saved {o['kind']!r}, job uses {kind!r}")
    xp = stage.layers[0].xp
    if kind == "adam":
        opt.t = int(o["t"])
        opt._m = [xp.asarray(a) for a in o["m"]] or None
        opt._v = [xp.asarray(a) for a in o["v"]] or None
    else:
        opt._v = [xp.asarray(a) for a in o["v"]] or None


def save(path: str, stages: dict[str, dict[str, Any]], epoch: int, seed: int) -> None:
    """Write every stage's state (name -> :func:`stage_state`) after ``epoch`` finished epochs."""
    import h5py

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, epoch=epoch, seed=seed, rng=f"default_rng([{seed}, "
                       f"client, {epoch}]) for the next epoch")
        g = f.create_group("stages")
        for name, st in stages.items():
            sg = g.create_group(name)
            lg = sg.create_group("layers")
            for k, params in st["layers"].items():
                kg = lg.create_group(str(k))
                for n, arr in params.items():
                    kg.create_dataset(n, data=arr)
            o = st["optimizer"]
            og = sg.create_group("optimizer")
            og.attrs.update(kind=o["kind"], t=o["t"])
            for key in ("m", "v"):
                for i, arr in enumerate(o[key]):
                    og.create_dataset(f"{key}{i}", data=arr)
    os.replace(tmp, p)


def load(path: str) -> tuple[dict[str, dict[str, Any]], int, int]:
    """``(stages, epoch, seed)`` from a checkpoint written by :func:`save`."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"train.resume: cannot open checkpoint {path!r}: {exc}") from None
    with f:
        if f.attrs.get("format") != FORMAT or "stages" not in f:
            raise ValueError(f"train.resume: {path!r} is not a split-learning checkpoint")
        stages = {}
        for name, sg in f["stages"].items():
            layers = {int(k): {n: kg[n][()] for n in kg} for k, kg in sg["layers"].items()}
            og = sg["optimizer"]
            o: dict[str, Any] = {"kind": str(og.attrs["kind"]), "t": int(og.attrs["t"])}
            for key in ("m", "v"):
                o[key] = [og[f"{key}{i}"][()] for i in range(sum(1 for n in og
                                                                  if n.startswith(key)))]
            stages[name] = {"layers": layers, "optimizer": o}
        return stages, int(f.attrs["epoch"]), int(f.attrs["seed"])
