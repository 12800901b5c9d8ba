"""HDF5/Npy data stages: round trips, replica split, resume and clear errors."""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import pytest

from streampipe.io import DataError, HDF5Sink, HDF5Source, NpySink, NpySource, read_index
from streampipe.stage import Context


class _IORecorder:
    """Stands in for the runtime: records the bytes every ctx.io block declares."""

    def __init__(self) -> None:
        self.nbytes = 0
        self.m = self  # the runtime keeps its Recorder as .m

    def io(self, nbytes: int) -> Any:
        from contextlib import nullcontext

        self.nbytes += nbytes
        return nullcontext()


def _run_source(cls: type, params: dict, replica: int = 0, replicas: int = 1,
                seek: int | None = None, runtime: Any = None) -> list:
    src = cls()
    src.setup(Context(params=params, stage="src", replica=replica, replicas=replicas,
                      _runtime=runtime))
    if seek is not None:
        src.seek(seek)
    out = list(src.generate())
    src.close()
    return out


def _write(sink_cls: type, params: dict, items: list, replica: int = 0, replicas: int = 1) -> Any:
    sink = sink_cls()
    sink.setup(Context(params=params, stage="sink", replica=replica, replicas=replicas))
    for it in items:
        sink.consume(it)
    sink.finish()
    return sink.result()


@pytest.fixture
def sharded(tmp_path):
    """Three sink replicas write 3 shards of a (rows x 4) float array plus an int id column."""
    rng = np.random.default_rng(1)
    parts = []
    for r, n in enumerate([10, 7, 0]):
        x = rng.standard_normal((n, 4))
        ids = np.arange(n, dtype=np.int64) + 100 * r
        items = [{"x": x[i:i + 3], "id": ids[i:i + 3]} for i in range(0, n, 3)]
        _write(HDF5Sink, {"path": str(tmp_path / "out"), "chunk_rows": 4}, items, r, 3)
        parts.append((x, ids))
    return tmp_path / "out", parts


def test_sharded_round_trip_index_and_compression(sharded):
    out, parts = sharded
    shards = read_index(out / "index.json")
    # The index lists every replica's shard in replica order with its exact row count.
    assert [(p.name, n) for p, n in shards] == [
        ("shard-00000.h5", 10), ("shard-00001.h5", 7), ("shard-00002.h5", 0)]
    with h5py.File(out / "shard-00000.h5") as f:
        ds = f["x"]
        assert ds.compression == "gzip" and ds.maxshape == (None, 4) and ds.chunks[0] <= 4
        np.testing.assert_array_equal(ds[...], parts[0][0])  # bit-exact round trip
    got = _run_source(HDF5Source, {"path": str(out / "index.json"), "datasets": ["x", "id"],
                                   "chunk_rows": 4})
    np.testing.assert_array_equal(np.concatenate([g["x"] for g in got]),
                                  np.concatenate([p[0] for p in parts]))
    # Chunks never cross shards: 10 rows -> 4,4,2 and 7 -> 4,3 (empty shard gives none).
    assert [len(g["id"]) for g in got] == [4, 4, 2, 4, 3]


def test_replicas_split_chunks_without_overlap_and_read_each_byte_once(sharded):
    out, parts = sharded
    params = {"path": str(out / "shard-*.h5"), "dataset": "id", "chunk_rows": 3}
    everything = np.concatenate([p[1] for p in parts])
    recs, seen = [], []
    for r in range(2):
        rec = _IORecorder()
        got = _run_source(HDF5Source, {**params, "meta": True}, r, 2, runtime=rec)
        # Replica r owns exactly the chunks with index % 2 == r.
        assert all(g["chunk"] % 2 == r for g in got)
        seen += [g["data"] for g in got]
        recs.append(rec.nbytes)
    merged = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(merged, np.sort(everything))  # no row lost or duplicated
    assert sum(recs) == everything.nbytes  # accounted reads add up to the data, read once


def test_seek_resumes_at_chunk(sharded):
    out, parts = sharded
    params = {"path": str(out / "index.json"), "dataset": "id", "chunk_rows": 4}
    full = _run_source(HDF5Source, params)
    resumed = _run_source(HDF5Source, params, seek=3)
    assert len(resumed) == 2
    for a, b in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    # With replicas, resume keeps the global numbering: replica 1 of 2 from chunk 2 gets chunk 3.
    r1 = _run_source(HDF5Source, {**params, "meta": True}, 1, 2, seek=2)
    assert [g["chunk"] for g in r1] == [3]


def test_single_file_sink_and_replica_check(tmp_path):
    items = [np.arange(5, dtype=np.int32) + 5 * i for i in range(3)]
    res = _write(HDF5Sink, {"path": str(tmp_path / "one.h5"), "sharded": False,
                            "dataset": "v"}, items)
    assert res["rows"] == 15
    got = _run_source(HDF5Source, {"path": str(tmp_path / "one.h5"), "dataset": "v",
                                   "chunk_rows": 100})
    np.testing.assert_array_equal(got[0], np.arange(15, dtype=np.int32))
    with pytest.raises(DataError, match="replicas = 1"):
        _write(HDF5Sink, {"path": str(tmp_path / "two.h5"), "sharded": False}, [], 0, 2)


def test_sink_rejects_changed_dtype(tmp_path):
    with pytest.raises(DataError, match=r"shard-00000.h5:data.*int32.*float64"):
        _write(HDF5Sink, {"path": str(tmp_path)}, [np.zeros(3), np.zeros(3, np.int32)])


def test_wider_earlier_run_leaves_no_stale_index_entries(sharded):
    out, _ = sharded
    _write(HDF5Sink, {"path": str(out)}, [np.ones(2)], 0, 1)
    doc = json.loads((out / "index.json").read_text())
    assert [(s["replica"], s["rows"]) for s in doc["shards"]] == [(0, 2)]


@pytest.mark.parametrize("params, match", [
    ({"dataset": "nope"}, r"shard-00000.h5: no dataset 'nope'"),
    ({"dataset": "x", "dtype": "float32"}, r"shard-00000.h5:x: dtype is float64, expected float32"),
    ({"dataset": "x", "shape": [5]}, r"shard-00000.h5:x: row shape is \(4,\), expected \(5,\)"),
    ({"datasets": ["x", "id"], "shape": {"x": [-1]}, "dtype": {"id": "int32"}},
     r":id: dtype is int64, expected int32"),
])
def test_source_errors_name_path_and_dataset(sharded, params, match):
    out, _ = sharded
    with pytest.raises(DataError, match=match):
        _run_source(HDF5Source, {"path": str(out / "shard-00000.h5"), **params})


def test_truncated_and_missing_files(sharded, tmp_path):
    out, _ = sharded
    data = (out / "shard-00000.h5").read_bytes()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"bad.h5: cannot open as HDF5"):
        _run_source(HDF5Source, {"path": str(bad), "dataset": "x"})
    with pytest.raises(DataError, match=r"path: glob .* matches no file"):
        _run_source(HDF5Source, {"path": str(tmp_path / "none-*.h5"), "dataset": "x"})
    with pytest.raises(DataError, match=r"shard index .* does not exist"):
        _run_source(HDF5Source, {"path": str(tmp_path / "index.json"), "dataset": "x"})


def test_npy_round_trip_replicas_and_errors(tmp_path):
    items = [np.arange(12, dtype=np.int16).reshape(6, 2) + 100 * i for i in range(3)]
    _write(NpySink, {"path": str(tmp_path / "npy")}, items)
    params = {"path": str(tmp_path / "npy"), "chunk_rows": 4, "dtype": "int16", "shape": [2]}
    whole = np.concatenate(_run_source(NpySource, params))
    np.testing.assert_array_equal(whole, np.concatenate(items))
    halves = [np.concatenate(_run_source(NpySource, params, r, 2)) for r in range(2)]
    # 6-row files in 4-row chunks: 4,2 per file; chunk i -> replica i % 2 -> 4-row chunks to 0.
    assert len(halves[0]) == 12 and len(halves[1]) == 6
    with pytest.raises(DataError, match=r"part-000-000000.npy: dtype is int16, expected int32"):
        _run_source(NpySource, {**params, "dtype": "int32"})
    raw = (tmp_path / "npy" / "part-000-000001.npy").read_bytes()
    (tmp_path / "npy" / "part-000-000001.npy").write_bytes(raw[:70])
    with pytest.raises(DataError, match=r"part-000-000001.npy: cannot read as .npy"):
        _run_source(NpySource, params)
