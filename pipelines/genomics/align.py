"""Banded end-to-end alignment of reads against candidate reference windows, many at once.

Every function takes the array module ``xp`` (numpy, or cupy on a GPU stage) and works on whole
batches of candidates with array operations only, so the same code runs on either device and
gives the same integers.

A candidate is a read (``query``, its codes padded to width ``W``) and a *centre* ``c``: the
reference coord where the read would start with no indel.  The alignment is global in the read
and free at both ends in the reference, with affine gaps (a gap of length ``l`` costs
``gap_open + l * gap_extend``), restricted to the band of diagonals ``c - band .. c + band``.
The DP runs over read rows ``i``; cell ``b`` of row ``i`` (``d = b - band``) means "the first
``i`` read bases aligned, ending at reference coord ``c + i + d``" (Gotoh's H, E = gap in the
read / deletion, F = gap in the reference / insertion).

Ties are broken by fixed rules, so an alignment is a function of its inputs: at the end the
cell nearest the centre diagonal (then the lower ``d``) among the best scores; inside, a match
step before an insertion before a deletion, and opening a gap before extending one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .seqcodes import EDGE, PAD, N

__all__ = ["Scoring", "ungapped_best", "banded_align", "traceback", "shift_order", "NEG"]

NEG = -(1 << 30)  # an impossible state
EDGE_SCORE = -(1 << 16)  # more than any read can win back: no alignment leaves its contig

M_OP, I_OP, D_OP, NO_OP = 0, 1, 2, 255  # BAM CIGAR op codes (M, I, D); NO_OP pads


@dataclass(frozen=True)
class Scoring:
    """Integer scores (BWA-MEM's defaults): match, mismatch penalty, gap open/extend, N."""

    match: int = 1
    mismatch: int = 4
    gap_open: int = 6
    gap_extend: int = 1
    n_penalty: int = 1
    gap_bar: int = 4  # no gap within this many bases of either read end (bowtie2's --gbar)

    def __post_init__(self) -> None:
        for name in ("match", "mismatch", "gap_extend"):
            if getattr(self, name) < 1:
                raise ValueError(f"scoring.{name}: must be >= 1, got {getattr(self, name)}")
        if self.gap_open < 0 or self.n_penalty < 0 or self.gap_bar < 1:
            raise ValueError("scoring.gap_open, scoring.n_penalty: must be >= 0, "
                             "scoring.gap_bar >= 1")

    def table(self) -> np.ndarray:
        """Score of read code ``a`` against reference code ``r`` at ``[a * 7 + r]`` (int32)."""
        t = np.full((7, 7), -self.n_penalty, dtype=np.int32)
        t[:4, :4] = -self.mismatch
        t[np.arange(4), np.arange(4)] = self.match
        t[:, EDGE] = EDGE_SCORE
        t[PAD, :] = 0  # never scored: the result is read at each read's own length
        return t.ravel()

    @property
    def fast_mismatches(self) -> int:
        """Most mismatches for which an ungapped alignment beats every gapped one.

        An ungapped alignment of ``L`` clean bases with ``m`` mismatches scores
        ``L*match - m*(match+mismatch)``; any alignment with a gap scores at most
        ``L*match - (gap_open+gap_extend)``.  So ``m*(match+mismatch) < gap_open+gap_extend``
        makes the best ungapped alignment the optimum of the DP.
        """
        return (self.gap_open + self.gap_extend - 1) // (self.match + self.mismatch)


def shift_order(band: int) -> np.ndarray:
    """Band offsets in tie-break order: 0, -1, +1, -2, +2, ... (the end-cell rule)."""
    out = [0]
    for s in range(1, band + 1):
        out += [-s, s]
    return np.array(out, dtype=np.int64)


def windows(xp: Any, ref: Any, centre: Any, width: int, band: int) -> Any:
    """Reference codes ``ref[c - band : c + width + band]`` of each centre, as a
    ``(width + 2*band, C)`` array; coords outside the reference read as EDGE (clip to its
    EDGE ends)."""
    t = xp.arange(width + 2 * band, dtype=xp.int64)[None, :]
    idx = xp.clip(centre[:, None] - band + t, 0, ref.shape[0] - 1)
    return xp.ascontiguousarray(ref[idx].T)  # gather along rows (cache-friendly), then turn


def ungapped_best(xp: Any, q: Any, qlen: Any, win: Any, band: int, scoring: Scoring
                  ) -> tuple[Any, Any, Any]:
    """Best ungapped alignment over the band: (mismatches, offset d, clean).

    ``q`` is ``(W, C)`` read codes, ``win`` ``(W + 2*band, C)`` its windows.  ``clean`` is
    true where the read has no N and the window no N/EDGE, i.e. where the ungapped score is
    ``L*match - m*(match+mismatch)`` exactly.  Ties go by :func:`shift_order`.
    """
    width = q.shape[0]
    inside = xp.arange(width, dtype=xp.int64)[:, None] < qlen[None, :]
    order = shift_order(band)
    mism = xp.empty((len(order), q.shape[1]), dtype=xp.int32)
    for r, d in enumerate(order.tolist()):
        seg = win[band + d:band + d + width]
        mism[r] = xp.count_nonzero((seg != q) & inside, axis=0)
    best = xp.argmin(mism, axis=0)  # first minimum: the tie-break order
    m = xp.min(mism, axis=0)
    span = xp.arange(width + 2 * band, dtype=xp.int64)[:, None] < (qlen + 2 * band)[None, :]
    clean = ~xp.any((q >= N) & inside, axis=0) & ~xp.any((win >= N) & span, axis=0)
    return m, xp.asarray(order)[best], clean


def banded_align(xp: Any, q: Any, qlen: Any, win: Any, band: int, scoring: Scoring,
                 table: Any) -> tuple[Any, Any, Any]:
    """Run the banded DP: (best score, its end offset d, direction bits ``(W, B, C)``).

    Direction bits per cell: bits 0-1 where H came from (0 match, 1 deletion E, 2 insertion
    F), bit 2 E extends (not opens), bit 3 F extends.
    """
    width, n = q.shape
    nb = 2 * band + 1
    oe = scoring.gap_open + scoring.gap_extend
    ext = scoring.gap_extend
    h = xp.zeros((nb, n), dtype=xp.int32)  # row 0: the read may start anywhere in the band
    f = xp.full((nb, n), NEG, dtype=xp.int32)
    hend = xp.full((nb, n), NEG, dtype=xp.int32)
    dirs = xp.empty((width, nb, n), dtype=xp.uint8)
    e = xp.empty((nb, n), dtype=xp.int32)
    e_ext = xp.zeros((nb, n), dtype=xp.bool_)
    qlen_row = qlen[None, :]
    # Clean batches (no N, no EDGE) score a cell as match/mismatch with two operations; others
    # look the score table up.  Both give the same integers.
    special = bool(xp.any(q == N)) or bool(xp.any(win >= N))  # PAD cells are never read
    if special:
        q7 = q.astype(xp.int32) * 7
        w32 = win.astype(xp.int32)
    gain = scoring.match + scoring.mismatch
    same_len = bool(xp.all(qlen == width))
    gbar = scoring.gap_bar
    late = int(xp.min(qlen)) - gbar  # rows after this may be near some read's end
    ramp = None if xp is np else xp.arange(nb, dtype=xp.int32)[:, None] * ext
    for i in range(1, width + 1):
        if special:
            s = table[q7[i - 1][None, :] + w32[i - 1:i - 1 + nb]]
        else:
            s = (q[i - 1][None, :] == win[i - 1:i - 1 + nb]).astype(xp.int32) * gain \
                - scoring.mismatch
        diag = h + s
        f_open = h[1:] - oe
        f_ext = f[1:] - ext
        f_new = xp.full((nb, n), NEG, dtype=xp.int32)
        f_new[:-1] = xp.maximum(f_open, f_ext)
        f_is_ext = xp.zeros((nb, n), dtype=xp.bool_)
        f_is_ext[:-1] = f_ext > f_open
        # Row i inserts read base i-1 (allowed when gbar < i <= len - gbar) or deletes after
        # read base i-1 (gbar <= i <= len - gbar).
        if i <= gbar:
            f_new[:] = NEG
        elif i > late:
            f_new = xp.where((i > qlen - gbar)[None, :], NEG, f_new)
        h0 = xp.maximum(diag, f_new)
        e[0] = NEG
        if i < gbar:
            e[:] = NEG
            e_ext[:] = False
        else:
            e, e_ext = _deletions(xp, h0, e, e_ext, oe, ext, ramp)
            if i > late:
                e = xp.where((i > qlen - gbar)[None, :], NEG, e)
        h = xp.maximum(h0, e)
        not_m = h != diag
        is_f = not_m & (h == f_new)
        # src 0 match, 2 insertion, 1 deletion; then the two extend bits
        src = is_f.astype(xp.uint8) * 2 + (not_m & ~is_f).astype(xp.uint8)
        dirs[i - 1] = src + e_ext.astype(xp.uint8) * 4 + f_is_ext.astype(xp.uint8) * 8
        f = f_new
        if not same_len:
            hend = xp.where(qlen_row == i, h, hend)
    if same_len:
        hend = h
    order = xp.asarray(shift_order(band) + band)
    ranked = hend[order]  # rows in tie-break order: argmax takes the first best
    pick = xp.argmax(ranked, axis=0)
    score = xp.max(ranked, axis=0)
    return score, order[pick] - band, dirs


def _deletions(xp: Any, h0: Any, e: Any, e_ext: Any, oe: int, ext: int, ramp: Any
               ) -> tuple[Any, Any]:
    """Row-internal gaps: ``E[b] = max(H0[b-1] - oe, E[b-1] - ext)``, ``E[0] = NEG``.

    (H0, the cell before its own E, suffices: a gap opened right after a gap never beats
    extending it, as gap_open >= 0.)  NumPy walks the band, one cheap operation per offset;
    on a GPU that is one launch each, so there the closed form ``E[b] = max_{b'<b}(H0[b'] +
    ext*b') - oe - ext*(b-1)`` runs as a doubling prefix maximum (log2 of the band in
    launches).  Both are exact integer maxima: the same numbers.
    """
    nb = h0.shape[0]
    if ramp is None:
        for b in range(1, nb):
            e_open = h0[b - 1] - oe
            e_cont = e[b - 1] - ext
            e[b] = xp.maximum(e_open, e_cont)
            e_ext[b] = e_cont > e_open
        return e, e_ext
    g = h0 + ramp
    best = xp.full(h0.shape, NEG, dtype=xp.int32)
    best[1:] = g[:-1]  # exclusive prefix: offsets before b
    step = 1
    while step < nb:
        best[step:] = xp.maximum(best[step:], best[:-step].copy())
        step *= 2
    e = xp.maximum(best - oe - (ramp - ext), NEG)
    e[0] = NEG
    e_ext = xp.zeros(h0.shape, dtype=xp.bool_)
    e_ext[1:] = (e[:-1] - ext) > (h0[:-1] - oe)
    return e, e_ext


def traceback(xp: Any, dirs: Any, q: Any, win: Any, cols: Any, qlen: Any, d_end: Any,
              band: int) -> tuple[Any, Any, Any]:
    """Follow the direction bits of columns ``cols`` back from row ``qlen`` at ``d_end``.

    Returns the start offset ``d`` at row 0 (the alignment starts at coord ``c + d``), the
    number of mismatches plus gap bases (SAM's NM), and the CIGAR as BAM-coded ``uint32``
    ``(C, max_ops)`` with zeros past each row's ops.
    """
    width, nb, n_all = dirs.shape
    col = cols.astype(xp.int64)
    n = len(col)
    i = qlen.astype(xp.int64)
    b = d_end.astype(xp.int64) + band
    state = xp.zeros(n, dtype=xp.int64)  # 0 H, 1 E, 2 F
    nm = xp.zeros(n, dtype=xp.int32)
    steps: list[Any] = []
    flat_dirs = dirs.reshape(-1)
    flat_q = q.reshape(-1)
    flat_w = win.reshape(-1)
    limit = 2 * width + 2 * band + 2
    for _ in range(limit):
        active = (i > 0) | (state != 0)
        if not bool(xp.any(active)):
            break
        cell = flat_dirs[((xp.maximum(i, 1) - 1) * nb + b) * n_all + col]
        src = (cell & 3).astype(xp.int64)
        # state H: a match consumes both, or hands over to E/F without a step of its own.
        in_h = active & (state == 0)
        take_m = in_h & (src == 0)
        state = xp.where(in_h & (src != 0), src, state)
        in_e = active & (state == 1)
        in_f = active & (state == 2)
        op = xp.where(take_m, M_OP, xp.where(in_e, D_OP, xp.where(in_f, I_OP, NO_OP)))
        qi = xp.maximum(i - 1, 0)
        rb = flat_q[qi * n_all + col]
        wb = flat_w[(qi + b) * n_all + col]
        nm += (take_m & (rb != wb)).astype(xp.int32) + (in_e | in_f).astype(xp.int32)
        e_keep = ((cell >> 2) & 1).astype(xp.bool_)
        f_keep = ((cell >> 3) & 1).astype(xp.bool_)
        steps.append(op.astype(xp.uint8))
        i = i - (take_m | in_f).astype(xp.int64)
        b = b - in_e.astype(xp.int64) + in_f.astype(xp.int64)
        state = xp.where(in_e, xp.where(e_keep, 1, 0), state)
        state = xp.where(in_f, xp.where(f_keep, 2, 0), state)
    else:
        raise RuntimeError("traceback did not reach row 0 (corrupt direction bits)")
    return b - band, nm, _cigar(xp, steps, n)


def _cigar(xp: Any, steps: list[Any], n: int) -> Any:
    """Run-length encode ops emitted end-first (``steps[t]`` is the t-th op from the end)."""
    if not steps:
        return xp.zeros((n, 0), dtype=xp.uint32)
    rev = xp.stack(steps, axis=1)  # (C, T), NO_OP after each row's last op
    t_len = rev.shape[1]
    count = xp.sum(rev != NO_OP, axis=1).astype(xp.int64)
    j = xp.arange(t_len, dtype=xp.int64)[None, :]
    src = xp.where(j < count[:, None], count[:, None] - 1 - j, j)
    fwd = rev[xp.arange(n, dtype=xp.int64)[:, None], src]  # start-first, NO_OP at the end
    valid = fwd != NO_OP
    prev = xp.concatenate([xp.full((n, 1), NO_OP, dtype=xp.uint8), fwd[:, :-1]], axis=1)
    start = valid & (fwd != prev)
    run_id = xp.cumsum(start, axis=1) - 1
    n_runs = xp.sum(start, axis=1)
    width = int(xp.max(n_runs)) if n else 0
    flat = xp.flatnonzero(start.reshape(-1))
    rows, cols = flat // t_len, flat % t_len
    nxt = xp.concatenate([cols[1:], xp.zeros(1, dtype=cols.dtype)])
    same_row = xp.concatenate([rows[1:] == rows[:-1], xp.zeros(1, dtype=xp.bool_)])
    end = xp.where(same_row, nxt, count[rows])
    length = (end - cols).astype(xp.uint32)
    out = xp.zeros((n, max(width, 1)), dtype=xp.uint32)
    out[rows, run_id.reshape(-1)[flat]] = (length << 4) | fwd.reshape(-1)[flat].astype(xp.uint32)
    return out[:, :width] if width else out[:, :0]
