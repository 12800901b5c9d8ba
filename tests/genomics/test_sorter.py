"""The external coordinate sort against one in-memory lexsort, with spills and ragged columns."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.genomics import CoordinateSorter
from streampipe.stage import Context


def _sort(items, **params):
    s = CoordinateSorter()
    s.setup(Context(params=params, stage="sort"))
    for it in items:
        assert s.process(it) is None
    runs = len(s.runs) + (1 if s.runs and s.buffered else 0)
    return list(s.finish()), runs, s


@pytest.mark.parametrize("max_rows, chunk_rows", [(10**6, 500), (100, 64), (37, 1000)])
def test_external_merge_equals_lexsort_with_ragged_columns(max_rows, chunk_rows):
    rng = np.random.default_rng(max_rows)
    n = 2000
    coord = rng.integers(-1, 300, n)  # many duplicate keys and unmapped (-1) rows
    rid = rng.permutation(n).astype(np.int64)
    width = rng.integers(3, 9, n)  # each item is as wide as its longest row
    payload = rng.integers(1, 4, (n, 8), dtype=np.uint8)
    payload[np.arange(8)[None, :] >= width[:, None]] = 0
    names = np.array([b"r%d" % i for i in rid])
    items = []
    for i in range(0, n, 130):
        w = int(width[i:i + 130].max())
        items.append({"coord": coord[i:i + 130], "read_id": rid[i:i + 130],
                      "reads": payload[i:i + 130, :w], "name": names[i:i + 130]})
    out, runs, sorter = _sort(items, max_rows_in_memory=max_rows, chunk_rows=chunk_rows)
    if max_rows < n:
        assert runs >= n // (max_rows + 130)  # the tiny limit really spilled many runs
    else:
        assert runs == 0
    assert sorter.tmp is None  # spill files removed
    got = {k: np.concatenate([np.pad(o[k], ((0, 0), (0, 8 - o[k].shape[1]))) if k == "reads"
                              else o[k] for o in out]) for k in out[0]}
    key = np.where(coord < 0, np.iinfo(np.int64).max, coord)
    order = np.lexsort((rid, key))
    np.testing.assert_array_equal(got["coord"], coord[order])
    np.testing.assert_array_equal(got["read_id"], rid[order])
    np.testing.assert_array_equal(got["reads"], payload[order])
    np.testing.assert_array_equal(got["name"], names[order])
    assert all(len(o["read_id"]) == chunk_rows for o in out[:-1])


def test_missing_or_changing_columns_are_errors():
    s = CoordinateSorter()
    s.setup(Context(params={}, stage="sort"))
    with pytest.raises(ValueError, match=r"stages.sort: item has no column 'coord'"):
        s.process({"read_id": np.arange(3)})
    s.process({"coord": np.arange(3), "read_id": np.arange(3)})
    with pytest.raises(ValueError, match=r"differ from the first item's"):
        s.process({"coord": np.arange(3), "read_id": np.arange(3), "x": np.arange(3)})
