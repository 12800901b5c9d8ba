"""A k-mer index of the reference: every k-mer's 2-bit code, sorted, with its coord."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["KmerIndex", "kmer_codes"]


def kmer_codes(xp: Any, seq: Any, starts: Any, k: int) -> tuple[Any, Any]:
    """Codes of the k-mers of ``seq`` (1-D) starting at ``starts``, and whether each is made of
    A/C/G/T only (int64; k <= 31)."""
    code = xp.zeros(starts.shape, dtype=xp.int64)
    ok = xp.ones(starts.shape, dtype=xp.bool_)
    for j in range(k):
        base = seq[starts + j]
        ok &= base < 4
        code = code * 4 + (base & 3).astype(xp.int64)
    return code, ok


class KmerIndex:
    """Sorted codes of the reference's clean k-mers (no N, no EDGE) and their coords.

    Built with NumPy on the host; :meth:`to` copies it to another array module once.
    """

    def __init__(self, seq: np.ndarray, k: int, xp: Any = np) -> None:
        if not 1 <= k <= 31:
            raise ValueError(f"k: must be in 1..31, got {k}")
        self.k, self.xp = k, xp
        if xp is np:
            starts = np.arange(max(len(seq) - k + 1, 0), dtype=np.int64)
            codes, ok = kmer_codes(np, seq, starts, k)
            pos = starts[ok]
            order = np.argsort(codes[ok], kind="stable")  # equal codes keep coord order
            self.codes, self.pos = codes[ok][order], pos[order]

    def to(self, xp: Any) -> KmerIndex:
        """The same index with its arrays in ``xp`` (e.g. cupy)."""
        if xp is self.xp:
            return self
        out = KmerIndex.__new__(KmerIndex)
        out.k, out.xp = self.k, xp
        out.codes, out.pos = xp.asarray(self.codes), xp.asarray(self.pos)
        return out

    def hits(self, codes: Any, max_hits: int) -> tuple[Any, Any, Any]:
        """For seed codes: (seed index, reference coord) of every occurrence, and how many
        occurrences each seed has.  Seeds with more than ``max_hits`` give no hit."""
        xp = self.xp
        # Look the seeds up in sorted order: binary searches over a large table are several
        # times faster for sorted keys (each starts near the previous one).
        order = xp.argsort(codes)
        sorted_codes = codes[order]
        lo = xp.searchsorted(self.codes, sorted_codes, side="left")
        hi = xp.searchsorted(self.codes, sorted_codes, side="right")
        count = hi - lo
        use = xp.where(count > max_hits, 0, count)
        ends = xp.cumsum(use)
        total = int(ends[-1]) if len(ends) else 0
        h = xp.arange(total, dtype=xp.int64)
        s = xp.searchsorted(ends, h, side="right")
        within = h - (ends - use)[s]
        count_by_seed = xp.empty_like(count)
        count_by_seed[order] = count
        return order[s], self.pos[lo[s] + within], count_by_seed
