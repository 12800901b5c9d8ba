"""Sort a stream of column chunks by a key column, spilling to disk when memory is bounded.

Items are dicts of equal-length columns; a 2-D column may be narrower in one item than in
another (reads of a chunk are padded to the chunk's longest): such columns are zero-padded to
the widest when rows meet, so each needs a length column of its own (``read_len``; a CIGAR ends
at its first zero).  Rows are buffered until more than
``max_rows_in_memory`` are held; then the buffer is sorted and *spilled* as a run (one ``.npy``
per column).  ``finish`` merges the runs k ways, block by block, so at most about
``max_rows_in_memory`` rows are in memory while merging too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streampipe.stage import Context, Stage

__all__ = ["CoordinateSorter", "sort_order", "concat_columns"]

_UNMAPPED_LAST = np.iinfo(np.int64).max


def sort_order(key: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Row order by ``key`` with negative keys (unmapped) last, then by ``tie``."""
    k = np.where(key < 0, _UNMAPPED_LAST, key)
    return np.lexsort((tie, k))


def concat_columns(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate row blocks of one column, zero-padding 2-D blocks to the widest."""
    if parts and parts[0].ndim == 2:
        w = max(p.shape[1] for p in parts)
        parts = [p if p.shape[1] == w else np.pad(p, ((0, 0), (0, w - p.shape[1])))
                 for p in parts]
    return np.concatenate(parts)


class _Run:
    """One spilled sorted run, read back block by block through a memory map."""

    def __init__(self, directory: Path, names: list[str], ctx: Context) -> None:
        self.cols = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in names}
        self.rows = len(next(iter(self.cols.values())))
        self.pos = 0
        self.ctx = ctx

    def take(self, n: int) -> dict[str, np.ndarray]:
        stop = min(self.pos + n, self.rows)
        views = {c: a[self.pos:stop] for c, a in self.cols.items()}
        with self.ctx.io(sum(v.nbytes for v in views.values())):
            block = {c: np.array(v) for c, v in views.items()}  # the copy is the read
        self.pos = stop
        return block


class CoordinateSorter(Stage):
    """Sort rows by ``key`` (default ``coord``; negative = unmapped, sorted last), ties by
    ``tie`` (default ``read_id``).  Yields sorted chunks of ``chunk_rows`` rows in ``finish``.

    Params: ``max_rows_in_memory`` (default 1_000_000), ``chunk_rows`` (default 65536),
    ``tmp_dir`` (where runs are spilled; default the system temp directory).
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = ctx.params
        where = f"stages.{ctx.stage}.params"
        self.key = p.get("key", "coord")
        self.tie = p.get("tie", "read_id")
        self.max_rows = int(p.get("max_rows_in_memory", 1_000_000))
        self.chunk_rows = int(p.get("chunk_rows", 65536))
        for name, v in (("max_rows_in_memory", self.max_rows), ("chunk_rows", self.chunk_rows)):
            if v < 1:
                raise ValueError(f"{where}.{name}: must be >= 1, got {v}")
        self.tmp_parent = p.get("tmp_dir")
        self.buffer: list[dict[str, np.ndarray]] = []
        self.buffered = 0
        self.runs: list[Path] = []
        self.tmp: Path | None = None
        self.names: list[str] | None = None

    def process(self, item: dict[str, Any]) -> None:
        cols = {k: np.asarray(v) for k, v in item.items()}
        if self.names is None:
            for need in (self.key, self.tie):
                if need not in cols:
                    raise ValueError(f"stages.{self.ctx.stage}: item has no column {need!r} "
                                     f"(has {sorted(cols)})")
            self.names = sorted(cols)
        elif sorted(cols) != self.names:
            raise ValueError(f"stages.{self.ctx.stage}: item columns {sorted(cols)} differ from "
                             f"the first item's {self.names}")
        self.buffer.append(cols)
        self.buffered += len(cols[self.key])
        if self.buffered > self.max_rows:
            self._spill()
        return None

    def _sorted_buffer(self) -> dict[str, np.ndarray]:
        cols = {n: concat_columns([b[n] for b in self.buffer]) for n in self.names or []}
        self.buffer, self.buffered = [], 0
        if not cols:
            return {}
        order = sort_order(cols[self.key], cols[self.tie])
        return {n: c[order] for n, c in cols.items()}

    def _spill(self) -> None:
        cols = self._sorted_buffer()
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="streampipe-sort-", dir=self.tmp_parent))
        run = self.tmp / f"run-{len(self.runs):05d}"
        run.mkdir()
        nbytes = sum(c.nbytes for c in cols.values())
        with self.ctx.io(nbytes):
            for n, c in cols.items():
                np.save(run / f"{n}.npy", c, allow_pickle=False)
        self.runs.append(run)

    def finish(self) -> Iterator[dict[str, np.ndarray]]:
        try:
            if not self.runs:
                cols = self._sorted_buffer()
                if cols:
                    yield from self._chunks(cols)
                return
            if self.buffered:
                self._spill()
            yield from self._merge()
        finally:
            self.close()

    def _chunks(self, cols: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        n = len(cols[self.key])
        for start in range(0, n, self.chunk_rows):
            yield {c: a[start:start + self.chunk_rows] for c, a in cols.items()}

    def _merge(self) -> Iterator[dict[str, np.ndarray]]:
        """k-way merge: refill each run's block, emit every row not after the smallest block end.

        A row at or before the smallest last key of the non-exhausted blocks cannot be preceded
        by a row still on disk, so it is safe to emit; the memory bound is ~max_rows_in_memory.
        """
        runs = [_Run(r, self.names or [], self.ctx) for r in self.runs]
        block = max(1, self.max_rows // len(runs))
        held: list[dict[str, np.ndarray]] = [r.take(block) for r in runs]
        pending: dict[str, np.ndarray] | None = None
        while any(len(h[self.key]) for h in held):
            bounds = [self._last(h) for h, r in zip(held, runs, strict=True)
                      if r.pos < r.rows and len(h[self.key])]
            out, keep = [], []
            for h in held:
                mask = self._not_after(h, min(bounds)) if bounds else np.ones(
                    len(h[self.key]), bool)
                out.append({c: a[mask] for c, a in h.items()})
                keep.append({c: a[~mask] for c, a in h.items()})
            merged = {c: concat_columns([o[c] for o in out]) for c in self.names or []}
            order = sort_order(merged[self.key], merged[self.tie])
            merged = {c: a[order] for c, a in merged.items()}
            if pending is not None:
                merged = {c: concat_columns([pending[c], merged[c]]) for c in merged}
            full = len(merged[self.key]) // self.chunk_rows * self.chunk_rows
            if full:
                yield from self._chunks({c: a[:full] for c, a in merged.items()})
            pending = {c: a[full:] for c, a in merged.items()}
            held = []
            for k, r in zip(keep, runs, strict=True):
                if len(k[self.key]) == 0 and r.pos < r.rows:
                    k = r.take(block)
                held.append(k)
        if pending is not None and len(pending[self.key]):
            yield pending

    def _sort_key(self, h: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.where(h[self.key] < 0, _UNMAPPED_LAST, h[self.key]), h[self.tie]

    def _last(self, h: dict[str, np.ndarray]) -> tuple[int, int]:
        k, t = self._sort_key(h)
        return int(k[-1]), int(t[-1])

    def _not_after(self, h: dict[str, np.ndarray], bound: tuple[int, int]) -> np.ndarray:
        k, t = self._sort_key(h)
        return (k < bound[0]) | ((k == bound[0]) & (t <= bound[1]))

    def close(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
