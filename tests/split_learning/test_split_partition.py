"""Layer partition planner against brute force; data shards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.split_learning import (
    Dataset,
    balance_by_time,
    measure_layer_times,
    mlp,
    shard,
    stage_times,
)


def _brute(times, k):
    n = len(times)
    return min(max(stage_times(times, c)) for c in itertools.combinations(range(1, n), k - 1))


@pytest.mark.parametrize("seed", range(40))
def test_dp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    k = int(rng.integers(1, n + 1))
    # integer times: stage sums are exact, so the optimum compares with ==
    times = [int(t) for t in rng.integers(0, 20, n)]
    cuts = balance_by_time(times, k)
    assert len(cuts) == k - 1 and cuts == sorted(set(cuts)) and all(0 < c < n for c in cuts)
    assert max(stage_times(times, cuts)) == _brute(times, k)


def test_float_times_and_known_case():
    assert balance_by_time([1, 2, 3, 4, 5, 6], 3) == [3, 5]  # 6 | 9 | 6
    times = list(np.random.default_rng(9).random(7))
    assert max(stage_times(times, balance_by_time(times, 3))) == pytest.approx(_brute(times, 3),
                                                                               rel=1e-12)


@pytest.mark.parametrize("times,k,match", [
    ([1, 2], 3, "n_stages"), ([1, -2], 1, r"layer_times\[1\]"), ([1, 2], 0, "n_stages"),
])
def test_errors(times, k, match):
    with pytest.raises(ValueError, match=match):
        balance_by_time(times, k)


def test_measure_layer_times_shape():
    model = mlp([64, 256, 256, 10], seed=0)
    t = measure_layer_times(model, np.ones((64, 64), np.float32), repeats=3)
    assert len(t) == len(model) == 5 and all(x > 0 for x in t)
    assert all(layer.live == 0 for layer in model.layers)
    assert all(not g.any() for g in model.grads)


def _data(n=600):
    rng = np.random.default_rng(0)
    return Dataset(rng.random((n, 4)), np.arange(n) % 10)


@pytest.mark.parametrize("mode", ["iid", "label_skew"])
def test_shards_partition_the_data(mode):
    data = _data()
    parts = shard(data, 5, mode, alpha=0.3, seed=1)
    assert len(parts) == 5 and all(len(p.y) > 0 for p in parts)
    rows = np.concatenate([p.X[:, 0] for p in parts])
    assert np.array_equal(np.sort(rows), np.sort(data.X[:, 0]))  # each sample exactly once


def test_label_skew_is_skewed_and_iid_is_not():
    data = _data(2000)

    def mean_tv(parts):  # mean total-variation distance of client label mix from uniform
        return np.mean([0.5 * np.abs(np.bincount(p.y, minlength=10) / len(p.y) - 0.1).sum()
                        for p in parts])

    # IID: a 400-sample multinomial sits ~0.05 from uniform; Dirichlet(0.3) skew gives ~0.5
    assert mean_tv(shard(data, 5, "iid", seed=2)) < 0.1
    assert mean_tv(shard(data, 5, "label_skew", alpha=0.3, seed=2)) > 0.3


def test_shard_errors():
    with pytest.raises(ValueError, match="mode"):
        shard(_data(), 2, "dirichlet")
    with pytest.raises(ValueError, match="n_clients"):
        shard(_data(), 0)
    with pytest.raises(ValueError, match="alpha"):
        shard(_data(), 2, "label_skew", alpha=0)
