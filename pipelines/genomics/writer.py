"""The mapped-reads sink: :class:`~streampipe.io.HDF5Sink` that also counts what it wrote, so
the job's result reports the mapping rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.io import HDF5Sink

__all__ = ["MappedWriter", "MappingResult", "format_mapping"]


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
        f"  ambiguous:   {r['ambiguous']:,} ({pct(r['ambiguous'])}; tied best positions, "
        "placed at the lowest)",
        f"unmapped:      {r['unmapped']:,} ({pct(r['unmapped'])})",
        f"files:         {', '.join(r['files'])}",
    ])


class MappedWriter(HDF5Sink):
    """HDF5Sink for the mapper's output dicts (same params); the result adds mapped, ambiguous
    and unmapped counts and the mapping rate."""

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        self.mapped = 0
        self.ambiguous = 0

    def consume(self, item: Any) -> None:
        if not isinstance(item, dict) or "mapped_pos" not in item or "n_best" not in item:
            raise ValueError(f"stage {self.ctx.stage!r}: expected the mapper's columns "
                             f"(mapped_pos, n_best), got {type(item).__name__} "
                             f"{sorted(item) if isinstance(item, dict) else ''}")
        super().consume(item)
        self.mapped += int(np.count_nonzero(np.asarray(item["mapped_pos"]) >= 0))
        self.ambiguous += int(np.count_nonzero(np.asarray(item["n_best"]) >= 2))

    def result(self) -> MappingResult:
        r = super().result()
        return MappingResult(
            r, mapped=self.mapped, ambiguous=self.ambiguous, unmapped=self.rows - self.mapped,
            mapping_rate=self.mapped / self.rows if self.rows else 0.0)
