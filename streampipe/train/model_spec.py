"""Build a :class:`~streampipe.train.layers.Sequential` from a job file's list of layer tables.

Layer ``i`` draws its weights from ``SeedSequence([seed, i])``, so every rank that builds the
same spec with the same seed holds identical weights for the layers it keeps after a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .layers import GELU, Conv2d, Flatten, Layer, Linear, ReLU, Reshape, Sequential

__all__ = ["build_model", "mlp"]

# layer type -> (class, required fields, optional fields)
_TYPES: dict[str, tuple[type[Layer], tuple[str, ...], tuple[str, ...]]] = {
    "linear": (Linear, ("in", "out"), ()),
    "relu": (ReLU, (), ()),
    "gelu": (GELU, (), ()),
    "conv2d": (Conv2d, ("in", "out", "kernel"), ("stride", "padding")),
    "flatten": (Flatten, (), ()),
    "reshape": (Reshape, ("shape",), ()),
}


def build_model(spec: Sequence[dict[str, Any]], *, seed: int = 0, xp: Any = np,
                dtype: Any = np.float32) -> Sequential:
    """Layers from ``[{"type": "linear", "in": 64, "out": 32}, {"type": "relu"}, ...]``.

    Types: linear(in, out), relu, gelu, conv2d(in, out, kernel[, stride, padding]), flatten,
    reshape(shape). Errors name the bad entry, e.g. ``model[2].out``.
    """
    layers: list[Layer] = []
    for i, entry in enumerate(spec):
        where = f"model[{i}]"
        if not isinstance(entry, dict) or "type" not in entry:
            raise ValueError(f"{where}: must be a table with a 'type', got {entry!r}")
        kind = entry["type"]
        if kind not in _TYPES:
            raise ValueError(f"{where}.type: must be one of {sorted(_TYPES)}, got {kind!r}")
        cls, required, optional = _TYPES[kind]
        unknown = set(entry) - {"type", *required, *optional}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} for {kind}")
        for name in required:
            if name not in entry:
                raise ValueError(f"{where}.{name}: required for {kind}")
        for name in set(required + optional) - {"shape"}:
            if name in entry and (not isinstance(entry[name], int) or entry[name] < 0):
                raise ValueError(f"{where}.{name}: must be an integer >= 0, got {entry[name]!r}")
        seed_i = np.random.SeedSequence([seed, i])
        common = {"xp": xp, "dtype": dtype}
        if kind == "linear":
            layer: Layer = Linear(entry["in"], entry["out"], seed=seed_i, **common)
        elif kind == "conv2d":
            layer = Conv2d(entry["in"], entry["out"], entry["kernel"],
                           stride=entry.get("stride", 1), padding=entry.get("padding", 0),
                           seed=seed_i, **common)
        elif kind == "reshape":
            layer = Reshape(entry["shape"], **common)
        else:
            layer = cls(**common)
        layers.append(layer)
    return Sequential(layers)


def mlp(sizes: Sequence[int], *, activation: str = "relu", seed: int = 0, xp: Any = np,
        dtype: Any = np.float32) -> Sequential:
    """Linear layers of the given widths with ``activation`` between them (not after the last)."""
    if len(sizes) < 2:
        raise ValueError(f"sizes: need at least input and output width, got {list(sizes)}")
    spec: list[dict[str, Any]] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        spec += [{"type": "linear", "in": a, "out": b}, {"type": activation}]
    return build_model(spec[:-1], seed=seed, xp=xp, dtype=dtype)
