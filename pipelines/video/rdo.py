"""The encoder's rate-distortion decisions (none of this is part of the format): which mode each
macroblock takes, which blocks are not worth their bits, and the lambdas that weigh bits
against squared error.

Costs are ``J = D + lambda * R`` with ``D`` the squared error (in the DCT domain, which the
orthonormal DCT makes equal to the pixel domain) and ``R`` the bits the syntax would spend
(:func:`block_bits` counts the Exp-Golomb codes exactly).  ``lambda`` grows with the square of
the quantiser step, as in H.264's reference encoder; the motion search uses its square root
with SAD.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .motion import (
    BACKWARD,
    BIDIR,
    FORWARD,
    INTRA,
    LIMIT,
    MAX_RANGE,
    Reference,
    compensate,
    median_field,
    mv_bits,
    search,
)
from .syntax import B_TYPES, P_TYPES, mb_blocks
from .transform import (
    INTER_LUMA,
    block_coefficients,
    block_kinds,
    picture_to_blocks,
    quantize_coefficients,
    tables,
)
from .yuv import MB, YUV, host, neutral_chroma

__all__ = ["LAMBDA_MODE", "LAMBDA_MOTION", "ROUNDING", "lambdas", "block_bits", "quantize_rd",
           "quantize_frame", "estimate"]

# lambda per squared step (mode decisions, block zeroing) and per step (motion search, SAD)
LAMBDA_MODE = 0.2
LAMBDA_MOTION = 0.45
# rounding offset of the quantiser per block kind (intra luma, intra chroma, inter luma/chroma)
ROUNDING = np.array([0.5, 0.5, 0.33, 0.33])
# intra gets the full rate-distortion cost only where its SAD cost (from the block means) is
# within this factor of the best inter candidate's: elsewhere it cannot win in practice, and
# the test saves a third of the DCTs of a P frame
PRUNE = 1.5


def lambdas(scale: int) -> tuple[float, float]:
    """``(lambda_mode, lambda_motion)`` for a frame of libjpeg quantiser ``scale``."""
    step = float(tables(scale)[INTER_LUMA, 0])
    return LAMBDA_MODE * step * step, LAMBDA_MOTION * step


@lru_cache(maxsize=1)
def _ue_table() -> np.ndarray:
    v = np.arange(1 << 16, dtype=np.int64) + 1
    return (2 * (np.floor(np.log2(v)).astype(np.int64)) + 1).astype(np.int64)


def _ue_bits(v: np.ndarray) -> np.ndarray:
    return _ue_table()[np.minimum(v, (1 << 16) - 1)]


def _se_bits(v: np.ndarray) -> np.ndarray:
    return _ue_bits(np.where(v > 0, 2 * v - 1, -2 * v))


def block_bits(levels: np.ndarray) -> np.ndarray:
    """Bits of each block's code (``ue(n - 1)`` then ``ue(run) se(level)`` per non-zero level;
    0 for an empty block), ``(n_blocks,)`` int64."""
    blk, pos = np.nonzero(levels)
    n = len(levels)
    if not len(blk):
        return np.zeros(n, np.int64)
    start = np.r_[True, blk[1:] != blk[:-1]]
    prev = np.where(start, -1, np.r_[-1, pos[:-1]])
    pair = _ue_bits(pos - prev - 1) + _se_bits(levels[blk, pos].astype(np.int64))
    bits = np.bincount(blk, weights=pair, minlength=n).astype(np.int64)
    nnz = np.bincount(blk, minlength=n)
    return bits + np.where(nnz > 0, _ue_bits(np.maximum(nnz - 1, 0)), 0)


def quantize_rd(coef: np.ndarray, steps: np.ndarray, bias: np.ndarray, lam: float,
                zeroable: np.ndarray, forced: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levels of coefficient blocks, then every ``zeroable`` block whose levels cost more than
    they save (``D(zero) <= D + lam * R``) set to zero, and every ``forced`` block too.
    Returns ``(levels, D, R)`` per block after that choice."""
    levels = quantize_coefficients(coef, steps, bias)
    err = coef - levels * steps
    d = np.einsum("ij,ij->i", err, err)
    d0 = np.einsum("ij,ij->i", coef, coef)
    r = block_bits(levels)
    zero = zeroable & (d0 <= d + lam * r)
    if forced is not None:
        zero |= forced
    levels[zero] = 0
    return levels, np.where(zero, d0, d), np.where(zero, 0, r)


def quantize_frame(coef: np.ndarray, scale: int, kinds: np.ndarray,
                   forced: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`quantize_rd` of a picture's coefficient blocks with the frame's tables, rounding
    and lambda: inter blocks may be zeroed, ``forced`` ones (skipped macroblocks) are."""
    return quantize_rd(coef, tables(scale)[kinds], ROUNDING[kinds][:, None], lambdas(scale)[0],
                       kinds >= INTER_LUMA, forced)


def _mb_sum(per_block: np.ndarray, order: np.ndarray) -> np.ndarray:
    return per_block[order].sum(axis=1)


def _cbp_bits(r: np.ndarray, order: np.ndarray) -> np.ndarray:
    coded = (r[order] > 0).astype(np.int64)
    cbp = (coded << np.arange(6)).sum(axis=1)
    return _ue_bits(cbp)


def _candidate_cost(cur: YUV, pred: YUV, scale: int, intra: bool, lam: float,
                    forced_zero: bool, mbs: np.ndarray, xp: Any) -> np.ndarray:
    """``D + lam * R`` of coding macroblocks ``mbs`` of ``cur`` from ``pred`` (coefficients
    and coded block pattern; the macroblock header is the caller's); inf for the others."""
    h, w = cur.y.shape
    order = mb_blocks(w, h)
    cost = np.full(len(order), np.inf)
    if not len(mbs):
        return cost
    residual = YUV(*(xp.asarray(c, dtype=xp.int16) - xp.asarray(p, dtype=xp.int16)
                     for c, p in zip(cur, pred, strict=True)))
    blocks = order[mbs]  # (n, 6) block indices of the chosen macroblocks
    coef = block_coefficients(picture_to_blocks(residual, xp)[xp.asarray(blocks.ravel())], xp)
    kinds = block_kinds(w, h, np.full(len(order), intra))[blocks.ravel()]
    _, d, r = quantize_frame(coef, scale, kinds, np.full(len(coef), forced_zero))
    local = np.arange(blocks.size).reshape(blocks.shape)
    cost[mbs] = _mb_sum(d, local) + lam * _mb_sum(r, local)
    if not forced_zero:
        cost[mbs] += lam * _cbp_bits(r, local)
    return cost


def _luma_sad(cur: np.ndarray, pred: np.ndarray) -> np.ndarray:
    h, w = cur.shape
    diff = np.abs(cur.astype(np.int16) - pred.astype(np.int16))
    return diff.reshape(h // MB, MB, w // MB, MB).sum(axis=(1, 3), dtype=np.int64).ravel()


def _type_bits(types: tuple[int, ...], mode: int) -> int:
    # ue(index of the type) and ue(0) for the skip run before a coded macroblock
    return 2 * types.index(mode).bit_length() + 1 + 1


def estimate(
    cur: YUV,
    refs: Sequence[Reference],
    distances: Sequence[int],
    scale: int,
    rng: int = 8,
    search_method: str = "hierarchical",
    xp: Any = np,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, YUV]:
    """Motion vectors and the rate-distortion choice of mode per macroblock of picture ``cur``
    predicted from 1 (P) or 2 (B) references.

    Each reference is searched ``rng * distance`` pixels far (at most ``MAX_RANGE``).  P
    macroblocks choose between the forward vector, *skip* (the predicted vector and no
    coefficients) and intra; B macroblocks between forward, backward, their average and intra.
    Returns ``(mvs, modes, skip, prediction)``; ``skip`` marks the macroblocks whose levels the
    transform must leave at zero.
    """
    cur = YUV(*(host(p) for p in cur))
    h, w = cur.y.shape
    rows, cols = h // MB, w // MB
    n_mb = rows * cols
    lam, lam_motion = lambdas(scale)
    mvs = np.zeros((n_mb, 2, 2), np.int32)
    for d, (ref, dist) in enumerate(zip(refs, distances, strict=True)):
        mvs[:, d], _ = search(cur.y, ref, min(MAX_RANGE, rng * max(1, dist)), lam_motion,
                              search_method, xp)
    types = P_TYPES if len(refs) == 1 else B_TYPES
    preds = [median_field(mvs[:, d], rows, cols) for d in range(len(refs))]
    # the candidates: (mode, vectors if not the searched ones, prediction, header bits, skip)
    cands = []
    for mode in types:
        header = np.full(n_mb, _type_bits(types, mode), np.int64)
        if mode == INTRA:
            pred = neutral_chroma(np.full((h, w), 128, np.uint8))
        else:
            pred = compensate(refs, mvs, np.full(n_mb, mode, np.int8))
            for d in ((0,) if mode == FORWARD else (1,) if mode == BACKWARD else (0, 1)):
                header = header + mv_bits(mvs[:, d] - preds[d])
        cands.append((mode, None, pred, header, False))
    if len(refs) == 1:
        skip_mvs = mvs.copy()
        skip_mvs[:, 0] = _valid(preds[0], h, w)
        pred = compensate(refs, skip_mvs, np.full(n_mb, FORWARD, np.int8))
        cands.append((FORWARD, skip_mvs, pred, np.ones(n_mb, np.int64), True))
    # Intra gets its rate-distortion cost only where its SAD cost is near the best inter one's.
    rough = np.stack([(_intra_sad(cur.y) if mode == INTRA else _luma_sad(cur.y, pred.y))
                      + lam_motion * header for mode, _, pred, header, _ in cands])
    inter = np.array([mode != INTRA for mode, *_ in cands])
    near = inter[:, None] | (rough <= PRUNE * rough[inter].min(axis=0))
    costs = [_candidate_cost(cur, pred, scale, mode == INTRA, lam, forced, np.flatnonzero(ok),
                             xp) + lam * header
             for (mode, _, pred, header, forced), ok in zip(cands, near, strict=True)]
    options = [(mode, vec) for mode, vec, *_ in cands]
    choice = np.argmin(np.stack(costs), axis=0)
    modes = np.array([options[c][0] for c in range(len(options))], np.int8)[choice]
    skip = np.zeros(n_mb, bool)
    for c, (_, vec) in enumerate(options):
        if vec is not None:
            sel = choice == c
            skip[sel] = True
            mvs[sel] = vec[sel]
    uses_f = (modes == FORWARD) | (modes == BIDIR)
    uses_b = (modes == BACKWARD) | (modes == BIDIR)
    mvs[~uses_f, 0] = 0  # unused vectors are not coded; keep them zero
    mvs[~uses_b, 1] = 0
    return mvs, modes, skip, compensate(refs, mvs, modes)


def _intra_sad(y: np.ndarray) -> np.ndarray:
    """Per macroblock the SAD of its luma from its four 8x8 block means: what an intra
    macroblock leaves to its AC coefficients."""
    h, w = y.shape
    b = y.reshape(h // 8, 8, w // 8, 8).astype(np.int32)
    dev = np.abs(b - b.mean(axis=(1, 3), keepdims=True)).sum(axis=(1, 3))
    return dev.reshape(h // MB, 2, w // MB, 2).sum(axis=(1, 3)).ravel()


def _valid(v: np.ndarray, h: int, w: int) -> np.ndarray:
    """Half-pel vectors clipped to what :func:`.motion.check_vectors` accepts."""
    m = np.arange(len(v))
    ys, xs = (m // (w // MB)) * MB, (m % (w // MB)) * MB
    lo = np.stack([2 * (-LIMIT - ys), 2 * (-LIMIT - xs)], 1)
    hi = np.stack([2 * (h - MB + LIMIT - ys) + 1, 2 * (w - MB + LIMIT - xs) + 1], 1)
    return np.clip(v, lo, hi).astype(np.int32)
