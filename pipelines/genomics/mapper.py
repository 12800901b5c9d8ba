"""Read mapping on both strands: seed, cluster, align (banded, affine gaps), pick, score.

1. **Seeds.** Each read and its reverse complement give k-mers every ``step`` bases plus one
   ending at the read's last base.  The k-mer index returns every reference coord of each
   seed (seeds with more than ``max_hits`` occurrences are skipped).
2. **Candidates.** A hit puts the read on a diagonal (coord - offset in the read).  Hits of one
   query are sorted by diagonal and split where two neighbours lie more than ``band`` apart;
   an indel of up to ``band`` bases moves later seeds by its length but keeps them in the
   cluster.  The cluster's centre is its median diagonal; each read keeps its
   ``max_candidates`` clusters with the most seed hits (both strands together).
3. **Alignment.** Each candidate's best ungapped placement over the band is computed first;
   where it is clean (no N) and has at most ``Scoring.fast_mismatches`` mismatches it is the
   exact optimum of the banded DP (see :mod:`.align`), so the DP runs on the others only.
4. **Choice.** Candidates of a query whose alignments end within ``band`` of each other are
   one locus (the best kept).  A read's best alignment over both strands wins (ties: lower
   coord, then forward strand); ``score2`` is the best other locus.  ``mapq = min(60,
   6 * (score - score2) / match)`` (60 with no other locus, 0 on a tie); reads scoring below
   ``min_score`` x length x match, or whose alignment leaves its contig, are unmapped.

Every step is array code on ``xp`` (numpy or cupy): the same integers on either device.

Output columns added to the chunk (one row per read): ``flag`` (uint16, SAM: 4 unmapped, 16
reverse strand), ``tid`` (int32 contig, -1), ``pos`` (int64 0-based leftmost, -1), ``coord``
(int64 sort key = the reference coord, -1), ``mapq`` (uint8), ``score`` (int32 AS),
``score2`` (int32 XS, -1 if no other locus), ``nm`` (int32 NM), ``cigar`` (uint32 BAM-coded
``len << 4 | op``, zeros after the last op; ``(n, 0)`` when no read maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streampipe.stage import Context, Stage

from .align import (
    NEG,
    Scoring,
    banded_align,
    traceback,
    ungapped_best,
    windows,
)
from .index import KmerIndex, kmer_codes
from .reference import Reference, load_reference
from .seqcodes import revcomp_rows

__all__ = ["MapParams", "map_reads", "Mapper", "DeviceReference"]

MAPQ_MAX = 60
MAX_READ_LEN = 1000  # the DP holds (read length x band x candidates) direction bytes
MAPQ_PER_MATCH = 6


@dataclass(frozen=True)
class MapParams:
    """Mapper settings (the stage's params of the same names)."""

    k: int = 15
    step: int = 0  # 0: k // 2
    band: int = 8
    max_hits: int = 64
    max_candidates: int = 8
    min_score: float = 0.5
    scoring: Scoring = field(default_factory=Scoring)

    def __post_init__(self) -> None:
        if self.step == 0:
            object.__setattr__(self, "step", max(1, self.k // 2))
        for name in ("step", "band", "max_hits", "max_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.k <= 31:
            raise ValueError(f"k: must be in 1..31, got {self.k}")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score: a fraction of the best possible score in [0, 1], "
                             f"got {self.min_score}")


class DeviceReference:
    """The reference and its k-mer index in one array module (built once per stage)."""

    def __init__(self, ref: Reference, k: int, xp: Any = np) -> None:
        self.ref, self.xp = ref, xp
        self.index = KmerIndex(ref.seq, k).to(xp)
        self.seq = xp.asarray(ref.seq)
        self.starts = xp.asarray(ref.starts)
        self.lengths = xp.asarray(ref.lengths)


def _first_of_groups(xp: Any, new_group: Any) -> tuple[Any, Any]:
    """For a sorted array whose group starts are flagged: (group id, rank inside group)."""
    gid = xp.cumsum(new_group) - 1
    heads = xp.flatnonzero(new_group)
    return gid, xp.arange(len(new_group), dtype=xp.int64) - heads[gid]


def _seeds(xp: Any, queries: Any, qlen: Any, k: int, step: int) -> tuple[Any, Any, Any]:
    """(query, offset, code) of every clean seed."""
    nq, width = queries.shape
    base = np.arange(0, max(width - k + 1, 0), step, dtype=np.int64)
    last = qlen - k  # the seed that ends at the read's last base, unless already a base seed
    dup = (last >= 0) & (last % step == 0) & (last <= (base[-1] if len(base) else -1))
    off = xp.concatenate([xp.broadcast_to(xp.asarray(base)[None, :], (nq, len(base))),
                          xp.where(dup, -1, last)[:, None]], axis=1)
    ok = (off >= 0) & (off + k <= qlen[:, None])
    flat = queries.reshape(-1)
    rows = xp.arange(nq, dtype=xp.int64)[:, None] * width
    start = rows + xp.clip(off, 0, max(width - k, 0))
    code, clean = kmer_codes(xp, flat, start.reshape(-1), k)
    ok = ok.reshape(-1) & clean
    q = xp.broadcast_to(xp.arange(nq, dtype=xp.int64)[:, None], off.shape).reshape(-1)
    return q[ok], off.reshape(-1)[ok], code[ok]


def _clusters(xp: Any, hq: Any, diag: Any, band: int) -> tuple[Any, Any, Any]:
    """(query, centre diagonal, hits) of every cluster of hits."""
    order = xp.lexsort(xp.stack([diag, hq]))
    hq, diag = hq[order], diag[order]
    new = xp.ones(len(hq), dtype=xp.bool_)
    new[1:] = (hq[1:] != hq[:-1]) | (diag[1:] - diag[:-1] > band)
    heads = xp.flatnonzero(new)
    count = xp.diff(xp.concatenate([heads, xp.asarray([len(hq)], dtype=heads.dtype)]))
    return hq[heads], diag[heads + count // 2], count


def _top_per_read(xp: Any, read: Any, count: Any, keep: int) -> Any:
    """Indices of each read's ``keep`` clusters with the most hits (ties: earlier cluster)."""
    idx = xp.arange(len(read), dtype=xp.int64)
    order = xp.lexsort(xp.stack([idx, -count, read]))
    r = read[order]
    new = xp.ones(len(r), dtype=xp.bool_)
    new[1:] = r[1:] != r[:-1]
    _, rank = _first_of_groups(xp, new)
    return xp.sort(order[rank < keep])


def _empty_result(xp: Any, n: int) -> dict[str, Any]:
    return {"flag": xp.full(n, 4, dtype=xp.uint16), "tid": xp.full(n, -1, dtype=xp.int32),
            "pos": xp.full(n, -1, dtype=xp.int64), "coord": xp.full(n, -1, dtype=xp.int64),
            "mapq": xp.zeros(n, dtype=xp.uint8), "score": xp.zeros(n, dtype=xp.int32),
            "score2": xp.full(n, -1, dtype=xp.int32), "nm": xp.zeros(n, dtype=xp.int32),
            "cigar": xp.zeros((n, 0), dtype=xp.uint32)}


def map_reads(dref: DeviceReference, reads: Any, read_len: Any, p: MapParams
              ) -> dict[str, Any]:
    """Map ``reads`` (``(n, W)`` codes, PAD past ``read_len``): the output columns above."""
    xp = dref.xp
    sc = p.scoring
    n, width = reads.shape
    out = _empty_result(xp, n)
    if n == 0 or width < p.k:
        return out
    lens = read_len.astype(xp.int64)
    queries = xp.concatenate([reads, revcomp_rows(xp, reads, lens)])
    qlen = xp.concatenate([lens, lens])

    sq, soff, scode = _seeds(xp, queries, qlen, p.k, p.step)
    seed, coord, _ = dref.index.hits(scode, p.max_hits)
    if len(seed) == 0:
        return out
    cq, centre, count = _clusters(xp, sq[seed], coord - soff[seed], p.band)
    keep = _top_per_read(xp, cq % n, count, p.max_candidates)
    cq, centre = cq[keep], centre[keep]

    # Align: exact ungapped placement where it is provably optimal, the banded DP elsewhere.
    qc = xp.ascontiguousarray(queries[cq].T)  # (W, C)
    ql = qlen[cq]
    win = windows(xp, dref.seq, centre, width, p.band)
    mism, shift, clean = ungapped_best(xp, qc, ql, win, p.band, sc)
    fast = clean & (mism <= sc.fast_mismatches)
    score = xp.where(fast, ql * sc.match - mism.astype(xp.int64) * (sc.match + sc.mismatch),
                     NEG).astype(xp.int64)
    d_end = shift.astype(xp.int64)
    slow = xp.flatnonzero(~fast)
    dirs = slow_q = slow_w = None
    if len(slow):
        slow_q = xp.ascontiguousarray(qc[:, slow])
        slow_w = xp.ascontiguousarray(win[:, slow])
        s_score, s_end, dirs = banded_align(xp, slow_q, ql[slow], slow_w, p.band, sc,
                                            xp.asarray(sc.table()))
        score[slow] = s_score
        d_end[slow] = s_end
    end = centre + ql + d_end  # coord just after the alignment's last reference base

    # One locus per query: alignments ending within `band` of each other are the same.
    idx = xp.arange(len(cq), dtype=xp.int64)
    o = xp.lexsort(xp.stack([idx, end, cq]))
    new = xp.ones(len(o), dtype=xp.bool_)
    new[1:] = (cq[o][1:] != cq[o][:-1]) | (end[o][1:] - end[o][:-1] > p.band)
    gid, _ = _first_of_groups(xp, new)
    o2 = xp.lexsort(xp.stack([o, -score[o], gid]))
    head = xp.ones(len(o2), dtype=xp.bool_)
    head[1:] = gid[o2][1:] != gid[o2][:-1]
    loci = o[o2[head]]

    # Best and second-best locus per read over both strands.
    read = cq[loci] % n
    rev = cq[loci] >= n
    o3 = xp.lexsort(xp.stack([rev, end[loci], -score[loci], read]))
    r3 = read[o3]
    first = xp.ones(len(o3), dtype=xp.bool_)
    first[1:] = r3[1:] != r3[:-1]
    _, rank = _first_of_groups(xp, first)
    best = loci[o3[rank == 0]]
    second = o3[rank == 1]
    best_read = cq[best] % n
    s1 = score[best]
    s2 = xp.full(n, NEG, dtype=xp.int64)
    s2[read[second]] = score[loci[second]]
    s2 = s2[best_read]

    # Traceback of the winners: trivial where the ungapped placement won.
    nb = len(best)
    start_d = d_end[best].copy()
    nm = mism[best].astype(xp.int32)
    cig_fast = (ql[best].astype(xp.uint32) << 4)[:, None]  # one M op of the read's length
    cigar = cig_fast
    slow_pos = xp.full(len(cq), -1, dtype=xp.int64)
    slow_pos[slow] = xp.arange(len(slow), dtype=xp.int64)
    bs = slow_pos[best]
    tb = xp.flatnonzero(bs >= 0)
    if len(tb):
        s_start, s_nm, s_cig = traceback(xp, dirs, slow_q, slow_w, bs[tb], ql[best[tb]],
                                         d_end[best[tb]], p.band)
        start_d[tb] = s_start
        nm[tb] = s_nm
        w = max(cigar.shape[1], s_cig.shape[1])
        cigar = xp.zeros((nb, w), dtype=xp.uint32)
        cigar[:, :1] = cig_fast
        cigar[tb] = 0
        cigar[tb, :s_cig.shape[1]] = s_cig
    start = centre[best] + start_d
    span = end[best] - start

    # Placement in a contig, score threshold, MAPQ.
    t = xp.searchsorted(dref.starts, start, side="right") - 1
    tc = xp.clip(t, 0, len(dref.starts) - 1)
    pos = start - dref.starts[tc]
    inside = (t >= 0) & (pos >= 0) & (pos + span <= dref.lengths[tc])
    ok = inside & (s1 >= xp.ceil(p.min_score * ql[best] * sc.match).astype(xp.int64))
    ok &= ql[best] > 0
    diff = s1 - s2
    mapq = xp.where(s2 <= NEG // 2, MAPQ_MAX,
                    xp.minimum(MAPQ_MAX, (MAPQ_PER_MATCH * diff) // sc.match))
    r = best_read[ok]
    out["flag"][r] = xp.where(cq[best][ok] >= n, 16, 0).astype(xp.uint16)
    out["tid"][r] = tc[ok].astype(xp.int32)
    out["pos"][r] = pos[ok]
    out["coord"][r] = start[ok]
    out["mapq"][r] = mapq[ok].astype(xp.uint8)
    out["score"][r] = s1[ok].astype(xp.int32)
    out["score2"][r] = xp.where(s2[ok] <= NEG // 2, -1, s2[ok]).astype(xp.int32)
    out["nm"][r] = nm[ok]
    width_c = cigar.shape[1] if len(r) else 0
    out["cigar"] = xp.zeros((n, width_c), dtype=xp.uint32)
    if len(r):
        out["cigar"][r] = cigar[ok]
    return out


def map_params(params: dict[str, Any], where: str) -> MapParams:
    """MapParams from a stage's params table; errors name the field."""
    known = {"k", "step", "band", "max_hits", "max_candidates", "min_score", "scoring"}
    try:
        scoring = Scoring(**params.get("scoring", {}))
        kw = {key: params[key] for key in known - {"scoring"} if key in params}
        return MapParams(scoring=scoring, **kw)
    except TypeError as exc:
        raise ValueError(f"{where}.scoring: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


class Mapper(Stage):
    """Map each chunk of reads (a dict with ``reads`` and optionally ``read_len``) and add the
    mapping columns (module docstring).

    Params: ``reference`` (FASTA, reference.h5, or a dataset directory), and the
    :class:`MapParams` fields ``k`` (15), ``step`` (k // 2), ``band`` (8), ``max_hits`` (64),
    ``max_candidates`` (8), ``min_score`` (0.5), ``scoring = {match, mismatch, gap_open,
    gap_extend, n_penalty, gap_bar}``; ``max_read_len`` (1000: longer reads are refused).
    Runs on ``ctx.xp``: with ``device = "gpu"`` the index, the seeds, the DP and the traceback
    are on the GPU.  When the reference does not exist yet (the source generates it), the
    index is built on the first item.
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = ctx.params
        self.where = f"stages.{ctx.stage}.params"
        known = {"reference", "k", "step", "band", "max_hits", "max_candidates", "min_score",
                 "scoring", "max_read_len"}
        unknown = set(p) - known
        if unknown:
            raise ValueError(f"{self.where}: unknown keys {sorted(unknown)} "
                             f"(known: {sorted(known)})")
        if "reference" not in p:
            raise ValueError(f"{self.where}.reference: required (FASTA, reference.h5 or the "
                             "dataset directory)")
        self.reference = p["reference"]
        self.max_read_len = int(p.get("max_read_len", MAX_READ_LEN))
        self.params = map_params({k: v for k, v in p.items() if k != "max_read_len"},
                                 self.where)
        self.dref: DeviceReference | None = None
        if Path(self.reference).exists():
            self._build()

    def _build(self) -> None:
        self.dref = DeviceReference(load_reference(self.reference), self.params.k, self.ctx.xp)

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.dref is None:
            self._build()
        xp = self.ctx.xp
        reads = item["reads"]
        if reads.ndim != 2 or reads.dtype != np.uint8:
            raise ValueError(f"item reads: need a uint8 (n, L) array, got {reads.dtype}"
                             f"{reads.shape}")
        if reads.shape[1] > self.max_read_len:
            raise ValueError(f"{self.where}.max_read_len: a chunk holds reads of up to "
                             f"{reads.shape[1]} bases, more than {self.max_read_len}: this is a "
                             "short-read mapper (end-to-end alignment in a band of "
                             f"{self.params.band}); raise the limit only for reads that fit it")
        lens = item.get("read_len")
        if lens is None:
            lens = xp.full(reads.shape[0], reads.shape[1], dtype=xp.int32)
        return {**item, **map_reads(self.dref, reads, lens, self.params)}
