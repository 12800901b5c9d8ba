"""HDF5 checkpoints of a training run: every stage copy's state, the epoch, the seed.

Layout::

    /                     [format, epoch, seed, rng]
    /stages/{name}/...    the stage worker's state() as groups, datasets and attributes

A worker's :meth:`~streampipe.train.worker.StageWorker.state` is a nested dict: a dict becomes a
group, an array a dataset, a number or string an attribute. For streampipe layers that is
``layers/{k}/weight|bias`` (layer ``k`` of the stage, only layers with parameters) and
``optimizer`` [kind, t] with datasets ``m{i}``, ``v{i}`` (Adam) or ``v{i}`` (SGD momentum);
for a torch stage ``torch/{key}`` (the full model's ``state_dict`` keys) and ``optimizer``
[kind, param_groups] with ``state/{index}/{key}`` (``torch.optim`` state). ``epoch`` is the
number of finished epochs; minibatch order depends only on (seed, epoch) and no layer is random,
so that is the whole RNG state, written as ``rng`` for the reader. Writes are atomic (temp +
rename). :func:`torch_state_dict` merges a torch model's weights back from all its stages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "save", "load", "torch_state_dict"]

FORMAT = 1


def _write(group: Any, state: dict[str, Any]) -> None:
    for key, value in state.items():
        key = str(key)
        if isinstance(value, dict):
            _write(group.create_group(key), value)
        elif isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, np.str_):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def _read(group: Any) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {k: (v.item() if isinstance(v, np.generic) else v)
                           for k, v in group.attrs.items()}
    for key, item in group.items():
        out[key] = _read(item) if isinstance(item, h5py.Group) else item[()]
    return out


def save(path: str, stages: dict[str, dict[str, Any]], epoch: int, seed: int,
         rng: str = "") -> None:
    """Write every stage copy's state (name -> worker state) after ``epoch`` finished epochs."""
    import h5py

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, epoch=epoch, seed=seed,
                       rng=rng or f"default_rng([{seed}, {epoch}]) for the next epoch")
        g = f.create_group("stages")
        for name, st in stages.items():
            _write(g.create_group(name), st)
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
            raise ValueError(f"train.resume: {path!r} is not a streampipe training checkpoint")
        return _read(f["stages"]), int(f.attrs["epoch"]), int(f.attrs["seed"])


def torch_state_dict(path: str, prefix: str = "") -> dict[str, np.ndarray]:
    """The torch model's weights (``state_dict`` keys -> arrays) merged from every stage whose
    name starts with ``prefix`` (split learning: ``client0_`` and ``server_`` for one path)."""
    stages, _, _ = load(path)
    out: dict[str, np.ndarray] = {}
    for name, st in stages.items():
        if name.startswith(prefix) and "torch" in st:
            out.update(st["torch"])
    return out
