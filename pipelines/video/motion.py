"""Block motion estimation (SAD; full or diamond search) and motion compensation.

Motion vectors are integer ``(dy, dx)`` per 16x16 macroblock, limited to ``|dy|, |dx| <= range``
and to blocks that lie wholly inside the reference (so no padding rule is needed).  Ties in SAD
go to the shorter vector (``|dy| + |dx|``), then to the first candidate in raster order of
``(dy, dx)`` — a total order, so every search path and device picks the same vector.

Array layout used by the codec: ``mvs`` is ``(n_mb, 2, 2)`` int32 — ``mvs[m, 0]`` the forward
(past reference) vector, ``mvs[m, 1]`` the backward (future reference) one; ``modes`` is
``(n_mb,)`` int8 with :data:`FORWARD`, :data:`BACKWARD` or :data:`BIDIR`.

Chroma (4:2:0) has no vectors of its own: a macroblock's 8x8 chroma blocks move by half its
luma vector, ``(dy/2, dx/2)``.  An odd luma component puts chroma on a half-pel position, which
is predicted bilinearly in integers: with ``lo = v >> 1`` (floor) and ``hi = (v + 1) >> 1``
(ceil) per component, the prediction is ``(s(lo,lo) + s(lo,hi) + s(hi,lo) + s(hi,hi) + 2) >> 2``
of the four integer-displaced blocks ``s`` (for an even component ``lo == hi``, so whole-pel
vectors copy exactly).  Both positions stay inside the chroma plane whenever the luma block is
inside the luma plane, as the luma offset and plane size are even.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .frameio import MB
from .yuv import YUV

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


def _shifted_blocks(ref: np.ndarray, mvs: np.ndarray, size: int = MB) -> np.ndarray:
    """``(n_mb, size, size)`` blocks of ``ref`` displaced by each block's vector (block ``m``
    sits at its raster position on a grid of ``size``-pixel blocks)."""
    h, w = ref.shape
    cols = w // size
    n = len(mvs)
    ys = (np.arange(n) // cols) * size + mvs[:, 0]
    xs = (np.arange(n) % cols) * size + mvs[:, 1]
    out = (ys < 0) | (xs < 0) | (ys > h - size) | (xs > w - size)
    if out.any():
        bad = int(np.flatnonzero(out)[0])
        raise ValueError(f"macroblock {bad}: motion vector {tuple(mvs[bad])} leaves the frame")
    r = np.arange(size)
    return ref[(ys[:, None] + r)[:, :, None], (xs[:, None] + r)[:, None, :]]


def _luma_blocks(ref: np.ndarray, mvs: np.ndarray) -> np.ndarray:
    return _shifted_blocks(ref, mvs).astype(np.int32)


def _chroma_blocks(ref: np.ndarray, mvs: np.ndarray) -> np.ndarray:
    """8x8 chroma blocks predicted with half the luma vectors (bilinear at half-pel; see the
    module docstring)."""
    mvs = np.asarray(mvs, np.int32)
    lo, hi = mvs >> 1, (mvs + 1) >> 1
    total = np.zeros((len(mvs), MB // 2, MB // 2), np.int32)
    for vy in (lo[:, 0], hi[:, 0]):
        for vx in (lo[:, 1], hi[:, 1]):
            total += _shifted_blocks(ref, np.stack([vy, vx], axis=1), MB // 2)
    return (total + 2) >> 2


def _assemble(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    size = blocks.shape[-1]
    return blocks.reshape(h // size, w // size, size, size).transpose(0, 2, 1, 3).reshape(h, w)


def _mb_predictions(
    refs: Sequence[np.ndarray], mvs: np.ndarray, blocks: Any = _luma_blocks
) -> list[np.ndarray]:
    """Forward, backward and bi-average block predictions (int32) for the given references."""
    fwd = blocks(refs[0], mvs[:, 0])
    if len(refs) == 1:
        return [fwd]
    bwd = blocks(refs[1], mvs[:, 1])
    return [fwd, bwd, (fwd + bwd + 1) >> 1]


def _compensate_plane(
    refs: Sequence[np.ndarray], mvs: np.ndarray, modes: np.ndarray, blocks: Any
) -> np.ndarray:
    h, w = refs[0].shape
    preds = np.stack(_mb_predictions(refs, mvs, blocks))
    modes = np.asarray(modes, np.intp)
    if modes.min(initial=0) < 0 or modes.max(initial=0) >= len(preds):
        raise ValueError(f"block modes must be in 0..{len(preds) - 1}, got {np.unique(modes)}")
    chosen = preds[modes, np.arange(len(modes))]
    return _assemble(chosen.astype(np.uint8), h, w)


def compensate(refs: Sequence[Any], mvs: np.ndarray, modes: np.ndarray) -> Any:
    """The prediction (uint8) from reference pictures, vectors and per-macroblock modes.

    ``refs`` is ``[past]`` for P frames and ``[past, future]`` for B frames, either luma planes
    (returns a plane) or :class:`YUV` pictures (returns a YUV picture; chroma moves by half the
    luma vectors).  Shared by the encoder and the decoder.
    """
    if not isinstance(refs[0], YUV):
        return _compensate_plane(refs, mvs, modes, _luma_blocks)
    return YUV(
        _compensate_plane([r.y for r in refs], mvs, modes, _luma_blocks),
        _compensate_plane([r.u for r in refs], mvs, modes, _chroma_blocks),
        _compensate_plane([r.v for r in refs], mvs, modes, _chroma_blocks),
    )


def intra_prediction(shape: tuple[int, int]) -> np.ndarray:
    """The prediction of an I frame: mid-grey, so the DCT codes the level-shifted picture."""
    return np.full(shape, 128, np.uint8)


def estimate(
    cur: Any, refs: Sequence[Any], search: str = "full", rng: int = 8, xp: Any = np
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Motion-estimate ``cur`` against 1 (P) or 2 (B) reconstructed references.

    ``cur`` and ``refs`` are luma planes or :class:`YUV` pictures; the search and the mode
    decision look at luma only.  Returns ``(mvs, modes, prediction)``, the prediction of the
    same kind as ``cur``.  A B block takes the forward, backward or averaged prediction,
    whichever has the lowest luma SAD (ties in that order).
    """
    pictures = [YUV(*map(np.asarray, r)) for r in refs] if isinstance(cur, YUV) else None
    if pictures is not None:
        cur, refs = cur.y, [r.y for r in pictures]
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
    return mvs, modes, compensate(pictures or refs_np, mvs, modes)
