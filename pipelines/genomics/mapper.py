"""Seed-and-verify read mapping against a k-mer index of the reference.

Seeds are the ``L // k`` non-overlapping k-mers of a read.  A read with at most
``max_mismatches < L // k`` mismatches keeps at least one exact seed (pigeonhole), so every
position within ``max_mismatches`` is among the candidates; the verify step then computes the
exact Hamming distance of each candidate and keeps the best (lowest position among ties).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streampipe.stage import Context, Stage

from .data import load_reference

__all__ = ["KmerIndex", "map_reads", "Mapper"]


def kmer_codes(seq: np.ndarray, k: int) -> np.ndarray:
    """2-bit packed codes of every k-mer along the last axis (``int64``; k <= 31)."""
    win = np.lib.stride_tricks.sliding_window_view(seq, k, axis=-1).astype(np.int64)
    weights = np.int64(4) ** np.arange(k - 1, -1, -1, dtype=np.int64)
    return win @ weights


class KmerIndex:
    """Sorted k-mer codes of the reference with their positions; ``hits`` looks seeds up."""

    def __init__(self, genome: np.ndarray, k: int) -> None:
        if not 1 <= k <= 31:
            raise ValueError(f"k: must be in 1..31, got {k}")
        self.genome, self.k = genome, k
        codes = kmer_codes(genome, k)
        self.order = np.argsort(codes, kind="stable").astype(np.int64)
        self.codes = codes[self.order]

    def hits(self, seeds: np.ndarray, max_hits: int) -> tuple[np.ndarray, np.ndarray]:
        """For a flat seed-code array: (seed index, genome position) of every occurrence.

        Seeds with more than ``max_hits`` occurrences are skipped (low-complexity noise).
        """
        lo = np.searchsorted(self.codes, seeds, side="left")
        hi = np.searchsorted(self.codes, seeds, side="right")
        n = hi - lo
        n[n > max_hits] = 0
        seed_idx = np.repeat(np.arange(len(seeds)), n)
        # Position of each hit: lo of its seed plus its rank inside the seed's run.
        within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return seed_idx, self.order[np.repeat(lo, n) + within]


def map_reads(index: KmerIndex, reads: np.ndarray, max_mismatches: int,
              max_hits: int = 64) -> dict[str, np.ndarray]:
    """Map ``reads`` (n x L codes): best position (-1 unmapped), its mismatches and tie count."""
    n, L = reads.shape
    k = index.k
    n_seeds = L // k
    offsets = np.arange(n_seeds) * k
    seeds = kmer_codes(reads, k)[:, offsets]  # (n, n_seeds)
    seed_idx, gpos = index.hits(seeds.ravel(), max_hits)
    read = seed_idx // n_seeds
    cand = gpos - offsets[seed_idx % n_seeds]
    ok = (cand >= 0) & (cand <= len(index.genome) - L)
    pairs = np.unique(np.stack([read[ok], cand[ok]], axis=1), axis=0)  # sorted by (read, pos)
    read, cand = pairs[:, 0], pairs[:, 1]
    windows = np.lib.stride_tricks.sliding_window_view(index.genome, L)
    dist = np.count_nonzero(windows[cand] != reads[read], axis=1)
    good = dist <= max_mismatches
    read, cand, dist = read[good], cand[good], dist[good]

    best = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(best, read, dist)
    at_best = dist == best[read]
    n_best = np.bincount(read[at_best], minlength=n).astype(np.int32)
    mapped = np.full(n, -1, dtype=np.int64)
    # Pairs are sorted by (read, pos): a read's first pair at its best distance has the lowest
    # tied position, which makes ties deterministic.
    rb, first = np.unique(read[at_best], return_index=True)
    mapped[rb] = cand[at_best][first]
    mism = np.where(n_best > 0, best, -1).astype(np.int16)
    return {"mapped_pos": mapped, "mismatches": mism, "n_best": n_best}


class Mapper(Stage):
    """Map each chunk of reads (a dict with ``reads``) and add mapping columns to it.

    Params: ``reference`` (reference.h5 or the dataset directory), ``k`` (seed length,
    default 12), ``max_mismatches`` (default 3), ``max_hits`` (default 64).
    The index is built in setup; when the reference does not exist yet (the source creates it
    with ``generate``), it is built on the first item, by which time the source has written it.
    """

    def setup(self, ctx: Context) -> None:
        p = ctx.params
        where = f"stages.{ctx.stage}.params"
        if "reference" not in p:
            raise ValueError(f"{where}.reference: required (reference.h5 or dataset directory)")
        self.reference = p["reference"]
        self.k = int(p.get("k", 12))
        self.max_mm = int(p.get("max_mismatches", 3))
        self.max_hits = int(p.get("max_hits", 64))
        if self.max_mm < 0:
            raise ValueError(f"{where}.max_mismatches: must be >= 0, got {self.max_mm}")
        self.where = where
        self.index: KmerIndex | None = None
        if Path(self.reference).exists():
            self._build()

    def _build(self) -> None:
        self.index = KmerIndex(load_reference(self.reference).seq, self.k)

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.index is None:
            self._build()
        reads = np.asarray(item["reads"])
        if reads.ndim != 2 or reads.dtype != np.uint8:
            raise ValueError(f"item reads: need a uint8 (n, L) array, got {reads.dtype}"
                             f"{reads.shape}")
        if self.max_mm >= reads.shape[1] // self.k:
            raise ValueError(f"{self.where}.max_mismatches: {self.max_mm} must be < L // k = "
                             f"{reads.shape[1]} // {self.k}, else a read can lose every seed")
        return {**item, **map_reads(self.index, reads, self.max_mm, self.max_hits)}
