"""Half-pel block motion: the compensation shared by encoder and decoder, and the encoder's
search and macroblock mode decision.

Vectors are ``(dy, dx)`` per 16x16 macroblock in **half-pel** units.  ``mvs`` is
``(n_mb, 2, 2)`` int32: ``mvs[m, 0]`` the forward (past reference) vector, ``mvs[m, 1]`` the
backward (future reference) one; ``modes`` is ``(n_mb,)`` int8 with :data:`FORWARD`,
:data:`BACKWARD`, :data:`BIDIR` or :data:`INTRA`.

Prediction (integer arithmetic only, so every device and the decoder agree bit for bit):

- **Luma** at half-pel positions is MPEG-2's bilinear average of the 2 or 4 nearest whole-pel
  samples, ``(a + b + 1) >> 1`` and ``(a + b + c + d + 2) >> 2``.
- **Chroma** moves by the luma vector / 4 chroma pixels, i.e. the half-pel luma vector is a
  quarter-pel chroma vector: with ``f = v & 3`` and ``i = v >> 2`` per component, the sample is
  ``((4-fy)(4-fx) A + (4-fy) fx B + fy (4-fx) C + fy fx D + 8) >> 4`` of the four whole-pel
  samples around it (for whole-pel luma vectors this is the half-pel chroma rule of SPV2).
- **References are edge-extended**: a block may reach up to :data:`LIMIT` pixels beyond the coded
  picture (unrestricted vectors, as in H.263 Annex D), where a sample is the nearest edge sample.
- **B blocks** average the forward and backward predictions with ``(f + b + 1) >> 1``; **intra**
  blocks are predicted by 128 (the residual is the level-shifted picture).

The search (encoder only) is hierarchical: an exhaustive search at 1/4 resolution over the range
scaled with the distance to the reference, refined at 1/2 and full resolution, where the
neighbours' vectors are tried too, then refined to half-pel.  Costs are SAD + lambda * the bits
of the vector's difference from the neighbours' median.  ``search = "full"`` replaces the
pyramid by an exhaustive whole-pel search (the CUDA kernel on a GPU) before the half-pel step.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .kernels import candidates, check_range, sad_volume
from .yuv import MB, YUV, host

__all__ = [
    "FORWARD",
    "BACKWARD",
    "BIDIR",
    "INTRA",
    "LIMIT",
    "Reference",
    "sad_volume",
    "full_search",
    "check_vectors",
    "compensate",
    "intra_prediction",
    "search",
    "median_field",
    "mv_bits",
]

FORWARD, BACKWARD, BIDIR, INTRA = 0, 1, 2, 3
LIMIT = 32  # pixels a predicted luma block may reach beyond the coded picture
_CPAD = LIMIT // 2  # the same reach in chroma pixels
_TIE = 1024  # key = sad * _TIE + |dy| + |dx|; ranges stay below 512 so lengths never overflow
MAX_RANGE = 255  # whole pixels a search may reach from the zero vector


# --------------------------------------------------------------------------- references
class Reference:
    """A reconstructed anchor prepared for prediction: edge-extended planes and the luma
    half-pel grid ``up`` (``up[2y + a, 2x + b]`` is the sample at ``(y + a/2, x + b/2)``)."""

    def __init__(self, pic: YUV) -> None:
        y = host(pic.y)
        self.h, self.w = y.shape
        if self.h % MB or self.w % MB:
            raise ValueError(f"reference: {self.w}x{self.h} is not whole macroblocks")
        yp = np.pad(y, LIMIT, mode="edge")
        ext = np.pad(yp, ((0, 1), (0, 1)), mode="edge").astype(np.int16)
        a, b, c, d = ext[:-1, :-1], ext[:-1, 1:], ext[1:, :-1], ext[1:, 1:]
        up = np.empty((2 * yp.shape[0], 2 * yp.shape[1]), np.uint8)
        up[0::2, 0::2] = yp
        up[0::2, 1::2] = (a + b + 1) >> 1
        up[1::2, 0::2] = (a + c + 1) >> 1
        up[1::2, 1::2] = (a + b + c + d + 2) >> 2
        self.up = up
        # every 16x16 block of the half-pel grid (a view): blocks[2y + a, 2x + b] is the block
        # whose top-left sample is at (y + a/2, x + b/2)
        self.blocks = sliding_window_view(up, (2 * MB - 1, 2 * MB - 1))[:, :, ::2, ::2]
        self.y = yp  # whole-pel luma, edge-extended by LIMIT
        # chroma: one more row and column for the interpolation's second tap
        self.u, self.v = (np.pad(host(p), ((_CPAD, _CPAD + 1), (_CPAD, _CPAD + 1)), mode="edge")
                          for p in (pic.u, pic.v))
        self.chroma_windows = [sliding_window_view(p, (MB // 2 + 1, MB // 2 + 1))
                               for p in (self.u, self.v)]
        self._levels: dict[tuple[int, int], np.ndarray] = {}

    def level(self, f: int, pad: int) -> np.ndarray:
        """Luma downsampled by ``f`` (rounded box mean) and edge-extended by ``pad``."""
        key = (f, pad)
        if key not in self._levels:
            core = self.y[LIMIT : LIMIT + self.h, LIMIT : LIMIT + self.w]
            self._levels[key] = np.pad(downsample(core, f), pad, mode="edge")
        return self._levels[key]


def downsample(plane: np.ndarray, f: int) -> np.ndarray:
    """Rounded mean of ``f x f`` boxes (uint8); ``f = 1`` returns the plane."""
    if f == 1:
        return plane
    h, w = plane.shape
    s = plane.reshape(h // f, f, w // f, f).sum(axis=(1, 3), dtype=np.int32)
    return ((s + f * f // 2) // (f * f)).astype(np.uint8)


def _origins(mbs: int | np.ndarray, cols: int, size: int = MB) -> tuple[np.ndarray, np.ndarray]:
    """Top-left ``(ys, xs)`` of macroblocks ``mbs`` (indices, or a count: all of them) on a grid
    of ``size``-pixel blocks."""
    m = np.arange(mbs) if isinstance(mbs, (int, np.integer)) else mbs
    return (m // cols) * size, (m % cols) * size


def check_vectors(mvs: np.ndarray, h: int, w: int) -> None:
    """Raise ValueError when a vector (half-pel, ``(n_mb, 2)``) reaches more than LIMIT pixels
    beyond the ``w x h`` coded picture."""
    ys, xs = _origins(len(mvs), w // MB)
    py, px = ys + (mvs[:, 0] >> 1), xs + (mvs[:, 1] >> 1)
    bad = (py < -LIMIT) | (px < -LIMIT) | (py > h - MB + LIMIT) | (px > w - MB + LIMIT)
    if bad.any():
        m = int(np.flatnonzero(bad)[0])
        raise ValueError(f"macroblock {m}: motion vector {tuple(int(v) for v in mvs[m])} "
                         f"(half-pel) reaches beyond the {LIMIT}-pixel margin")


def _luma_blocks(ref: Reference, mvs: np.ndarray, mbs: np.ndarray | None = None) -> np.ndarray:
    """``(n, 256)`` uint8 luma predictions of macroblocks ``mbs`` (default: all, in raster
    order) for their half-pel vectors ``mvs``."""
    ys, xs = _origins(len(mvs) if mbs is None else mbs, ref.w // MB)
    blocks = ref.blocks[2 * (ys + LIMIT) + mvs[:, 0], 2 * (xs + LIMIT) + mvs[:, 1]]
    return blocks.reshape(len(ys), MB * MB)


def _chroma_blocks(windows: np.ndarray, mvs: np.ndarray, cols: int,
                   mbs: np.ndarray | None = None) -> np.ndarray:
    """``(n, 64)`` uint8 chroma predictions (8x8 per macroblock ``mbs``) at quarter-pel
    vectors; ``windows`` are the plane's 9x9 windows (:attr:`Reference.chroma_windows`)."""
    c = MB // 2
    ys, xs = _origins(len(mvs) if mbs is None else mbs, cols, c)
    fy, fx = (mvs[:, 0] & 3)[:, None, None], (mvs[:, 1] & 3)[:, None, None]
    win = windows[ys + _CPAD + (mvs[:, 0] >> 2), xs + _CPAD + (mvs[:, 1] >> 2)].astype(np.int32)
    a, b, cc, d = win[:, :c, :c], win[:, :c, 1:], win[:, 1:, :c], win[:, 1:, 1:]
    out = ((4 - fy) * (4 - fx) * a + (4 - fy) * fx * b + fy * (4 - fx) * cc + fy * fx * d + 8) >> 4
    return out.astype(np.uint8).reshape(len(ys), c * c)


def _assemble(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    size = int(round(np.sqrt(blocks.shape[-1])))
    return blocks.reshape(h // size, w // size, size, size).transpose(0, 2, 1, 3).reshape(h, w)


def _mb_blocks(plane: np.ndarray, size: int = MB) -> np.ndarray:
    """``(n_mb, size*size)`` blocks of a plane in raster order (inverse of _assemble)."""
    h, w = plane.shape
    return plane.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(
        -1, size * size)


def _predict_blocks(refs: Sequence[Reference], mvs: np.ndarray, modes: np.ndarray,
                    fetch: Any, size: int) -> np.ndarray:
    """Per-macroblock predictions (uint8, ``(n_mb, size)``) of one plane; ``fetch(ref,
    vectors, macroblocks)`` gives the blocks of a reference."""
    out = np.full((len(modes), size), 128, np.uint8)  # intra
    got = []
    for d, dir_mode in ((0, FORWARD), (1, BACKWARD)):
        use = (modes == dir_mode) | (modes == BIDIR)
        blocks = None
        if use.any():
            if d >= len(refs):
                raise ValueError(f"block mode needs reference {d}, the frame has {len(refs)}")
            blocks = fetch(refs[d], mvs[use, d], np.flatnonzero(use))
            only = modes == dir_mode
            out[only] = blocks[only[use]]
        got.append((use, blocks))
    bi = modes == BIDIR
    if bi.any():
        (uf, f), (ub, b) = got
        f16, b16 = f[bi[uf]].astype(np.int16), b[bi[ub]].astype(np.int16)
        out[bi] = ((f16 + b16 + 1) >> 1).astype(np.uint8)
    return out


def compensate(refs: Sequence[Reference], mvs: np.ndarray, modes: np.ndarray) -> YUV:
    """The prediction (uint8 :class:`YUV`) of a picture from its references (``[past]`` for P,
    ``[past, future]`` for B), half-pel vectors and macroblock modes.  Shared by the encoder
    and the decoder."""
    modes = np.asarray(modes, np.int8)
    if modes.size and (modes.min() < 0 or modes.max() > INTRA):
        raise ValueError(f"block modes must be in 0..{INTRA}, got {np.unique(modes)}")
    if not refs:
        raise ValueError("compensate: no reference picture")
    h, w = refs[0].h, refs[0].w
    cols = w // MB
    for d, dir_mode in ((0, FORWARD), (1, BACKWARD)):
        use = (modes == dir_mode) | (modes == BIDIR)
        check_vectors(np.where(use[:, None], mvs[:, d], 0), h, w)  # zero is always inside
    c = (MB // 2) ** 2
    y = _predict_blocks(refs, mvs, modes, _luma_blocks, MB * MB)
    u, v = (_predict_blocks(refs, mvs, modes,
                            lambda r, vec, m, i=i: _chroma_blocks(r.chroma_windows[i], vec,
                                                                  cols, m), c)
            for i in (0, 1))
    return YUV(_assemble(y, h, w), _assemble(u, h // 2, w // 2), _assemble(v, h // 2, w // 2))


def intra_prediction(shape: tuple[int, int]) -> np.ndarray:
    """The prediction of an intra block: mid-grey, so the DCT codes the level-shifted picture."""
    return np.full(shape, 128, np.uint8)


# --------------------------------------------------------------------------- whole-pel SAD
def full_search(cur: Any, ref: Any, rng: int, xp: Any = np) -> tuple[np.ndarray, np.ndarray]:
    """Best whole-pel vector of every macroblock by exhaustive search of blocks inside ``ref``:
    ``(mvs (n_mb, 2), sads (n_mb,))``; ties go to the shorter vector, then raster order."""
    vol = sad_volume(cur, ref, rng, xp).astype(np.int64)
    cand = candidates(check_range(rng))
    length = np.abs(cand).sum(axis=1)
    best = np.argmin(vol * _TIE + length, axis=1)  # argmin keeps the first of equal keys
    return cand[best], vol[np.arange(len(vol)), best].astype(np.int32)


# --------------------------------------------------------------------------- vector costs
@lru_cache(maxsize=1)
def _se_lengths() -> np.ndarray:
    v = np.arange(-4096, 4097)
    k = np.where(v > 0, 2 * v - 1, -2 * v) + 1
    return (2 * np.floor(np.log2(k)).astype(np.int64) + 1).astype(np.int32)


def mv_bits(d: np.ndarray) -> np.ndarray:
    """Signed Exp-Golomb bits of vector differences ``d`` (``(n, 2)`` half-pel): the search's
    estimate of what a vector costs."""
    t = _se_lengths()
    return t[np.clip(d[:, 0], -4096, 4096) + 4096] + t[np.clip(d[:, 1], -4096, 4096) + 4096]


def median_field(v: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per macroblock the component-wise median of its left, upper and upper-right neighbours'
    vectors in ``v`` (missing ones replaced as the coder does: see syntax.MVField)."""
    f = v.reshape(rows, cols, 2)
    left = np.concatenate([f[:, :1], f[:, :-1]], axis=1)
    up = np.concatenate([f[:1], f[:-1]], axis=0)
    upr = np.concatenate([up[:, 1:], up[:, -1:]], axis=1)
    med = np.median(np.stack([left, up, upr]), axis=0).astype(np.int32)
    return med.reshape(-1, 2)


# --------------------------------------------------------------------------- the search
class _Level:
    """One pyramid level of a (current, reference) pair: the current blocks and the edge-extended
    downsampled reference, with per-macroblock whole-pel vector limits at this level."""

    def __init__(self, cur: np.ndarray, ref: Reference, f: int, rng: int) -> None:
        self.f, self.bs = f, MB // f
        self.pad = max(LIMIT // f, -(-rng // f)) + 1
        self.ref = ref.level(f, self.pad)
        cur_l = downsample(cur, f)
        h, w = cur_l.shape
        self.cur = _mb_blocks(cur_l, self.bs).astype(np.int16)
        n = len(self.cur)
        ys, xs = _origins(n, w // self.bs, self.bs)
        self.stride = self.ref.shape[1]
        self.ys, self.xs = ys + self.pad, xs + self.pad
        self.windows = sliding_window_view(self.ref, (self.bs, self.bs))
        r = rng // f
        reach = LIMIT // f
        self.lo = np.stack([np.maximum(-r, -reach - ys), np.maximum(-r, -reach - xs)], 1)
        self.hi = np.stack([np.minimum(r, h - self.bs + reach - ys),
                            np.minimum(r, w - self.bs + reach - xs)], 1)

    def clip(self, v: np.ndarray) -> np.ndarray:
        return np.clip(v, self.lo, self.hi)

    def sad(self, v: np.ndarray) -> np.ndarray:
        blocks = self.windows[self.ys + v[:, 0], self.xs + v[:, 1]].reshape(len(v), -1)
        return np.abs(self.cur - blocks).sum(axis=1, dtype=np.int32)

    def exhaustive(self) -> np.ndarray:
        """Best vector per block over the whole (clipped) range: shifted whole-plane SADs."""
        n = len(self.cur)
        rows = self.ref.shape[0] - 2 * self.pad
        cols = self.stride - 2 * self.pad
        cur = _unblock(self.cur, rows, cols, self.bs)
        lo, hi = self.lo.min(axis=0), self.hi.max(axis=0)
        best = np.full(n, np.iinfo(np.int64).max)
        out = np.zeros((n, 2), np.int32)
        for dy in range(int(lo[0]), int(hi[0]) + 1):
            for dx in range(int(lo[1]), int(hi[1]) + 1):
                win = self.ref[self.pad + dy : self.pad + dy + rows,
                               self.pad + dx : self.pad + dx + cols]
                sad = np.abs(cur - win).reshape(rows // self.bs, self.bs, cols // self.bs,
                                                self.bs).sum(axis=(1, 3), dtype=np.int64)
                key = sad.ravel() * _TIE + abs(dy) + abs(dx)
                ok = ((dy >= self.lo[:, 0]) & (dy <= self.hi[:, 0]) & (dx >= self.lo[:, 1])
                      & (dx <= self.hi[:, 1]))
                better = ok & (key < best)
                best[better] = key[better]
                out[better] = (dy, dx)
        return out


def _unblock(blocks: np.ndarray, h: int, w: int, bs: int) -> np.ndarray:
    return blocks.reshape(h // bs, w // bs, bs, bs).transpose(0, 2, 1, 3).reshape(h, w)


_SMALL = np.array([(-1, 0), (0, -1), (0, 1), (1, 0)], np.int32)
_SQUARE = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], np.int32)


def _pick(v: np.ndarray, best: np.ndarray, cands: list[np.ndarray],
          cost: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per block the cheapest of its vector ``v`` (cost ``best``) and the candidates (ties: the
    earlier, ``v`` first)."""
    for c in cands:
        j = cost(c)
        better = j < best
        v = np.where(better[:, None], c, v)
        best = np.where(better, j, best)
    return v, best


def _refine(clip: Any, v: np.ndarray, cost: Any, steps: np.ndarray,
            best: np.ndarray | None = None, rounds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Square/diamond search: per block the cheapest of ``v`` and ``v + step`` for all steps
    around the same centre, repeated ``rounds`` times (or until no block moves)."""
    if best is None:
        best = cost(v)
    for _ in range(rounds):
        moved, best = _pick(v, best, [clip(v + s) for s in steps], cost)
        if np.array_equal(moved, v):
            break
        v = moved
    return v, best


def search(cur: np.ndarray, ref: Reference, rng: int, lam: float, method: str = "hierarchical",
           xp: Any = np) -> tuple[np.ndarray, np.ndarray]:
    """Half-pel vectors of every macroblock of luma ``cur`` against ``ref``:
    ``(mvs (n_mb, 2) half-pel, cost (n_mb,))`` with cost = SAD + ``lam`` * vector bits."""
    h, w = cur.shape
    rows, cols = h // MB, w // MB
    full = _Level(cur, ref, 1, rng)
    if method == "full":
        pad = ((LIMIT, LIMIT), (LIMIT, LIMIT))
        big_cur = np.pad(cur, pad, mode="edge")
        vol_mv, _ = full_search(xp.asarray(big_cur) if xp is not np else big_cur,
                                xp.asarray(ref.y) if xp is not np else ref.y, rng, xp)
        inner = vol_mv.reshape(rows + 2 * LIMIT // MB, cols + 2 * LIMIT // MB, 2)
        v = full.clip(inner[LIMIT // MB : -(LIMIT // MB), LIMIT // MB : -(LIMIT // MB)]
                      .reshape(-1, 2).astype(np.int32))
    elif method == "hierarchical":
        top = 4 if rows * cols > 1 and min(h, w) >= 64 else 1
        levels = [f for f in (4, 2) if f <= top]
        v = np.zeros((rows * cols, 2), np.int32)
        for i, f in enumerate(levels):
            lv = _Level(cur, ref, f, rng)
            if i == 0:
                v = lv.exhaustive()
            else:
                v, _ = _refine(lv.clip, lv.clip(2 * v), lv.sad, _SQUARE)
            v = v * f if f == levels[-1] else v
        v = full.clip(v)
    else:
        raise ValueError(f"search: must be 'hierarchical' or 'full', got {method!r}")

    pred = median_field(2 * v, rows, cols)  # the coder's predictor, from the field so far

    def cost_whole(c: np.ndarray) -> np.ndarray:
        return full.sad(c) + lam * mv_bits(2 * c - pred)

    # whole-pel refinement, then the neighbours' vectors and zero as candidates
    v, best = _refine(full.clip, v, cost_whole, _SQUARE, rounds=3)
    pred = median_field(2 * v, rows, cols)
    best = cost_whole(v)
    field = v.reshape(rows, cols, 2)
    neighbours = [np.concatenate([field[:, :1], field[:, :-1]], 1),
                  np.concatenate([field[:, 1:], field[:, -1:]], 1),
                  np.concatenate([field[:1], field[:-1]], 0),
                  np.concatenate([field[1:], field[-1:]], 0)]
    v, best = _pick(v, best, [full.clip(c) for c in [np.zeros_like(v)]
                              + [n.reshape(-1, 2) for n in neighbours]], cost_whole)
    v, best = _refine(full.clip, v, cost_whole, _SMALL, best, rounds=3)

    # half-pel refinement around the whole-pel vector
    half = 2 * v
    pred = median_field(half, rows, cols)
    cur_blocks = full.cur

    def cost_half(c: np.ndarray) -> np.ndarray:
        sad = np.abs(cur_blocks - _luma_blocks(ref, c)).sum(axis=1, dtype=np.int32)
        return sad + lam * mv_bits(c - pred)

    lo, hi = 2 * full.lo, 2 * full.hi + 1
    half, best = _refine(lambda c: np.clip(c, lo, hi), half, cost_half, _SQUARE)
    return half.astype(np.int32), best
