"""The codec's hot loops, on NumPy and as CUDA kernels (CuPy): the SAD volume of the motion
search and the 8x8 DCT.

``sad_volume`` and ``dct_blocks`` take the array module ``xp``: NumPy runs the reference code
below, CuPy (or the strict stand-in) a raw kernel.  The stand-in runs each kernel through the
NumPy path (registered with :func:`streampipe.gpu.register_kernel_reference`), so there the two
agree exactly; on a GPU the SAD volume is integer-exact and the DCT equal to rounding (the sums
run in another order).  This module imports nothing else of the codec.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from streampipe import gpu

__all__ = ["MB", "B", "INVALID", "candidates", "sad_volume", "dct_matrix", "dct_blocks",
           "sad_volume_gpu", "dct8x8_gpu"]

MB = 16  # macroblock side
B = 8  # transform block side
INVALID = np.iinfo(np.int32).max  # SAD of a candidate whose block leaves the reference


def check_range(rng: Any) -> int:
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or not 0 <= rng < 512:
        raise ValueError(f"range: must be an integer in 0..511, got {rng!r}")
    return int(rng)


def candidates(rng: int) -> np.ndarray:
    """All ``(dy, dx)`` with ``|dy|, |dx| <= rng`` in raster order, ``(n, 2)`` int32."""
    d = np.arange(-rng, rng + 1, dtype=np.int32)
    return np.stack(np.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)


def _host(x: Any) -> np.ndarray:
    get = getattr(x, "get", None)
    return x if isinstance(x, np.ndarray) else get() if callable(get) else np.asarray(x)


def sad_volume(cur: Any, ref: Any, rng: int, xp: Any = np) -> np.ndarray:
    """SAD of every macroblock of luma ``cur`` against every whole-pel candidate vector into
    ``ref`` (same size): ``(n_mb, (2·rng+1)²)`` int32, on the host.  Candidates whose block
    would leave ``ref`` get :data:`INVALID`.  On CuPy: one thread per macroblock and candidate."""
    rng = check_range(rng)
    if xp is not np:
        return sad_volume_gpu(cur, ref, rng, xp)
    cur, ref = _host(cur), _host(ref)
    h, w = cur.shape
    c = cur.astype(np.int32)
    padded = np.pad(ref.astype(np.int32), rng)
    cand = candidates(rng)
    out = np.empty((h // MB * (w // MB), len(cand)), np.int32)
    mb_y = np.arange(h // MB) * MB
    mb_x = np.arange(w // MB) * MB
    for k, (dy, dx) in enumerate(cand):
        diff = np.abs(c - padded[rng + dy : rng + dy + h, rng + dx : rng + dx + w])
        sad = diff.reshape(h // MB, MB, w // MB, MB).sum(axis=(1, 3))
        ok_y = (mb_y + dy >= 0) & (mb_y + dy <= h - MB)
        ok_x = (mb_x + dx >= 0) & (mb_x + dx <= w - MB)
        out[:, k] = np.where(ok_y[:, None] & ok_x[None, :], sad, INVALID).ravel()
    return out


@lru_cache(maxsize=1)
def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``C`` (``C @ C.T == I``); a block's DCT is C·X·Cᵀ."""
    k = np.arange(B)[:, None]
    n = np.arange(B)[None, :]
    c = np.sqrt(2.0 / B) * np.cos(np.pi * (2 * n + 1) * k / (2 * B))
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


_ROWS = 48


@lru_cache(maxsize=1)
def _kron() -> np.ndarray:
    k = np.kron(dct_matrix(), dct_matrix())  # vec(C X C^T) = (C kron C) vec(X), row-major
    k.setflags(write=False)
    return k


def dct_blocks(blocks: Any, inverse: bool = False, xp: Any = np) -> Any:
    """Forward (C·X·Cᵀ) or inverse (Cᵀ·Y·C) DCT of float64 ``(n, 8, 8)`` blocks on ``xp``
    (the result is on ``xp`` too).  NumPy computes it as one matrix product with the 64x64
    matrix C⊗C (its transpose for the inverse)."""
    if xp is not np:
        return dct8x8_gpu(blocks, inverse, xp)
    flat = np.asarray(blocks, np.float64).reshape(-1, B * B)
    m = _kron() if inverse else _kron().T
    out = np.empty_like(flat)
    # Products of _ROWS rows stay below the size at which OpenBLAS starts threads: on ranks
    # that share cores, waking threads for an 8x8 transform costs more than the product.
    for i in range(0, len(flat), _ROWS):
        np.matmul(flat[i : i + _ROWS], m, out=out[i : i + _ROWS])
    return out.reshape(-1, B, B)


_SOURCE = r"""
extern "C" __global__
void streampipe_video_sad_volume(const unsigned char* cur, const unsigned char* ref,
                                 const int h, const int w, const int rng, int* out) {
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
void streampipe_video_dct8x8(const double* x, const double* c, const long long n_blocks,
                             const int inverse, double* y) {
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
_SAD, _DCT = "streampipe_video_sad_volume", "streampipe_video_dct8x8"


@lru_cache(maxsize=4)
def _module(cp: Any) -> Any:
    return cp.RawModule(code=_SOURCE)


def sad_volume_gpu(cur: Any, ref: Any, rng: int, cp: Any) -> np.ndarray:
    """:func:`sad_volume` on the GPU of the CuPy module ``cp`` (returned on the host); host
    inputs are uploaded."""
    c = cp.ascontiguousarray(cp.asarray(cur, dtype=cp.uint8))
    r = cp.ascontiguousarray(cp.asarray(ref, dtype=cp.uint8))
    h, w = c.shape
    n_mb, ncand = (h // MB) * (w // MB), (2 * rng + 1) ** 2
    out = cp.empty((n_mb, ncand), cp.int32)
    grid = ((n_mb * ncand + _THREADS - 1) // _THREADS,)
    _module(cp).get_function(_SAD)(
        grid, (_THREADS,), (c, r, np.int32(h), np.int32(w), np.int32(rng), out)
    )
    return cp.asnumpy(out)


def dct8x8_gpu(blocks: Any, inverse: bool, cp: Any) -> Any:
    """:func:`dct_blocks` on the GPU of ``cp`` (a device array)."""
    x = cp.ascontiguousarray(cp.asarray(blocks, dtype=cp.float64))
    n = x.size // (B * B)
    out = cp.empty_like(x)
    grid = ((n * B * B + _THREADS - 1) // _THREADS,)
    _module(cp).get_function(_DCT)(
        grid, (_THREADS,), (x, cp.asarray(dct_matrix()), np.int64(n), np.int32(inverse), out)
    )
    return out


# The stand-in's references: host views of the kernel's buffers; outputs written in place.
def _sad_reference(cur: np.ndarray, ref: np.ndarray, h: Any, w: Any, rng: Any, out: np.ndarray,
                   **launch: Any) -> None:
    h, w = int(h), int(w)
    out.reshape(-1)[:] = sad_volume(cur.reshape(h, w), ref.reshape(h, w), int(rng)).ravel()


def _dct_reference(x: np.ndarray, c: np.ndarray, n: Any, inverse: Any, out: np.ndarray,
                   **launch: Any) -> None:
    out.reshape(-1)[:] = dct_blocks(x.reshape(int(n), B, B), inverse=bool(inverse)).ravel()


gpu.register_kernel_reference(_SAD, _sad_reference)
gpu.register_kernel_reference(_DCT, _dct_reference)
