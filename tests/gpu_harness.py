"""The GPU test harness: which CuPy the GPU-path tests use, and how launched ranks get it.

``device_module()`` is real CuPy when it sees a CUDA device and ``STREAMPIPE_CUPY_STANDIN`` is
not set, else the strict stand-in (``streampipe.cupy_standin``), so every GPU-path test runs in
CI without a GPU and, unchanged, on a GPU (``benchmarks/gpu_check.py``).  Equality tests use its
``testing.numpy_cupy_allclose`` / ``numpy_cupy_array_equal``, CuPy's own decorators on a GPU.

``standin_env()`` is the environment a test hands to the ranks it launches so that their GPU
stages use the same module: ``STREAMPIPE_CUPY_STANDIN=strict`` on the stand-in, nothing on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import ModuleType

import pytest

from streampipe import cupy_standin, gpu


@lru_cache(maxsize=1)
def _real_cupy() -> ModuleType | None:
    if gpu.standin_mode() is not None:
        return None
    try:
        import cupy

        if getattr(cupy, "STANDIN", False) or cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return None


def on_standin() -> bool:
    """Whether the GPU-path tests run on the stand-in (no usable GPU, or asked for)."""
    return _real_cupy() is None


def device_module() -> ModuleType:
    """Real CuPy on a GPU, else the strict stand-in.

    The stand-in is not installed as ``cupy`` here (test modules call this at collection, and
    a module that does ``pytest.importorskip("cupy")`` must still see what is really there);
    :func:`device_session` installs it for the test that runs.
    """
    real = _real_cupy()
    return real if real is not None else cupy_standin


@contextmanager
def standin_env() -> Iterator[None]:
    """Launched ranks use the same CuPy as this process (the stand-in, or the GPU)."""
    if not on_standin():
        yield
        return
    old = os.environ.get("STREAMPIPE_CUPY_STANDIN")
    os.environ["STREAMPIPE_CUPY_STANDIN"] = "strict"
    try:
        yield
    finally:
        if old is None:
            del os.environ["STREAMPIPE_CUPY_STANDIN"]
        else:
            os.environ["STREAMPIPE_CUPY_STANDIN"] = old


@contextmanager
def device_session(devices: int = 1) -> Iterator[ModuleType]:
    """This process resolves GPU stages to :func:`device_module` (on the stand-in: a fresh one
    with ``devices`` GPUs, and ``STREAMPIPE_CUPY_STANDIN=strict`` set for ``streampipe.gpu`` and
    for any rank launched meanwhile)."""
    cp = device_module()
    if not on_standin():
        yield cp
        return
    cupy_standin.configure(devices=devices)
    with standin_env():
        gpu._probe.cache_clear()
        cupy_standin.install()
        try:
            yield cp
        finally:
            cupy_standin.uninstall()
            gpu._probe.cache_clear()


@pytest.fixture
def xp_gpu():
    """The device module for one test (see :func:`device_session`)."""
    with device_session() as cp:
        yield cp
