"""CUDA kernels (CuPy, imported lazily) for the hot loops: SAD volumes and 8x8 DCTs.

They compute exactly what the NumPy paths in :mod:`.motion` and :mod:`.transform` compute:
the SAD volume integer-exact, the DCT in float64 to rounding (the sums run in another order).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .frameio import MB
from .transform import B, dct_matrix

__all__ = ["sad_volume_gpu", "dct8x8_gpu"]

_SOURCE = r"""
extern "C" __global__
void sad_volume(const unsigned char* cur, const unsigned char* ref, const int h, const int w,
                const int rng, int* out) {
    // One thread per (macroblock, candidate); candidates in raster order of (dy, dx).
    const int side = 2 * rng + 1, ncand = side * side, cols = w / 16;
    const long long n = (long long)cols * (h / 16) * ncand;
    const long long t = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (t >= n) return;
    const int mb = (int)(t / ncand), k = (int)(t % ncand);
    const int dy = k / side - rng, dx = k % side - rng;
    const int y = (mb / cols) * 16, x = (mb % cols) * 16;
    if (y + dy < 0 || y + dy > h - 16 || x + dx < 0 || x + dx > w - 16) {
        out[t] = 2147483647;
        return;
    }
    int s = 0;
    for (int i = 0; i < 16; ++i) {
        const unsigned char* a = cur + (long long)(y + i) * w + x;
        const unsigned char* b = ref + (long long)(y + dy + i) * w + x + dx;
        for (int j = 0; j < 16; ++j) s += abs((int)a[j] - (int)b[j]);
    }
    out[t] = s;
}

extern "C" __global__
void dct8x8(const double* x, const double* c, const long long n_blocks, const int inverse,
            double* y) {
    // One thread per output coefficient: forward C.X.C^T, inverse C^T.Y.C.
    const long long t = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    if (t >= n_blocks * 64) return;
    const double* blk = x + (t / 64) * 64;
    const int u = (int)(t % 64) / 8, v = (int)(t % 8);
    double s = 0.0;
    for (int i = 0; i < 8; ++i) {
        double r = 0.0;
        for (int j = 0; j < 8; ++j) r += blk[i * 8 + j] * (inverse ? c[j * 8 + v] : c[v * 8 + j]);
        s += (inverse ? c[i * 8 + u] : c[u * 8 + i]) * r;
    }
    y[t] = s;
}
"""

_THREADS = 256


@lru_cache(maxsize=1)
def _module() -> Any:
    import cupy as cp

    return cp.RawModule(code=_SOURCE)


def sad_volume_gpu(cur: Any, ref: Any, rng: int) -> np.ndarray:
    """The SAD volume of :func:`.motion.sad_volume` computed on the GPU (returned on the host)."""
    import cupy as cp

    c = cp.ascontiguousarray(cp.asarray(cur, dtype=cp.uint8))
    r = cp.ascontiguousarray(cp.asarray(ref, dtype=cp.uint8))
    h, w = c.shape
    n_mb, ncand = (h // MB) * (w // MB), (2 * rng + 1) ** 2
    out = cp.empty((n_mb, ncand), cp.int32)
    grid = ((n_mb * ncand + _THREADS - 1) // _THREADS,)
    _module().get_function("sad_volume")(
        grid, (_THREADS,), (c, r, np.int32(h), np.int32(w), np.int32(rng), out)
    )
    return cp.asnumpy(out)


def dct8x8_gpu(blocks: Any, inverse: bool = False) -> Any:
    """Forward or inverse 8x8 DCT of ``(n, 8, 8)`` float64 blocks on the GPU (a CuPy array)."""
    import cupy as cp

    x = cp.ascontiguousarray(cp.asarray(blocks, dtype=cp.float64))
    n = x.size // (B * B)
    out = cp.empty_like(x)
    grid = ((n * B * B + _THREADS - 1) // _THREADS,)
    _module().get_function("dct8x8")(
        grid, (_THREADS,), (x, cp.asarray(dct_matrix()), np.int64(n), np.int32(inverse), out)
    )
    return out
