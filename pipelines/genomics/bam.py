"""SAM/BAM out (pysam's BGZF, index and SAM writer): the mapper's columns become records.

A BAM is BGZF: a series of independently deflated blocks of at most 64 KiB, which is what lets
``samtools index`` (``pysam.index``, run by this sink when it finishes) map each genomic window
to a file offset, and other tools read a region without reading the whole file.  The sink
writes to ``PATH.tmp`` and renames it when the stream ends, so a failed run leaves no BAM that
looks whole.
"""

from __future__ import annotations

import array
import os
from pathlib import Path
from typing import Any

import numpy as np

from streampipe import __version__
from streampipe.stage import Context, Sink

from .bamcodec import bam_header_bytes, encode_records
from .reference import Reference, load_reference
from .seqcodes import revcomp_rows
from .writer import MappingCounts, MappingResult

__all__ = ["AlignmentWriter", "reverse_rows", "sam_header"]

_TEXT = np.frombuffer(b"ACGTNNN", dtype=np.uint8)  # seqcodes.BASES, total over PAD/EDGE too
_UNMAPPED_LAST = np.iinfo(np.int64).max


def _pysam() -> Any:
    import pysam  # the genomics built-in's own dependency; the framework never needs it

    return pysam


def reverse_rows(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Each row's first ``lens[i]`` values reversed (qualities of a reverse-strand read)."""
    n, width = x.shape
    j = np.arange(width)[None, :]
    src = np.where(j < lens[:, None], lens[:, None] - 1 - j, j)
    return x[np.arange(n)[:, None], src]


def sam_header(ref: Reference, sorted_: bool) -> dict[str, Any]:
    """The header dict: @HD with the sort order, one @SQ per contig, @PG."""
    return {"HD": {"VN": "1.6", "SO": "coordinate" if sorted_ else "unsorted"},
            "SQ": [{"SN": n, "LN": int(ln)} for n, ln in zip(ref.names, ref.lengths,
                                                             strict=True)],
            "PG": [{"ID": "streampipe", "PN": "streampipe", "VN": __version__}]}


class _Oriented:
    """A chunk's reads as SAM stores them: reverse-strand reads reverse-complemented (and
    their qualities reversed), names (``read{read_id}`` without a ``name`` column), tags."""

    def __init__(self, c: dict[str, np.ndarray]) -> None:
        reads = c["reads"]
        n, width = reads.shape
        self.lens = c.get("read_len", np.full(n, width, dtype=np.int32)).astype(np.int64)
        self.flag = c["flag"].astype(np.int64)
        rev = (self.flag & 16) != 0
        self.seq = reads.copy()
        self.qual = c["qual"].copy() if "qual" in c else None
        if rev.any():
            self.seq[rev] = revcomp_rows(np, reads[rev], self.lens[rev])
            if self.qual is not None:
                self.qual[rev] = reverse_rows(c["qual"][rev], self.lens[rev])
        self.names = (c["name"] if "name" in c else
                      np.array([b"read%d" % i for i in c["read_id"].tolist()], dtype=bytes))
        mapped = (self.flag & 4) == 0
        self.tags = [(b"NM", c["nm"], mapped), (b"AS", c["score"], mapped),
                     (b"XS", c["score2"], mapped & (c["score2"] >= 0))]


class AlignmentWriter(Sink):
    """Write the mapper's chunks as SAM (``path`` ending ``.sam``) or BAM (``.bam``).

    Params: ``path``; ``reference`` (the mapper's, for the header); ``sorted`` (default true:
    the header says ``SO:coordinate`` and the sink checks that rows arrive in coordinate
    order, unmapped last, i.e. after the sort stage); ``index`` (default true for BAM: write
    ``PATH.bai`` at the end; needs ``sorted``).  Records carry QNAME (``name``, else
    ``read{read_id}``), FLAG, RNAME, POS, MAPQ, CIGAR, SEQ/QUAL (reverse-complemented for
    reverse-strand reads, as SAM stores them) and the tags NM, AS and, when a second locus
    exists, XS.  BAM records are encoded a chunk at a time (:mod:`.bamcodec`) and deflated by
    pysam's BGZFile; SAM text goes through pysam's AlignedSegment.  One sink replica.
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = ctx.params
        where = f"stages.{ctx.stage}.params"
        known = {"path", "reference", "sorted", "index"}
        unknown = set(p) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        for key in ("path", "reference"):
            if key not in p:
                raise ValueError(f"{where}.{key}: required")
        self.path = Path(p["path"])
        if self.path.suffix not in (".bam", ".sam"):
            raise ValueError(f"{where}.path: must end in .bam or .sam, got {str(self.path)!r}")
        self.bam = self.path.suffix == ".bam"
        self.sorted = bool(p.get("sorted", True))
        self.index = bool(p.get("index", self.bam))
        if self.index and not (self.bam and self.sorted):
            raise ValueError(f"{where}.index: an index needs a coordinate-sorted BAM "
                             f"(path ending .bam and sorted = true)")
        if ctx.replicas != 1:
            raise ValueError(f"stages.{ctx.stage}.replicas: one SAM/BAM file is written by one "
                             f"replica, got {ctx.replicas}")
        self.reference = p["reference"]
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.file: Any = None
        self.counts = MappingCounts(ctx.stage)
        self.last_key = -1
        self.written: list[str] = []

    def _open(self) -> None:
        pysam = _pysam()
        ref = load_reference(self.reference)
        self.header = pysam.AlignmentHeader.from_dict(sam_header(ref, self.sorted))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.bam:
            from pysam.libcbgzf import BGZFile

            self.file = BGZFile(str(self.tmp), "wb")
            self.file.write(bam_header_bytes(str(self.header), list(ref.names),
                                             [int(x) for x in ref.lengths]))
        else:
            self.file = pysam.AlignmentFile(str(self.tmp), "w", header=self.header)

    def _check_order(self, coord: np.ndarray) -> None:
        key = np.where(coord < 0, _UNMAPPED_LAST, coord)
        prev = np.concatenate([[self.last_key], key[:-1]])
        bad = np.flatnonzero(key < prev)
        if len(bad):
            raise ValueError(f"stage {self.ctx.stage!r}: rows are not in coordinate order (row "
                             f"{self.counts.rows + int(bad[0])}); put the sort stage first or "
                             f"set stages.{self.ctx.stage}.params.sorted = false")
        if len(key):
            self.last_key = int(key[-1])

    def consume(self, item: dict[str, Any]) -> None:
        cols = {k: np.asarray(v) for k, v in item.items()}
        if self.sorted and "coord" in cols:
            self._check_order(cols["coord"])
        self.counts.add(item)
        if self.file is None:
            self._open()
        o = _Oriented(cols)
        if self.bam:
            data = encode_records(o.names, o.flag, cols["tid"], cols["pos"], cols["mapq"],
                                  cols["cigar"], o.seq, o.lens, o.qual, o.tags)
            with self.ctx.io(len(data)):  # BGZF deflate and write
                self.file.write(data)
        else:
            records = self._segments(o, cols)
            with self.ctx.io(int(o.lens.sum()) * 2):
                for r in records:
                    self.file.write(r)

    def _segments(self, o: _Oriented, c: dict[str, np.ndarray]) -> list[Any]:
        """pysam records, one per read (the SAM text path)."""
        pysam = _pysam()
        width = o.seq.shape[1]
        text = _TEXT[o.seq].tobytes()
        qual = o.qual.tobytes() if o.qual is not None else None
        names = [x.decode() for x in o.names]
        tid, pos, mapq = c["tid"].tolist(), c["pos"].tolist(), c["mapq"].tolist()
        tags = [(t.decode(), v.tolist(), m.tolist()) for t, v, m in o.tags]
        flags, lens = o.flag.tolist(), o.lens.tolist()
        cigar = c["cigar"]
        out = []
        for i in range(len(flags)):
            a = pysam.AlignedSegment(self.header)
            a.query_name = names[i]
            a.flag = flags[i]
            a.query_sequence = text[i * width:i * width + lens[i]].decode()
            if qual is not None:
                a.query_qualities = array.array("B", qual[i * width:i * width + lens[i]])
            if flags[i] & 4:
                a.reference_id = -1
                a.reference_start = -1
            else:
                a.reference_id = tid[i]
                a.reference_start = pos[i]
                a.mapping_quality = mapq[i]
                a.cigartuples = [(v & 15, v >> 4) for v in cigar[i].tolist() if v]
                a.set_tags([(t, v[i], "i") for t, v, m in tags if m[i]])
            out.append(a)
        return out

    def finish(self) -> None:
        if self.file is None:
            self._open()  # an empty stream still gives a valid (empty) file
        with self.ctx.io(0):
            self.file.close()
            self.file = None
            os.replace(self.tmp, self.path)
            self.written = [str(self.path)]
            if self.index:
                _pysam().index(str(self.path))
                self.written.append(str(self.path) + ".bai")

    def close(self) -> None:
        if self.file is not None:  # ended without finish(): drop the partial file
            self.file.close()
            self.file = None
            self.tmp.unlink(missing_ok=True)

    def result(self) -> MappingResult:
        return self.counts.result(self.written)

