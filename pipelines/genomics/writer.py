"""Sinks' shared counts, and the HDF5 sink for mapped reads (the non-SAM option)."""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.io import HDF5Sink

__all__ = ["MappedWriter", "MappingResult", "MappingCounts", "format_mapping", "MAPPER_COLUMNS"]

MAPPER_COLUMNS = ("flag", "tid", "pos", "coord", "mapq", "cigar")


class MappingResult(dict):
    """``{"files", "rows", "mapped", "ambiguous", "unmapped", "mapping_rate"}`` (JSON-friendly);
    ``str()`` is :func:`format_mapping`."""

    def __str__(self) -> str:
        return format_mapping(self)


def format_mapping(r: dict[str, Any]) -> str:
    """One line per count, the files last."""
    rows = r["rows"]

    def pct(x: int) -> str:
        return f"{x / rows:.2%}" if rows else "-"

    return "\n".join([
        f"reads written: {rows:,}",
        f"mapped:        {r['mapped']:,} ({pct(r['mapped'])})",
        f"  ambiguous:   {r['ambiguous']:,} ({pct(r['ambiguous'])}; MAPQ 0: equally good "
        "loci, placed at the lowest)",
        f"unmapped:      {r['unmapped']:,} ({pct(r['unmapped'])})",
        f"files:         {', '.join(r['files'])}",
    ])


class MappingCounts:
    """Counts mapped, ambiguous (MAPQ 0) and unmapped reads of the mapper's chunks."""

    def __init__(self, stage: str) -> None:
        self.stage, self.rows, self.mapped, self.ambiguous = stage, 0, 0, 0

    def add(self, item: Any) -> None:
        if not isinstance(item, dict) or any(c not in item for c in MAPPER_COLUMNS):
            have = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise ValueError(f"stage {self.stage!r}: expected the mapper's columns "
                             f"{list(MAPPER_COLUMNS)}, got {have}")
        mapped = (np.asarray(item["flag"]) & 4) == 0
        self.rows += len(mapped)
        self.mapped += int(np.count_nonzero(mapped))
        self.ambiguous += int(np.count_nonzero(mapped & (np.asarray(item["mapq"]) == 0)))

    def result(self, files: list[str]) -> MappingResult:
        return MappingResult(files=files, rows=self.rows, mapped=self.mapped,
                             ambiguous=self.ambiguous, unmapped=self.rows - self.mapped,
                             mapping_rate=self.mapped / self.rows if self.rows else 0.0)


class MappedWriter(HDF5Sink):
    """HDF5Sink for the mapper's output chunks (same params, plus ``widths``).

    HDF5 datasets have one row shape, while 2-D columns (``reads``, ``qual``, ``cigar``) are as
    wide as each chunk needs: they are zero-padded to ``widths[name]`` (default: the first
    chunk's width; ``cigar`` 16), and a chunk wider than that is an error naming the column.
    Name columns (bytes) are stored ``S{widths.get(name, 64)}`` wide, refusing longer names.
    The result adds mapped, ambiguous (MAPQ 0) and unmapped counts.
    """

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        self.counts = MappingCounts(ctx.stage)
        self.widths = {"cigar": 16, **ctx.params.get("widths", {})}

    def _fit(self, name: str, arr: np.ndarray) -> np.ndarray:
        where = f"stages.{self.ctx.stage}.params.widths.{name}"
        if arr.dtype.kind == "S":
            w = int(self.widths.get(name, 64))
            if arr.dtype.itemsize > w and len(arr) and int(np.char.str_len(arr).max()) > w:
                raise ValueError(f"{where}: a value is {int(np.char.str_len(arr).max())} bytes, "
                                 f"more than {w}")
            return arr.astype(f"S{w}")
        if arr.ndim != 2:
            return arr
        w = int(self.widths.setdefault(name, arr.shape[1]))
        if arr.shape[1] > w:
            if not np.any(arr[:, w:]):  # only padding beyond the width
                return arr[:, :w]
            raise ValueError(f"{where}: a chunk needs {arr.shape[1]} columns, more than {w}")
        return np.pad(arr, ((0, 0), (0, w - arr.shape[1]))) if arr.shape[1] < w else arr

    def consume(self, item: Any) -> None:
        self.counts.add(item)
        super().consume({k: self._fit(k, np.asarray(v)) for k, v in item.items()})

    def result(self) -> MappingResult:
        return self.counts.result(super().result()["files"])
