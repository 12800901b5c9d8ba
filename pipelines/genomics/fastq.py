"""FASTQ in (plain or gzip), chunk by chunk, validated; and a writer for simulated reads.

A chunk is a dict of columns with one row per record::

    read_id   int64 (n,)       record number over all input files, from 0
    name      bytes (n,)       the header's first word, without '@'
    reads     uint8 (n, W)     base codes (seqcodes), PAD past each read's length
    read_len  int32 (n,)
    qual      uint8 (n, W)     Phred scores (FASTQ byte - 33), 0 past the read's length

``W`` is the longest read of the chunk.  Every record is checked (``@`` header with a name,
``+`` separator, sequence letters, as many quality bytes as bases, qualities ``!``..``~``);
a failure raises :class:`FastqError` naming the file, the record number and its line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

import numpy as np

from .seqcodes import BASES, ENCODE, PAD

__all__ = ["FastqError", "read_fastq", "write_fastq", "open_maybe_gzip", "BLOCK_BYTES"]

BLOCK_BYTES = 1 << 20  # decompressed bytes per read call
_GZIP_MAGIC = b"\x1f\x8b"

IoHook = Callable[[int], AbstractContextManager[Any]]


class FastqError(ValueError):
    """A FASTQ file that cannot be read; the message names file, record and line."""


def open_maybe_gzip(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open for reading, decompressing when the file starts with the gzip magic (BGZF too)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(2)
    except OSError as exc:
        raise FastqError(f"{p}: cannot open: {exc.strerror or exc}") from None
    return gzip.open(p, "rb") if magic == _GZIP_MAGIC else open(p, "rb")


def _no_io(_nbytes: int) -> AbstractContextManager[Any]:
    return nullcontext()


def _line_blocks(path: Path, f: IO[bytes], lines_per_chunk: int, io: IoHook
                 ) -> Iterator[list[bytes]]:
    """Lists of ``lines_per_chunk`` lines (the last list shorter), without line ends."""
    tail = b""
    pending: list[bytes] = []
    strip_cr: bool | None = None
    done = 0  # lines yielded so far, for error messages
    while True:
        try:
            with io(BLOCK_BYTES):
                block = f.read(BLOCK_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise FastqError(f"{path}: corrupt or truncated compressed data after line "
                             f"{done + len(pending)} (record {(done + len(pending)) // 4 + 1})"
                             f": {exc}") from None
        if not block:
            break
        parts = (tail + block).split(b"\n")
        tail = parts.pop()
        if strip_cr is None:
            strip_cr = bool(parts) and parts[0].endswith(b"\r")
        if strip_cr:
            parts = [p[:-1] if p.endswith(b"\r") else p for p in parts]
        pending.extend(parts)
        while len(pending) >= lines_per_chunk:
            yield pending[:lines_per_chunk]
            del pending[:lines_per_chunk]
            done += lines_per_chunk
    if tail:
        pending.append(tail[:-1] if strip_cr and tail.endswith(b"\r") else tail)
    while pending and pending[-1] == b"":  # blank lines at the very end are harmless
        pending.pop()
    if pending:
        yield pending


def _parse(path: Path, lines: list[bytes], first_record: int, first_id: int
           ) -> dict[str, np.ndarray]:
    """Validate and convert whole records (``first_record`` is the file's record number)."""

    def where(i: int, line: int = 0) -> str:
        rec = first_record + i
        return f"{path}: record {rec + 1} (line {4 * rec + line + 1})"

    if len(lines) % 4:
        n_full = len(lines) // 4
        raise FastqError(f"{where(n_full)}: file ends inside the record "
                         f"({len(lines) % 4} of its 4 lines present)")
    heads, seqs, plus, quals = lines[0::4], lines[1::4], lines[2::4], lines[3::4]
    n = len(heads)
    for i, h in enumerate(heads):
        if not h.startswith(b"@"):
            raise FastqError(f"{where(i)}: header must start with '@', got {h[:40]!r}")
    for i, p in enumerate(plus):
        if not p.startswith(b"+"):
            raise FastqError(f"{where(i, 2)}: expected the '+' separator line, got {p[:40]!r} "
                             "(multi-line FASTQ records are not supported)")
    names = []
    for i, h in enumerate(heads):
        word = h[1:].split(None, 1)
        if not word:
            raise FastqError(f"{where(i)}: header has no read name")
        names.append(word[0])
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
    qlens = np.fromiter(map(len, quals), dtype=np.int64, count=n)
    bad = np.flatnonzero(lens != qlens)
    if len(bad):
        i = int(bad[0])
        raise FastqError(f"{where(i, 3)}: {qlens[i]} quality bytes for {lens[i]} bases")
    ends = np.cumsum(lens)
    codes = ENCODE[np.frombuffer(b"".join(seqs), dtype=np.uint8)]
    bad = np.flatnonzero(codes == 255)
    if len(bad):
        i = int(np.searchsorted(ends, bad[0], side="right"))
        ch = seqs[i][bad[0] - (ends[i] - lens[i])]
        raise FastqError(f"{where(i, 1)}: {chr(ch)!r} is not a sequence letter")
    qual = np.frombuffer(b"".join(quals), dtype=np.uint8)
    bad = np.flatnonzero((qual < 33) | (qual > 126))
    if len(bad):
        i = int(np.searchsorted(ends, bad[0], side="right"))
        raise FastqError(f"{where(i, 3)}: quality byte {int(qual[bad[0]])} outside '!'..'~'")
    width = int(lens.max()) if n else 0
    inside = np.arange(width)[None, :] < lens[:, None]
    reads = np.full((n, width), PAD, dtype=np.uint8)
    reads[inside] = codes  # row-major boolean assignment keeps the records' order
    q = np.zeros((n, width), dtype=np.uint8)
    q[inside] = qual - 33
    return {"read_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "name": np.array(names, dtype=bytes) if n else np.zeros(0, "S1"),
            "reads": reads, "read_len": lens.astype(np.int32), "qual": q}


def read_fastq(paths: Sequence[str | os.PathLike[str]], chunk_rows: int, skip_chunks: int = 0,
               io: IoHook = _no_io) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of ``chunk_rows`` records over ``paths`` in order (layout: module docstring).

    Chunks never span two files (a file's last chunk may be short). ``skip_chunks`` chunks
    are read, validated and dropped (resume). ``io(nbytes)`` wraps every read of the file,
    decompression included, so a stage can account it as I/O.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: must be >= 1, got {chunk_rows}")
    chunk, first_id = 0, 0
    for path in map(Path, paths):
        record = 0
        with open_maybe_gzip(path) as f:
            for lines in _line_blocks(path, f, 4 * chunk_rows, io):
                cols = _parse(path, lines, record, first_id)
                n = len(cols["read_id"])
                record += n
                first_id += n
                if chunk >= skip_chunks:
                    yield cols
                chunk += 1


def write_fastq(path: str | os.PathLike[str], names: Sequence[str], reads: np.ndarray,
                read_len: np.ndarray, qual: np.ndarray, compresslevel: int = 6) -> None:
    """Write records (codes 0..4, Phred ``qual``); gzip when ``path`` ends in ``.gz``."""
    p = Path(path)
    opener = (lambda: gzip.open(p, "wb", compresslevel=compresslevel)) \
        if p.suffix == ".gz" else (lambda: open(p, "wb"))
    text = BASES[np.minimum(reads, 4)]
    qtext = (np.asarray(qual, dtype=np.uint8) + 33).astype(np.uint8)
    with opener() as f:
        out = []
        for i, name in enumerate(names):
            n = int(read_len[i])
            out.append(b"@%s\n%s\n+\n%s\n" % (name.encode(), text[i, :n].tobytes(),
                                              qtext[i, :n].tobytes()))
            if len(out) == 4096:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
