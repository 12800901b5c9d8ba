"""Cut a sequence of layers into pipeline stages so that the slowest stage is as fast as possible.

Like torchgpipe's ``balance_by_time``: given each layer's measured time, choose contiguous
stages minimising the maximum stage time (the pipeline's steady-state period). Solved exactly by
dynamic programming over prefix sums, O(n_stages * n_layers²). The layer times come from a
model adapter's ``layer_times`` (:func:`measure_layer_times` for streampipe layers, the PyTorch
adapter's own for torch children) or from ``[train] layer_times``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .layers import Sequential

__all__ = ["balance_by_time", "stage_times", "measure_layer_times"]


def balance_by_time(layer_times: Sequence[float], n_stages: int) -> list[int]:
    """Interior cut points ``[c1, ..., c_{k-1}]``: stage i runs layers ``[c_i, c_{i+1})``.

    Every stage gets at least one layer. Among optimal partitions the one with the latest
    cuts is returned (deterministic), so earlier stages take the extra layers on ties.
    """
    times = [float(t) for t in layer_times]
    n = len(times)
    if not isinstance(n_stages, int) or not 1 <= n_stages <= n:
        raise ValueError(f"n_stages: must be an integer in 1..{n} (layers), got {n_stages!r}")
    for i, t in enumerate(times):
        if not (t >= 0 and np.isfinite(t)):
            raise ValueError(f"layer_times[{i}]: must be a finite time >= 0, got {t}")
    prefix = [0.0]
    for t in times:
        prefix.append(prefix[-1] + t)
    inf = float("inf")
    # best[k][j]: smallest max-stage-time putting the first j layers into k stages
    best = [[inf] * (n + 1) for _ in range(n_stages + 1)]
    arg = [[0] * (n + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for k in range(1, n_stages + 1):
        for j in range(k, n - (n_stages - k) + 1):
            for i in range(k - 1, j):  # last stage = layers [i, j)
                cost = max(best[k - 1][i], prefix[j] - prefix[i])
                if cost <= best[k][j]:
                    best[k][j], arg[k][j] = cost, i
    cuts, j = [], n
    for k in range(n_stages, 1, -1):
        j = arg[k][j]
        cuts.append(j)
    return cuts[::-1]


def stage_times(layer_times: Sequence[float], cuts: Sequence[int]) -> list[float]:
    """Total time of each stage for the given interior cut points."""
    bounds = [0, *cuts, len(layer_times)]
    return [float(sum(layer_times[a:b])) for a, b in zip(bounds, bounds[1:], strict=False)]


def measure_layer_times(model: Sequential, x: Any, repeats: int = 5) -> list[float]:
    """Median forward+backward wall time of each layer on a sample batch ``x``.

    On CuPy the device is synchronised around each timing. Parameter gradients are zeroed after.
    """
    xp = model.layers[0].xp
    sync = getattr(getattr(xp, "cuda", None), "Device", None)

    def wait() -> None:
        if sync is not None:
            sync().synchronize()

    out: list[float] = []
    for layer in model.layers:
        runs = []
        for r in range(repeats):
            wait()
            t0 = time.perf_counter()
            y = layer.forward(x, mb=("timing", r))
            layer.backward(xp.ones_like(y), mb=("timing", r))
            wait()
            runs.append(time.perf_counter() - t0)
        out.append(float(np.median(runs)))
        x = y
    model.zero_grad()
    return out
