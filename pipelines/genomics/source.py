"""The read-shard source: an :class:`~streampipe.io.HDF5Source` over a genomics dataset that can
create the dataset first."""

from __future__ import annotations

from pathlib import Path

from streampipe.io import INDEX_NAME, HDF5Source
from streampipe.stage import Context

from .data import READS, ensure_dataset, make_dataset

__all__ = ["ReadShards"]

_GENERATE_KEYS = set(make_dataset.__code__.co_varnames[1:make_dataset.__code__.co_argcount])


class ReadShards(HDF5Source):
    """Stream the ``reads``, ``true_pos`` and ``read_id`` columns of a dataset directory.

    Params: ``dir`` (the dataset directory), ``chunk_rows`` (default 4096), and optionally
    ``generate = {genome_len = ..., n_reads = ..., ...}`` (the arguments of
    :func:`~pipelines.genomics.data.make_dataset`): when ``dir`` holds no dataset, replica 0
    creates it in setup and the other replicas wait for it.
    """

    def setup(self, ctx: Context) -> None:
        p = dict(ctx.params)
        where = f"stages.{ctx.stage}.params"
        if "dir" not in p:
            raise ValueError(f"{where}.dir: required (the genomics dataset directory)")
        spec = p.pop("generate", None)
        if spec is not None:
            unknown = set(spec) - _GENERATE_KEYS
            if unknown:
                raise ValueError(f"{where}.generate: unknown keys {sorted(unknown)} "
                                 f"(known: {sorted(_GENERATE_KEYS)})")
            ensure_dataset(p["dir"], spec, ctx.replica)
        p.setdefault("chunk_rows", 4096)
        p["path"] = str(Path(p["dir"]) / READS / INDEX_NAME)
        p["datasets"] = ["reads", "true_pos", "read_id"]
        p.setdefault("dtype", {"reads": "uint8", "true_pos": "int64", "read_id": "int64"})
        ctx.params = p
        super().setup(ctx)
