"""Base codes shared by the parsers, the mapper and the writers.

A base is one ``uint8``: 0..3 = A, C, G, T, 4 = N (any other IUPAC letter reads as N).  Two
codes never come from a file: ``PAD`` fills a read row past the read's length (rows of a chunk
share one width), ``EDGE`` fills the reference around and between contigs, so an alignment that
would run off a contig scores too low to be kept.
"""

from __future__ import annotations

import numpy as np

__all__ = ["N", "PAD", "EDGE", "BASES", "ENCODE", "VALID_SEQ", "encode", "decode",
           "revcomp_rows", "COMPLEMENT"]

N, PAD, EDGE = 4, 5, 6
BASES = np.frombuffer(b"ACGTN", dtype=np.uint8)  # decode table for codes 0..4

# ASCII -> code; 255 marks a byte that is not a sequence letter.
ENCODE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"ACGT"):
    ENCODE[_c] = ENCODE[_c + 32] = _i
for _c in b"NRYKMSWBDHVnrykmswbdhv.":
    ENCODE[_c] = N
ENCODE[ord("U")] = ENCODE[ord("u")] = 3  # RNA reads: U is T
VALID_SEQ = ENCODE != 255

COMPLEMENT = np.array([3, 2, 1, 0, N, PAD, EDGE], dtype=np.uint8)


def encode(text: bytes) -> np.ndarray:
    """Codes of an ASCII sequence (no validation: bytes outside the alphabet give 255)."""
    return ENCODE[np.frombuffer(text, dtype=np.uint8)]


def decode(codes: np.ndarray) -> str:
    """The ACGTN text of codes 0..4."""
    return BASES[np.asarray(codes)].tobytes().decode("ascii")


def revcomp_rows(xp, reads, lens):
    """Reverse complement of each row's first ``lens[i]`` codes; the padding stays at the end.

    ``xp`` is the array module of ``reads`` (numpy or cupy), so a GPU stage keeps its data on
    the device.
    """
    n, width = reads.shape
    j = xp.arange(width, dtype=xp.int64)[None, :]
    src = xp.where(j < lens[:, None], lens[:, None] - 1 - j, j)
    rows = xp.arange(n, dtype=xp.int64)[:, None]
    return xp.asarray(COMPLEMENT)[reads[rows, src]]
