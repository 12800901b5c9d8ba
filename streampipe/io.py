"""Data stages for array files: HDF5 datasets (single or sharded) and directories of ``.npy`` files.

Sources read their input in *chunks* of ``chunk_rows`` rows and number the chunks globally
across the shards (shard order, then row order).  Chunk ``i`` belongs to replica
``i % replicas``, so replicas of a source split the input without overlap and no byte is read
twice; ``seek(seq)`` restarts the stream at global chunk ``seq``.

Sinks append each item's rows to chunked, gzip-compressed, resizable datasets, either in one file
or in one shard file per sink replica plus an ``index.json`` that lists the shards and their row
counts (an :class:`HDF5Source` accepts that index as its ``path``).

Every read and write runs inside ``ctx.io(nbytes)`` so the runtime can report MB/s.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .stage import Context, Sink, Source

__all__ = [
    "DataError",
    "HDF5Source",
    "HDF5Sink",
    "NpySource",
    "NpySink",
    "read_index",
    "INDEX_NAME",
]

INDEX_NAME = "index.json"
_INDEX_FORMAT = "streampipe-shards/1"
_META_KEYS = {"shard", "chunk", "data"}


class DataError(ValueError):
    """A data file or data-stage parameter that cannot be used; the message names path and field."""


# --------------------------------------------------------------------------- helpers


def _h5py() -> Any:
    import h5py  # lazy: plan/simulate/report must not need it

    return h5py


def _expand_paths(path: str | os.PathLike[str], what: str) -> list[Path]:
    """Files named by ``path``: an index file, a glob of shards, or one file (sorted, non-empty)."""
    text = os.fspath(path)
    if text.endswith(".json"):
        return [shard for shard, _ in read_index(text)]
    if any(c in text for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(text))
        if not found:
            raise DataError(f"{what}: glob {text!r} matches no file")
        return found
    p = Path(text)
    if not p.exists():
        raise DataError(f"{what}: {text!r} does not exist")
    return [p]


def read_index(path: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """Return ``[(shard_path, rows), ...]`` from a shard index written by :class:`HDF5Sink`."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"shard index {str(p)!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"shard index {str(p)!r} is unreadable: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _INDEX_FORMAT:
        raise DataError(f"shard index {str(p)!r}: not a {_INDEX_FORMAT} index")
    shards = sorted(doc.get("shards", []), key=lambda s: s["replica"])
    return [(p.parent / s["file"], int(s["rows"])) for s in shards]


def _norm_names(params: dict[str, Any], where: str) -> tuple[list[str], bool]:
    """Dataset names: ``dataset`` (one; items are arrays) or ``datasets`` (items are dicts)."""
    if "datasets" in params:
        names = params["datasets"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise DataError(f"{where}.datasets: must be a non-empty list of names, got {names!r}")
        return list(names), True
    name = params.get("dataset", "data")
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}.dataset: must be a dataset name, got {name!r}")
    return [name], False


def _per_name(value: Any, name: str) -> Any:
    """``dtype``/``shape`` expectations may be one value or a table keyed by dataset name."""
    return value.get(name) if isinstance(value, dict) else value


def _check_array(
    arr_dtype: np.dtype, row_shape: tuple[int, ...], params: dict[str, Any], name: str, where: str
) -> None:
    """Raise DataError when dtype/row shape differ from the ``dtype``/``shape`` params."""
    want_dtype = _per_name(params.get("dtype"), name)
    if want_dtype is not None and np.dtype(want_dtype) != arr_dtype:
        raise DataError(f"{where}: dtype is {arr_dtype}, expected {np.dtype(want_dtype)}")
    want_shape = _per_name(params.get("shape"), name)
    if want_shape is not None:
        want = tuple(want_shape)
        ok = len(want) == len(row_shape) and all(w in (-1, None) or w == s
                                                 for w, s in zip(want, row_shape, strict=True))
        if not ok:
            raise DataError(f"{where}: row shape is {row_shape}, expected {want} "
                            "(shape = per-row dimensions, -1 for any)")


def _positive_int(params: dict[str, Any], key: str, default: int, where: str) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DataError(f"{where}.{key}: must be an integer >= 1, got {value!r}")
    return value


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Chunk:
    index: int  # global chunk number
    shard: int
    path: Path
    start: int
    stop: int


class _ChunkedSource(Source):
    """Shared chunk plan, replica split and resume of the array-file sources."""

    ctx: Context
    _start = 0

    def _shards(self) -> list[tuple[Path, int]]:
        """``[(path, rows)]`` of every shard, validated."""
        raise NotImplementedError

    def _read(self, chunk: _Chunk) -> Any:
        """The rows ``chunk.start:chunk.stop`` of ``chunk.path`` (array or dict of arrays)."""
        raise NotImplementedError

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.where = f"stages.{ctx.stage}.params"
        self.chunk_rows = _positive_int(ctx.params, "chunk_rows", 65536, self.where)
        self.meta = bool(ctx.params.get("meta", False))
        self.chunks = self._plan(self._shards())

    def _plan(self, shards: list[tuple[Path, int]]) -> list[_Chunk]:
        chunks: list[_Chunk] = []
        for s, (path, rows) in enumerate(shards):
            for start in range(0, rows, self.chunk_rows):
                stop = min(start + self.chunk_rows, rows)
                chunks.append(_Chunk(len(chunks), s, path, start, stop))
        return chunks

    def seek(self, seq: int) -> None:
        """Start the next :meth:`generate` at global chunk ``seq``."""
        if seq < 0:
            raise DataError(f"{type(self).__name__}.seek: seq must be >= 0, got {seq}")
        self._start = seq

    def generate(self) -> Iterator[Any]:
        r, n = self.ctx.replica, self.ctx.replicas
        for chunk in self.chunks[self._start:]:
            if chunk.index % n != r:
                continue
            data = self._read(chunk)
            yield {"shard": chunk.shard, "chunk": chunk.index, "data": data} if self.meta else data


class HDF5Source(_ChunkedSource):
    """Read HDF5 datasets chunk by chunk.

    Params:
        path: an ``.h5`` file, a glob of shard files (sorted by name), or an ``index.json``.
        dataset: one dataset name (items are arrays), or ``datasets``: a list (items are dicts
            name -> array; all datasets of a shard must have the same number of rows).
        chunk_rows: rows per item (default 65536).
        dtype, shape: optional expectations (``shape`` = per-row dims, -1 for any); a table keyed
            by dataset name when there are several datasets.
        meta: when true, items are ``{"shard": s, "chunk": i, "data": ...}``.
    """

    def setup(self, ctx: Context) -> None:
        self.names, self.as_dict = _norm_names(ctx.params, f"stages.{ctx.stage}.params")
        if "path" not in ctx.params:
            raise DataError(f"stages.{ctx.stage}.params.path: required (file, glob or index)")
        super().setup(ctx)

    def _shards(self) -> list[tuple[Path, int]]:
        h5py = _h5py()
        shards = []
        for path in _expand_paths(self.ctx.params["path"], f"{self.where}.path"):
            try:
                with h5py.File(path, "r") as f:
                    rows = {n: self._dataset_rows(f, path, n) for n in self.names}
            except OSError as exc:
                raise DataError(f"{path}: cannot open as HDF5 (missing, truncated or not HDF5): "
                                f"{exc}") from exc
            if len(set(rows.values())) > 1:
                raise DataError(f"{path}: datasets have different row counts {rows}")
            shards.append((path, next(iter(rows.values()))))
        return shards

    def _dataset_rows(self, f: Any, path: Path, name: str) -> int:
        if name not in f:
            if f.attrs.get("streampipe_rows", -1) == 0:
                return 0  # a sink replica that received no item writes an empty shard
            raise DataError(f"{path}: no dataset {name!r} (has {sorted(f.keys())})")
        ds = f[name]
        if not hasattr(ds, "shape") or ds.ndim == 0:
            raise DataError(f"{path}:{name}: not an array dataset with rows")
        _check_array(ds.dtype, ds.shape[1:], self.ctx.params, name, f"{path}:{name}")
        return int(ds.shape[0])

    def generate(self) -> Iterator[Any]:
        # Keep the current shard open across its chunks; open each shard once per pass.
        self._open: tuple[Path, Any] | None = None
        try:
            yield from super().generate()
        finally:
            self._close_open()

    def _close_open(self) -> None:
        if getattr(self, "_open", None) is not None:
            self._open[1].close()
            self._open = None

    def _read(self, chunk: _Chunk) -> Any:
        if self._open is None or self._open[0] != chunk.path:
            self._close_open()
            try:
                self._open = (chunk.path, _h5py().File(chunk.path, "r"))
            except OSError as exc:
                raise DataError(f"{chunk.path}: cannot open as HDF5: {exc}") from exc
        f = self._open[1]
        out = {}
        for name in self.names:
            ds = f[name]
            nbytes = (chunk.stop - chunk.start) * ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
            try:
                with self.ctx.io(nbytes):
                    out[name] = ds[chunk.start:chunk.stop]
            except (OSError, ValueError) as exc:
                raise DataError(f"{chunk.path}:{name}: cannot read rows {chunk.start}:{chunk.stop}"
                                f" (truncated or corrupt file?): {exc}") from exc
        return out if self.as_dict else out[self.names[0]]

    def close(self) -> None:
        self._close_open()


class NpySource(_ChunkedSource):
    """Read a directory of ``.npy`` files (sorted by name), each split into ``chunk_rows`` chunks.

    Params: ``path`` (a directory, or a glob of .npy files), ``chunk_rows`` (default: 65536),
    ``dtype``, ``shape`` (as for :class:`HDF5Source`), ``meta``.
    """

    def setup(self, ctx: Context) -> None:
        if "path" not in ctx.params:
            raise DataError(f"stages.{ctx.stage}.params.path: required (directory or glob)")
        super().setup(ctx)

    def _shards(self) -> list[tuple[Path, int]]:
        path = os.fspath(self.ctx.params["path"])
        if os.path.isdir(path):
            path = os.path.join(path, "*.npy")
        shards = []
        for p in _expand_paths(path, f"{self.where}.path"):
            arr = self._load(p)
            if arr.ndim == 0:
                raise DataError(f"{p}: a 0-d array has no rows")
            _check_array(arr.dtype, arr.shape[1:], self.ctx.params, "data", str(p))
            shards.append((p, int(arr.shape[0])))
        return shards

    @staticmethod
    def _load(p: Path) -> np.ndarray:
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{p}: cannot read as .npy (truncated or not .npy?): {exc}") from exc

    def _read(self, chunk: _Chunk) -> np.ndarray:
        arr = self._load(chunk.path)
        part = arr[chunk.start:chunk.stop]
        with self.ctx.io(part.nbytes):
            return np.array(part)  # copy out of the memory map: that is the read


# --------------------------------------------------------------------------- sinks


def _unwrap(item: Any) -> Any:
    """Accept the ``{"shard","chunk","data"}`` items that sources with ``meta = true`` make."""
    if isinstance(item, dict) and set(item) == _META_KEYS:
        return item["data"]
    return item


class HDF5Sink(Sink):
    """Append a stream of arrays (or dicts name -> array with equal row counts) to HDF5 datasets.

    Params:
        path: with ``sharded = true`` (default) a directory that gets ``shard-RRRRR.h5`` per sink
            replica and ``index.json``; with ``sharded = false`` one ``.h5`` file (replicas = 1).
        dataset: dataset name for array items (default ``"data"``); dict items use their keys.
        chunk_rows: HDF5 chunk length in rows (default 4096); compression: gzip level (default 4).
    Result: ``{"files": [...], "rows": n}`` for this replica.
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        p = ctx.params
        where = f"stages.{ctx.stage}.params"
        if "path" not in p:
            raise DataError(f"{where}.path: required (output directory or .h5 file)")
        self.sharded = bool(p.get("sharded", True))
        self.chunk_rows = _positive_int(p, "chunk_rows", 4096, where)
        self.level = p.get("compression", 4)
        if self.level not in range(10):
            raise DataError(f"{where}.compression: gzip level 0..9, got {self.level!r}")
        self.name = p.get("dataset", "data")
        self.rows = 0
        self.keys: list[str] | None = None
        if self.sharded:
            self.dir = Path(p["path"])
            self.dir.mkdir(parents=True, exist_ok=True)
            self.file_path = self.dir / f"shard-{ctx.replica:05d}.h5"
            # Drop our entry (and those of replicas that no longer exist) until we finish.
            _update_index(self.dir, ctx.replica, ctx.replicas, None)
        else:
            if ctx.replicas != 1:
                raise DataError(f"{where}.sharded: one output file needs replicas = 1, got "
                                f"{ctx.replicas}; use sharded = true")
            self.file_path = Path(p["path"])
            self.file_path.parent.mkdir(parents=True, exist_ok=True)
        self.file: Any = _h5py().File(self.file_path, "w")

    def consume(self, item: Any) -> None:
        item = _unwrap(item)
        arrays = item if isinstance(item, dict) else {self.name: item}
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if self.keys is None:
            self.keys = sorted(arrays)
        if sorted(arrays) != self.keys:
            raise DataError(f"{self.file_path}: item has datasets {sorted(arrays)}, earlier items "
                            f"had {self.keys}")
        n = {len(a) if a.ndim else -1 for a in arrays.values()}
        if len(n) != 1 or -1 in n:
            raise DataError(f"{self.file_path}: item arrays need one shared row count, got "
                            f"{ {k: a.shape for k, a in arrays.items()} }")
        rows = n.pop()
        for name, arr in arrays.items():
            self._append(name, arr)
        self.rows += rows

    def _append(self, name: str, arr: np.ndarray) -> None:
        f = self.file
        if name not in f:
            chunk = (min(self.chunk_rows, max(1, len(arr))),) + arr.shape[1:]
            f.create_dataset(name, shape=(0,) + arr.shape[1:], maxshape=(None,) + arr.shape[1:],
                             dtype=arr.dtype, chunks=chunk, compression="gzip",
                             compression_opts=self.level)
        ds = f[name]
        if ds.dtype != arr.dtype or ds.shape[1:] != arr.shape[1:]:
            raise DataError(f"{self.file_path}:{name}: item rows are {arr.dtype}{arr.shape[1:]}, "
                            f"the dataset holds {ds.dtype}{ds.shape[1:]}")
        start = ds.shape[0]
        with self.ctx.io(arr.nbytes):
            ds.resize(start + len(arr), axis=0)
            ds[start:] = arr

    def finish(self) -> None:
        if self.file is not None:
            self.file.attrs["streampipe_rows"] = self.rows
            self.file.close()
            self.file = None
            if self.sharded:
                _update_index(self.dir, self.ctx.replica, self.ctx.replicas,
                              {"file": self.file_path.name, "rows": self.rows})

    def close(self) -> None:
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None

    def result(self) -> dict[str, Any]:
        return {"files": [str(self.file_path)], "rows": self.rows}


def _update_index(directory: Path, replica: int, replicas: int, entry: dict | None) -> None:
    """Set (or with ``entry=None`` remove) this replica's shard entry, under a file lock.

    Sink replicas finish at different times on different ranks; the lock makes the
    read-modify-write of the shared index safe, the rename makes it atomic for readers.
    Entries of replicas >= ``replicas`` (left from an earlier, wider run) are dropped.
    """
    index = directory / INDEX_NAME
    with open(directory / (INDEX_NAME + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            doc = json.loads(index.read_text()) if index.exists() else {}
        except json.JSONDecodeError:
            doc = {}
        shards = [s for s in doc.get("shards", [])
                  if s.get("replica") != replica and s.get("replica", replicas) < replicas]
        if entry is not None:
            shards.append({"replica": replica, **entry})
        doc = {"format": _INDEX_FORMAT, "replicas": replicas,
               "shards": sorted(shards, key=lambda s: s["replica"])}
        tmp = index.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, index)


class NpySink(Sink):
    """Write each item as ``{path}/part-RRR-NNNNNN.npy`` (replica, item number of this replica).

    Params: ``path`` (directory). Result: ``{"files": [...], "rows": n}``.
    """

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        if "path" not in ctx.params:
            raise DataError(f"stages.{ctx.stage}.params.path: required (output directory)")
        self.dir = Path(ctx.params["path"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files: list[str] = []
        self.rows = 0

    def consume(self, item: Any) -> None:
        arr = np.asarray(_unwrap(item))
        if arr.dtype == object:
            raise DataError(f"{self.dir}: NpySink writes numeric arrays, got an object array")
        path = self.dir / f"part-{self.ctx.replica:03d}-{len(self.files):06d}.npy"
        with self.ctx.io(arr.nbytes):
            np.save(path, arr, allow_pickle=False)
        self.files.append(str(path))
        self.rows += len(arr) if arr.ndim else 1

    def result(self) -> dict[str, Any]:
        return {"files": self.files, "rows": self.rows}
