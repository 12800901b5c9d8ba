"""Read sources: FASTQ files (the field's format) and the HDF5 shard layout (the option).
Both can first simulate their dataset (``generate = {...}``, the arguments of
:func:`~pipelines.genomics.data.make_dataset`)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streampipe.io import INDEX_NAME, HDF5Source
from streampipe.stage import Context, Source

from .data import FASTQ_NAME, READS_DIR, ensure_dataset
from .fastq import read_fastq

__all__ = ["FastqReads", "ReadShards"]


def _generate(ctx: Context, params: dict[str, Any], directory: Path, fmt: str) -> None:
    spec = params.pop("generate", None)
    if spec is None:
        return
    where = f"stages.{ctx.stage}.params.generate"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: must be a table of make_dataset arguments")
    if spec.get("format", fmt) != fmt:
        raise ValueError(f"{where}.format: this source reads {fmt!r} datasets")
    try:
        ensure_dataset(directory, {**spec, "format": fmt}, ctx.replica)
    except ValueError as exc:
        text = str(exc)
        raise ValueError(f"stages.{ctx.stage}.{text}" if text.startswith("params.")
                         else f"{where}.{text}") from None


class FastqReads(Source):
    """Stream FASTQ records (plain or gzip) in chunks (columns: :mod:`.fastq`).

    Params: ``path`` (a file, a glob, or a list of files, read in order), ``chunk_rows``
    (default 8192), ``generate`` (optional: simulate the dataset into the folder of ``path``,
    whose name must then be ``reads.fastq.gz``).  A gzip stream can only be read from the
    start, so the source runs as one replica; ``seek`` (resume) re-reads and skips chunks.
    Reading and decompressing is accounted as I/O, parsing and validation as work.
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = dict(ctx.params)
        where = f"stages.{ctx.stage}.params"
        unknown = set(p) - {"path", "chunk_rows", "generate"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} "
                             "(known: chunk_rows, generate, path)")
        if "path" not in p:
            raise ValueError(f"{where}.path: required (FASTQ file, glob or list of files)")
        if ctx.replicas != 1:
            raise ValueError(f"stages.{ctx.stage}.replicas: a FASTQ stream is read from its "
                             f"start by one replica, got {ctx.replicas}")
        self.chunk_rows = p.get("chunk_rows", 8192)
        if not isinstance(self.chunk_rows, int) or self.chunk_rows < 1:
            raise ValueError(f"{where}.chunk_rows: must be an integer >= 1, got "
                             f"{self.chunk_rows!r}")
        if "generate" in p:
            path = Path(p["path"])
            if path.name != FASTQ_NAME:
                raise ValueError(f"{where}.path: with generate, the file is {FASTQ_NAME} in the "
                                 f"dataset folder, got {str(path)!r}")
            _generate(ctx, p, path.parent, "fastq")
        self.paths = self._expand(p["path"], f"{where}.path")
        self.skip = 0

    @staticmethod
    def _expand(spec: Any, where: str) -> list[Path]:
        items = spec if isinstance(spec, list) else [spec]
        paths: list[Path] = []
        for s in items:
            if not isinstance(s, str):
                raise ValueError(f"{where}: expected a path or a list of paths, got {s!r}")
            found = sorted(glob.glob(s)) if any(c in s for c in "*?[") else [s]
            if not found:
                raise ValueError(f"{where}: glob {s!r} matches no file")
            for f in found:
                if not Path(f).is_file():
                    raise ValueError(f"{where}: {f!r} does not exist")
                paths.append(Path(f))
        return paths

    def seek(self, seq: int) -> None:
        self.skip = seq

    def generate(self) -> Iterator[dict[str, Any]]:
        yield from read_fastq(self.paths, self.chunk_rows, self.skip, io=self.ctx.io)


class ReadShards(HDF5Source):
    """Stream a simulated HDF5 dataset (``reads``, ``read_len``, ``read_id`` and the truth
    columns ``true_tid``, ``true_pos``, ``true_rev``).

    Params: ``dir`` (the dataset directory), ``chunk_rows`` (default 4096), ``generate``
    (optional: replica 0 simulates the dataset when ``dir`` holds none; other replicas wait).
    """

    def setup(self, ctx: Context) -> None:
        p = dict(ctx.params)
        where = f"stages.{ctx.stage}.params"
        if "dir" not in p:
            raise ValueError(f"{where}.dir: required (the genomics dataset directory)")
        _generate(ctx, p, Path(p["dir"]), "hdf5")
        p.setdefault("chunk_rows", 4096)
        p["path"] = str(Path(p.pop("dir")) / READS_DIR / INDEX_NAME)
        p["datasets"] = ["reads", "read_len", "read_id", "true_tid", "true_pos", "true_rev"]
        ctx.params = p
        super().setup(ctx)
