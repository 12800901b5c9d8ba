"""BAM records built for a whole chunk at once with NumPy (SAM/BAM spec v1.6, section 4.2).

Building one ``pysam.AlignedSegment`` per read costs tens of microseconds of Python; here every
field of every record of a chunk is laid into one byte buffer with array operations, which
leaves the BGZF deflate (pysam's BGZFile) as the cost of writing a BAM.  The SAM text path and
the tests build the same records through pysam, so both encoders are checked against each other.
"""

from __future__ import annotations

import numpy as np

from .seqcodes import PAD

__all__ = ["bam_header_bytes", "encode_records", "reg2bin"]

# 4-bit codes of "=ACMGRSVTWYHKDBN" for A, C, G, T, N (and 0 for padding past a read)
_NIBBLE = np.array([1, 2, 4, 8, 15, 0, 15], dtype=np.uint8)
_FIXED = np.dtype([("block_size", "<i4"), ("ref_id", "<i4"), ("pos", "<i4"),
                   ("l_read_name", "u1"), ("mapq", "u1"), ("bin", "<u2"), ("n_cigar", "<u2"),
                   ("flag", "<u2"), ("l_seq", "<i4"), ("next_ref_id", "<i4"),
                   ("next_pos", "<i4"), ("tlen", "<i4")])
_REF_OPS = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1] + [0] * 7, dtype=np.int64)  # M I D N S H P = X


def bam_header_bytes(text: str, names: list[str], lengths: list[int]) -> bytes:
    """The BAM magic, the SAM header text and the reference dictionary."""
    t = text.encode()
    out = [b"BAM\x01", np.int32(len(t)).tobytes(), t, np.int32(len(names)).tobytes()]
    for name, length in zip(names, lengths, strict=True):
        n = name.encode() + b"\x00"
        out += [np.int32(len(n)).tobytes(), n, np.int32(length).tobytes()]
    return b"".join(out)


def reg2bin(beg: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The UCSC binning index bin of [beg, end) (spec 5.3); 4680 for an unplaced read."""
    end = end - 1
    out = np.zeros(len(beg), dtype=np.int64)
    done = np.zeros(len(beg), dtype=bool)
    for shift, first in ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1)):
        same = ~done & ((beg >> shift) == (end >> shift))
        out[same] = first + (beg[same] >> shift)
        done |= same
    return out


def _ragged(block: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Row i's first ``lens[i]`` values of a 2-D array, rows concatenated."""
    return block[np.arange(block.shape[1])[None, :] < lens[:, None]]


def _scatter(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, data: np.ndarray) -> None:
    """Copy the concatenated ragged ``data`` into ``buf`` at ``starts[i]``, ``lens[i]`` each."""
    total = int(lens.sum())
    if total == 0:
        return
    first = np.cumsum(lens) - lens
    idx = np.repeat(starts - first, lens) + np.arange(total)
    buf[idx] = data


def encode_records(names: np.ndarray, flag: np.ndarray, tid: np.ndarray, pos: np.ndarray,
                   mapq: np.ndarray, cigar: np.ndarray, seq: np.ndarray, lens: np.ndarray,
                   qual: np.ndarray | None, tags: list[tuple[bytes, np.ndarray, np.ndarray]]
                   ) -> bytes:
    """Consecutive BAM records of a chunk.

    ``names`` bytes (n,); ``seq`` codes oriented as stored (reverse-strand reads already
    reverse-complemented) and ``qual`` Phred the same way, padded past ``lens``; ``cigar``
    BAM-coded uint32 with zeros past the ops; ``tags`` ``(b"NM", values int, present bool)``
    written as type ``i``.  Unmapped rows (flag 4) get no CIGAR, position -1 and bin 4680.
    """
    n = len(flag)
    if n == 0:
        return b""
    lens = lens.astype(np.int64)
    mapped = (flag & 4) == 0
    name_len = np.char.str_len(names).astype(np.int64) + 1  # with its NUL
    if np.any(name_len > 255):
        raise ValueError("read names longer than 254 bytes do not fit BAM's l_read_name")
    cig = np.where(mapped[:, None], cigar, 0).astype("<u4")
    n_cig = np.count_nonzero(cig, axis=1).astype(np.int64)
    seq_bytes = (lens + 1) // 2
    tag_len = sum(np.where(present, 7, 0) for _, _, present in tags) if tags else np.zeros(n, int)
    size = 32 + name_len + 4 * n_cig + seq_bytes + lens + tag_len  # after block_size
    start = np.cumsum(size + 4) - (size + 4)
    buf = np.zeros(int((size + 4).sum()), dtype=np.uint8)

    span = (np.where(cig > 0, cig >> 4, 0).astype(np.int64) * _REF_OPS[cig & 15]).sum(axis=1)
    fixed = np.zeros(n, dtype=_FIXED)
    fixed["block_size"] = size
    fixed["ref_id"] = np.where(mapped, tid, -1)
    fixed["pos"] = np.where(mapped, pos, -1)
    fixed["l_read_name"] = name_len
    fixed["mapq"] = np.where(mapped, mapq, 0)
    fixed["bin"] = np.where(mapped, reg2bin(pos, pos + np.maximum(span, 1)), 4680)
    fixed["n_cigar"] = n_cig
    fixed["flag"] = flag
    fixed["l_seq"] = lens
    fixed["next_ref_id"] = -1
    fixed["next_pos"] = -1
    _scatter(buf, start, np.full(n, 36), fixed.view(np.uint8))
    at = start + 36

    width = names.dtype.itemsize
    raw = np.zeros((n, width + 1), dtype=np.uint8)
    raw[:, :width] = names.view(np.uint8).reshape(n, width)
    _scatter(buf, at, name_len, _ragged(raw, name_len))
    at = at + name_len

    _scatter(buf, at, 4 * n_cig, _ragged(cig.view(np.uint8).reshape(n, -1), 4 * n_cig))
    at = at + 4 * n_cig

    nib = _NIBBLE[np.where(np.arange(seq.shape[1])[None, :] < lens[:, None], seq, PAD)]
    if nib.shape[1] % 2:
        nib = np.pad(nib, ((0, 0), (0, 1)))
    packed = (nib[:, 0::2] << 4) | nib[:, 1::2]
    _scatter(buf, at, seq_bytes, _ragged(packed, seq_bytes))
    at = at + seq_bytes

    q = np.full(seq.shape, 0xFF, dtype=np.uint8) if qual is None else qual.astype(np.uint8)
    _scatter(buf, at, lens, _ragged(q, lens))
    at = at + lens

    for tag, values, present in tags:
        blob = np.zeros((n, 7), dtype=np.uint8)
        blob[:, 0:2] = np.frombuffer(tag, dtype=np.uint8)
        blob[:, 2] = ord("i")
        blob[:, 3:] = values.astype("<i4").view(np.uint8).reshape(n, 4)
        k = np.where(present, 7, 0)
        _scatter(buf, at, k, _ragged(blob, k))
        at = at + k
    return buf.tobytes()
