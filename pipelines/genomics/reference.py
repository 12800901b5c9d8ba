"""The reference: contigs from FASTA (plain or gzip) or the HDF5 dataset layout, laid end to end
in one coordinate space for the mapper.

``Reference.seq`` is every contig's base codes with ``MARGIN`` EDGE codes before, between and
after them; contig ``t`` starts at ``starts[t]``.  A *coord* is an index into ``seq``, so
sorting by coord sorts by (contig in file order, position), which is SAM's coordinate order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fastq import open_maybe_gzip
from .seqcodes import BASES, EDGE, ENCODE

__all__ = ["Reference", "ReferenceError", "load_reference", "read_fasta", "write_fasta",
           "MARGIN"]

MARGIN = 16
REFERENCE_H5 = "reference.h5"


class ReferenceError(ValueError):
    """A reference that cannot be used; the message names the file and line or field."""


@dataclass(frozen=True)
class Reference:
    names: tuple[str, ...]
    lengths: np.ndarray  # int64 (contigs,)
    starts: np.ndarray  # int64 (contigs,): coord of each contig's first base
    seq: np.ndarray  # uint8 codes with EDGE margins

    @classmethod
    def from_contigs(cls, names: list[str], contigs: list[np.ndarray]) -> Reference:
        lengths = np.array([len(c) for c in contigs], dtype=np.int64)
        starts = MARGIN + np.concatenate([[0], np.cumsum(lengths + MARGIN)[:-1]]).astype(np.int64)
        seq = np.full(int(lengths.sum()) + MARGIN * (len(contigs) + 1), EDGE, dtype=np.uint8)
        for s, c in zip(starts, contigs, strict=True):
            seq[s:s + len(c)] = c
        return cls(tuple(names), lengths, starts, seq)

    def contig(self, t: int) -> np.ndarray:
        """The codes of contig ``t``."""
        return self.seq[self.starts[t]:self.starts[t] + self.lengths[t]]

    def locate(self, coord: np.ndarray, span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contig index, 0-based position) of alignments starting at ``coord`` and covering
        ``span`` reference bases; (-1, -1) where one does not lie inside a single contig."""
        coord = np.asarray(coord, dtype=np.int64)
        t = np.searchsorted(self.starts, coord, side="right") - 1
        tc = np.clip(t, 0, len(self.starts) - 1)
        pos = coord - self.starts[tc]
        ok = (t >= 0) & (pos >= 0) & (pos + np.asarray(span) <= self.lengths[tc])
        return np.where(ok, tc, -1).astype(np.int32), np.where(ok, pos, -1)


def read_fasta(path: str | os.PathLike[str]) -> Reference:
    """Contigs of a FASTA file (plain or gzip); the name is the header's first word.

    Lower case (soft-masked) letters are read as bases, IUPAC ambiguity letters as N.
    """
    p = Path(path)
    try:
        with open_maybe_gzip(p) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ReferenceError(f"{p}: cannot read: {exc}") from None
    lines = data.replace(b"\r", b"").split(b"\n")
    names: list[str] = []
    contigs: list[np.ndarray] = []
    parts: list[bytes] = []
    head_line = 0

    def close() -> None:
        if names:
            seq = b"".join(parts)
            if not seq:
                raise ReferenceError(f"{p}: line {head_line}: contig {names[-1]!r} has no "
                                     "sequence")
            codes = ENCODE[np.frombuffer(seq, dtype=np.uint8)]
            bad = np.flatnonzero(codes == 255)
            if len(bad):
                raise ReferenceError(f"{p}: contig {names[-1]!r} (header line {head_line}): "
                                     f"{chr(seq[bad[0]])!r} is not a sequence letter")
            contigs.append(codes)

    for i, line in enumerate(lines, 1):
        if line.startswith(b">"):
            close()
            word = line[1:].split(None, 1)
            if not word:
                raise ReferenceError(f"{p}: line {i}: header has no contig name")
            name = word[0].decode("ascii", "replace")
            if name in names:
                raise ReferenceError(f"{p}: line {i}: contig name {name!r} appears twice")
            names.append(name)
            parts, head_line = [], i
        elif line.strip():
            if not names:
                raise ReferenceError(f"{p}: line {i}: sequence before the first '>' header "
                                     "(not FASTA?)")
            parts.append(line.strip())
    close()
    if not names:
        raise ReferenceError(f"{p}: no '>' header: not a FASTA file")
    return Reference.from_contigs(names, contigs)


def _read_h5(p: Path) -> Reference:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "contigs" in f:
                g = f["contigs"]
                names = [n.decode() for n in f["contig_names"][...]]
                return Reference.from_contigs(names, [g[n][...] for n in names])
            return Reference.from_contigs([str(f.attrs.get("name", "chr1"))],
                                          [f["genome"][...]])
    except (OSError, KeyError) as exc:
        raise ReferenceError(f"{p}: not a genomics reference (needs dataset genome or "
                             f"contigs): {exc}") from exc


FASTA_SUFFIXES = (".fa", ".fasta", ".fna")


def _is_fasta_name(name: str) -> bool:
    return name.removesuffix(".gz").endswith(FASTA_SUFFIXES)


def load_reference(path: str | os.PathLike[str]) -> Reference:
    """A FASTA file (``.fa``, ``.fasta``, ``.fna``, optionally ``.gz``), a ``reference.h5``, or a
    dataset directory holding one of them."""
    p = Path(path)
    if p.is_dir():
        found = [f for f in [p / REFERENCE_H5] + sorted(p.iterdir())
                 if f.is_file() and (f.name == REFERENCE_H5 or _is_fasta_name(f.name))]
        if not found:
            raise ReferenceError(f"{p}: directory holds no reference.h5 or FASTA file")
        p = found[0]
    if not p.exists():
        raise ReferenceError(f"{p}: does not exist")
    if p.suffix == ".h5":
        return _read_h5(p)
    return read_fasta(p)


def write_fasta(path: str | os.PathLike[str], names: list[str], contigs: list[np.ndarray],
                width: int = 60) -> None:
    """Write codes 0..4 as FASTA, ``width`` letters a line."""
    with open(path, "wb") as f:
        for name, c in zip(names, contigs, strict=True):
            text = BASES[c].tobytes()
            f.write(b">" + name.encode() + b"\n")
            f.write(b"\n".join(text[i:i + width] for i in range(0, len(text), width)) + b"\n")
