"""Block motion estimation (SAD; full or diamond search) and motion compensation.

Motion vectors are integer ``(dy, dx)`` per 16x16 macroblock, limited to ``|dy|, |dx| <= range``
and to blocks that lie wholly inside the reference (so no padding rule is needed).  Ties in SAD
go to the shorter vector (``|dy| + |dx|``), then to the first candidate in raster order of
``(dy, dx)`` — a total order, so every search path and device picks the same vector.

Array layout used by the codec: ``mvs`` is ``(n_mb, 2, 2)`` int32 — ``mvs[m, 0]`` the forward
(past reference) vector, ``mvs[m, 1]`` the backward (future reference) one; ``modes`` is
``(n_mb,)`` int8 with :data:`FORWARD`, :data:`BACKWARD` or :data:`BIDIR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .frameio import MB

__all__ = [
    "FORWARD",
    "BACKWARD",
    "BIDIR",
    "sad_volume",
    "full_search",
    "diamond_search",
    "estimate",
    "compensate",
    "intra_prediction",
]

FORWARD, BACKWARD, BIDIR = 0, 1, 2
INVALID = np.iinfo(np.int32).max  # SAD of a candidate whose block leaves the reference
_TIE = 1024  # key = sad * _TIE + |dy| + |dx|; ranges stay below 512 so lengths never overflow

_LARGE_DIAMOND = ((-2, 0), (-1, -1), (-1, 1), (0, -2), (0, 2), (1, -1), (1, 1), (2, 0))
_SMALL_DIAMOND = ((-1, 0), (0, -1), (0, 1), (1, 0))


def _check_range(rng: int) -> int:
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or not 0 <= rng < 512:
        raise ValueError(f"range: must be an integer in 0..511, got {rng!r}")
    return int(rng)


def candidates(rng: int) -> np.ndarray:
    """All ``(dy, dx)`` with ``|dy|, |dx| <= rng`` in raster order, ``(n, 2)`` int32."""
    d = np.arange(-rng, rng + 1, dtype=np.int32)
    return np.stack(np.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)


def sad_volume(cur: Any, ref: Any, rng: int, xp: Any = np) -> np.ndarray:
    """SAD of every macroblock against every candidate vector: ``(n_mb, (2·rng+1)²)`` int32.

    Candidates whose block would leave the reference get :data:`INVALID`.  On CuPy the volume
    is computed by a CUDA kernel (one thread per macroblock and candidate); it is integer-exact.
    """
    rng = _check_range(rng)
    if xp is not np:
        from .kernels import sad_volume_gpu

        return sad_volume_gpu(cur, ref, rng)
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


def full_search(cur: Any, ref: Any, rng: int, xp: Any = np) -> tuple[np.ndarray, np.ndarray]:
    """Best vector of every macroblock by exhaustive search: ``(mvs (n_mb, 2), sads (n_mb,))``."""
    vol = sad_volume(cur, ref, rng, xp).astype(np.int64)
    cand = candidates(_check_range(rng))
    length = np.abs(cand).sum(axis=1)
    best = np.argmin(vol * _TIE + length, axis=1)  # argmin keeps the first of equal keys
    return cand[best], vol[np.arange(len(vol)), best].astype(np.int32)


def _block_sad(cur: np.ndarray, ref: np.ndarray, y: int, x: int, dy: int, dx: int) -> int:
    a = cur[y : y + MB, x : x + MB].astype(np.int32)
    b = ref[y + dy : y + dy + MB, x + dx : x + dx + MB]
    return int(np.abs(a - b).sum())


def diamond_search(cur: np.ndarray, ref: np.ndarray, rng: int) -> tuple[np.ndarray, np.ndarray]:
    """Best vector of every macroblock by diamond search (large diamond, then small diamond).

    Each search starts from the best of ``(0, 0)`` and the vectors already found for the left
    and upper neighbours, so a uniform motion found once spreads across the frame.  Runs on the
    host: the search is a short sequential walk per block.
    """
    rng = _check_range(rng)
    cur, ref = np.asarray(cur), np.asarray(ref)
    h, w = cur.shape
    rows, cols = h // MB, w // MB
    mvs = np.zeros((rows * cols, 2), np.int32)
    sads = np.zeros(rows * cols, np.int32)
    for r in range(rows):
        for c in range(cols):
            starts = [(0, 0)]
            if c:
                starts.append(tuple(mvs[r * cols + c - 1]))
            if r:
                starts.append(tuple(mvs[(r - 1) * cols + c]))
            m = r * cols + c
            sads[m], mvs[m, 0], mvs[m, 1] = _diamond_block(cur, ref, r * MB, c * MB, rng, starts)
    return mvs, sads


def _diamond_block(
    cur: np.ndarray, ref: np.ndarray, y: int, x: int, rng: int, starts: list
) -> tuple[int, int, int]:
    """Diamond walk of the block at ``(y, x)``: ``(sad, dy, dx)`` of the vector it ends on."""
    h, w = cur.shape
    cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}

    def key(dy: int, dx: int) -> tuple[int, int, int, int]:
        # (sad, length, dy, dx): the codec's total order on candidates.
        if (dy, dx) not in cache:
            inside = 0 <= y + dy <= h - MB and 0 <= x + dx <= w - MB
            if max(abs(dy), abs(dx)) > rng or not inside:
                cache[(dy, dx)] = (INVALID, 0, 0, 0)
            else:
                sad = _block_sad(cur, ref, y, x, dy, dx)
                cache[(dy, dx)] = (sad, abs(dy) + abs(dx), dy, dx)
        return cache[(dy, dx)]

    best = min(key(int(dy), int(dx)) for dy, dx in starts)
    for pattern in (_LARGE_DIAMOND, _SMALL_DIAMOND):
        while True:
            step = min(key(best[2] + py, best[3] + px) for py, px in pattern)
            if step >= best:
                break
            best = step
    return best[0], best[2], best[3]


def _search(cur: Any, ref: Any, search: str, rng: int, xp: Any) -> tuple[np.ndarray, np.ndarray]:
    if search == "full":
        return full_search(cur, ref, rng, xp)
    if search == "diamond":
        return diamond_search(cur, ref, rng)
    raise ValueError(f"search: must be 'full' or 'diamond', got {search!r}")


def _shifted_blocks(ref: np.ndarray, mvs: np.ndarray) -> np.ndarray:
    """``(n_mb, 16, 16)`` blocks of ``ref`` displaced by each macroblock's vector."""
    h, w = ref.shape
    cols = w // MB
    n = len(mvs)
    ys = (np.arange(n) // cols) * MB + mvs[:, 0]
    xs = (np.arange(n) % cols) * MB + mvs[:, 1]
    if (ys < 0).any() or (xs < 0).any() or (ys > h - MB).any() or (xs > w - MB).any():
        bad = int(np.flatnonzero((ys < 0) | (xs < 0) | (ys > h - MB) | (xs > w - MB))[0])
        raise ValueError(f"macroblock {bad}: motion vector {tuple(mvs[bad])} leaves the frame")
    r = np.arange(MB)
    return ref[(ys[:, None] + r)[:, :, None], (xs[:, None] + r)[:, None, :]]


def _assemble(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    return blocks.reshape(h // MB, w // MB, MB, MB).transpose(0, 2, 1, 3).reshape(h, w)


def _mb_predictions(refs: Sequence[np.ndarray], mvs: np.ndarray) -> list[np.ndarray]:
    """Forward, backward and bi-average block predictions (int32) for the given references."""
    fwd = _shifted_blocks(refs[0], mvs[:, 0]).astype(np.int32)
    if len(refs) == 1:
        return [fwd]
    bwd = _shifted_blocks(refs[1], mvs[:, 1]).astype(np.int32)
    return [fwd, bwd, (fwd + bwd + 1) >> 1]


def compensate(refs: Sequence[np.ndarray], mvs: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """The prediction frame (uint8) from reference frames, vectors and per-block modes.

    ``refs`` is ``[past]`` for P frames and ``[past, future]`` for B frames.  Shared by the
    encoder and the decoder.
    """
    h, w = refs[0].shape
    preds = np.stack(_mb_predictions(refs, mvs))
    modes = np.asarray(modes, np.intp)
    if modes.min(initial=0) < 0 or modes.max(initial=0) >= len(preds):
        raise ValueError(f"block modes must be in 0..{len(preds) - 1}, got {np.unique(modes)}")
    chosen = preds[modes, np.arange(len(modes))]
    return _assemble(chosen.astype(np.uint8), h, w)


def intra_prediction(shape: tuple[int, int]) -> np.ndarray:
    """The prediction of an I frame: mid-grey, so the DCT codes the level-shifted picture."""
    return np.full(shape, 128, np.uint8)


def estimate(
    cur: Any, refs: Sequence[Any], search: str = "full", rng: int = 8, xp: Any = np
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion-estimate ``cur`` against 1 (P) or 2 (B) reconstructed references.

    Returns ``(mvs, modes, prediction)``.  A B block takes the forward, backward or averaged
    prediction, whichever has the lowest SAD (ties in that order).
    """
    cur_np = np.asarray(cur.get() if hasattr(cur, "get") else cur)
    refs_np = [np.asarray(r.get() if hasattr(r, "get") else r) for r in refs]
    dev_cur = xp.asarray(cur_np)
    n_mb = cur_np.size // (MB * MB)
    mvs = np.zeros((n_mb, 2, 2), np.int32)
    for d, ref in enumerate(refs_np):
        mvs[:, d] = _search(dev_cur, xp.asarray(ref), search, rng, xp)[0]
    preds = _mb_predictions(refs_np, mvs)
    blocks = cur_np.reshape(-1, MB, cur_np.shape[1] // MB, MB).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, MB, MB).astype(np.int32)
    sads = np.stack([np.abs(blocks - p).sum(axis=(1, 2)) for p in preds])
    modes = np.argmin(sads, axis=0).astype(np.int8)
    if len(refs_np) == 1:
        mvs[:, 1] = 0
    else:
        mvs[modes == FORWARD, 1] = 0  # unused vectors are not coded; keep them zero
        mvs[modes == BACKWARD, 0] = 0
    return mvs, modes, compensate(refs_np, mvs, modes)
