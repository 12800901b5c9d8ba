"""Device selection: which stages run on a GPU, and the array module they compute with.

CuPy is imported lazily, so everything else (plan, simulate, report, CPU runs) works without it.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy

__all__ = ["gpu_available", "resolve_device", "to_host", "DeviceError"]


class DeviceError(RuntimeError):
    """A stage asked for a GPU that is not there."""


@lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    if os.environ.get("STREAMPIPE_NO_GPU"):
        return None
    try:
        import cupy  # noqa: PLC0415 - optional dependency

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # noqa: BLE001 - no CuPy, no driver or no device all mean "no GPU"
        return None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return _cupy() is not None


def resolve_device(device: str, local_rank: int = 0, stage: str = "stage",
                   log: bool = True) -> tuple[str, ModuleType]:
    """Turn ``cpu``/``gpu``/``auto`` into (device, array module) and select this rank's GPU.

    On a node with several GPUs, node-local rank ``i`` uses GPU ``i % count`` (of those that
    ``CUDA_VISIBLE_DEVICES`` leaves visible); ``STREAMPIPE_GPU`` overrides the index.
    """
    if device == "cpu":
        return "cpu", numpy
    cp = _cupy()
    if cp is None:
        if device == "gpu":
            raise DeviceError(f"stage {stage!r} has device = \"gpu\" but no CUDA device is usable "
                              "(CuPy missing or no GPU); use device = \"auto\" to fall back to NumPy")
        if log:
            print(f"streampipe: stage {stage!r}: no GPU, running on CPU with NumPy",
                  file=sys.stderr, flush=True)
        return "cpu", numpy
    count = cp.cuda.runtime.getDeviceCount()
    index = int(os.environ.get("STREAMPIPE_GPU", local_rank % count))
    cp.cuda.Device(index).use()
    return "gpu", cp


def to_host(x: Any) -> Any:
    """A NumPy copy of a CuPy array (anything else is returned as it is)."""
    get = getattr(x, "get", None)
    if get is not None and type(x).__module__.startswith("cupy"):
        return get()
    return x


def wire_hooks(ctx: Any) -> tuple[Any, Any]:
    """(to_wire, from_wire) for a GPU stage: device arrays leave as host arrays after the
    producing stream is synchronised, and arrive on the device."""
    xp = ctx.xp

    def to_wire(value: Any) -> Any:
        if type(value).__module__.startswith("cupy"):
            xp.cuda.get_current_stream().synchronize()
            return value.get()
        return value

    def from_wire(value: Any) -> Any:
        if isinstance(value, numpy.ndarray):
            return xp.asarray(value)
        return value

    return to_wire, from_wire
