"""Bring your own data: ``[train.data] source`` as an HDF5 file or a ``module:load`` function.

An HDF5 source (``.h5`` / ``.hdf5``, relative to the job file's folder) holds datasets
``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``; a function source returns them
as a dict with those keys or a tuple ``(x_train, y_train[, x_test, y_test])``. Checks (errors
name the file or function and the dataset): numeric features with a sample axis, one label row
per sample, test features shaped like the training ones, integer class labels >= 0 for
``cross_entropy``, numeric targets for ``mse``.

Minibatch order (:func:`minibatch_order`): with ``shuffle = true`` each epoch permutes the
samples with ``default_rng([seed, epoch])``; with ``shuffle = false`` minibatch ``k`` is rows
``[k * minibatch, (k + 1) * minibatch)`` in file order. Incomplete minibatches are dropped so
that every step divides by the same size.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..job import JobError, resolve_uses
from .config import job_path

__all__ = ["Dataset", "Data", "load_source", "check_data", "minibatch_order"]

NAMES = ("x_train", "y_train", "x_test", "y_test")


class Dataset(NamedTuple):
    X: np.ndarray  # (n, ...) features
    y: np.ndarray  # (n,) class labels or (n, ...) regression targets


class Data(NamedTuple):
    train: Dataset
    test: Dataset | None


def _read_h5(path: Path, source: str) -> dict[str, np.ndarray]:
    import h5py

    if not path.exists():
        raise ValueError(f"train.data.source: file {source!r} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"train.data.source: {source!r} is not a readable HDF5 file: "
                         f"{exc}") from None
    with f:
        out = {}
        for name in NAMES:
            if name not in f:
                continue
            if not isinstance(f[name], h5py.Dataset):
                raise ValueError(f"{source}: {name} is a group, expected a dataset")
            out[name] = f[name][()]
        missing = [n for n in NAMES[:2] if n not in out]
        if missing:
            raise ValueError(f"{source}: missing dataset(s) {', '.join(missing)} (has: "
                             f"{', '.join(sorted(f)) or 'nothing'})")
    return out


def _call_loader(source: str, base: str | None) -> dict[str, np.ndarray]:
    try:
        fn = resolve_uses(source, "train.data.source", base=base)
    except JobError as exc:
        raise ValueError(str(exc)) from None
    try:
        got = fn()
    except Exception as exc:  # noqa: BLE001 - the user's loader failed: name it
        raise ValueError(f"train.data.source: {source}() failed: {type(exc).__name__}: "
                         f"{exc}") from exc
    if isinstance(got, dict):
        unknown = set(got) - set(NAMES)
        if unknown:
            raise ValueError(f"{source}(): unknown key(s) {sorted(unknown)} (expected "
                             f"{', '.join(NAMES)})")
        out = dict(got)
    elif isinstance(got, (tuple, list)) and len(got) in (2, 4):
        out = dict(zip(NAMES, got, strict=False))
    else:
        raise ValueError(f"{source}(): must return a dict with x_train, y_train[, x_test, "
                         f"y_test] or a tuple of 2 or 4 arrays, got {type(got).__name__}")
    for n in NAMES[:2]:
        if out.get(n) is None:
            raise ValueError(f"{source}(): {n} is missing")
    return {k: np.asarray(v) for k, v in out.items() if v is not None}


def check_data(arrays: dict[str, np.ndarray], source: str, loss: str) -> Data:
    """Validate the arrays of a source (errors name ``source`` and the dataset)."""
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{source}: x_test and y_test come together (got only "
                         f"{'x_test' if 'x_test' in arrays else 'y_test'})")
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{source}: {name} has dtype {a.dtype}, expected numbers")
        if a.ndim < 1 or len(a) == 0:
            raise ValueError(f"{source}: {name} has shape {a.shape}, expected samples along "
                             "axis 0")
    for part in ("train", "test"):
        x, y = arrays.get(f"x_{part}"), arrays.get(f"y_{part}")
        if x is None:
            continue
        if x.ndim < 2:
            raise ValueError(f"{source}: x_{part} has shape {x.shape}, expected (samples, "
                             "features...)")
        if len(y) != len(x):
            raise ValueError(f"{source}: y_{part} has {len(y)} rows, x_{part} has {len(x)}")
        if loss == "cross_entropy":
            if y.ndim != 1 or y.dtype.kind not in "biu":
                raise ValueError(f"{source}: y_{part} has shape {y.shape} and dtype {y.dtype}; "
                                 "loss cross_entropy needs one integer class label per sample")
            if y.min() < 0:
                raise ValueError(f"{source}: y_{part} has a negative class label {y.min()}")
    if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
        raise ValueError(f"{source}: x_test samples have shape {arrays['x_test'].shape[1:]}, "
                         f"x_train samples {arrays['x_train'].shape[1:]}")
    train = Dataset(arrays["x_train"], arrays["y_train"])
    test = Dataset(arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    return Data(train, test)


def load_source(source: str, base: str | None, loss: str) -> Data:
    """The arrays of ``[train.data] source`` (a ``.h5`` file or ``module:load``), checked."""
    if not source:
        raise ValueError("train.data.source: required (an HDF5 file with x_train, y_train or "
                         "'module:load')")
    if source.endswith((".h5", ".hdf5")):
        return check_data(_read_h5(job_path(source, base), source), source, loss)
    if ":" in source:
        return check_data(_call_loader(source, base), source, loss)
    raise ValueError(f"train.data.source: {source!r} is neither an .h5/.hdf5 file nor "
                     "'module:load'")


def minibatch_order(n: int, minibatch: int, epoch: int, seed: int, shuffle: bool = True,
                    stream: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Sample indices of each full minibatch of an epoch (see the module docstring).

    ``stream`` extends the RNG seed (split learning draws each client's order from
    ``default_rng([seed, client, epoch])``).
    """
    if not isinstance(minibatch, int) or not 1 <= minibatch <= n:
        raise ValueError(f"train.minibatch: must be an integer in 1..{n} (samples), got "
                         f"{minibatch!r}")
    order = (np.random.default_rng([seed, *stream, epoch]).permutation(n) if shuffle
             else np.arange(n))
    return [order[k * minibatch:(k + 1) * minibatch] for k in range(n // minibatch)]
