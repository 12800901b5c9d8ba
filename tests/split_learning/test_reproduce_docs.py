"""pipelines/split_learning/REPRODUCE.md: the data split, the shards, the minibatches, the
initial weights and the checkpoint layout, each re-implemented here from the page alone and
checked against the pipeline (a hand-written checkpoint must load)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines.split_learning.data import Dataset, shard, synthetic_digits, train_test_split
from pipelines.split_learning.splitnn import client_minibatches
from streampipe.train import checkpoint
from streampipe.train.layer_worker import LayerWorker
from streampipe.train.local import microbatch_bounds
from streampipe.train.model_spec import build_model
from streampipe.train.optim import SGD, Adam

PAGE = Path(__file__).resolve().parents[2] / "pipelines" / "split_learning" / "REPRODUCE.md"

SEED = 11


def data(n: int = 203) -> Dataset:
    d = synthetic_digits(n)
    return Dataset(d.X, d.y)


def test_train_test_split_as_documented():
    d = data()
    train, test = train_test_split(d, 0.25, seed=SEED)
    perm = np.random.default_rng(SEED).permutation(len(d.y))
    n_test = round(len(d.y) * 0.25)
    np.testing.assert_array_equal(test.y, d.y[perm[:n_test]])
    np.testing.assert_array_equal(train.X, d.X[perm[n_test:]])
    train, test = train_test_split(d, 0.25, seed=SEED, shuffle=False)
    np.testing.assert_array_equal(test.X, d.X[len(d.y) - n_test:])


@pytest.mark.parametrize("clients", [1, 3, 4])
def test_iid_shards_as_documented(clients):
    d = data()
    parts = shard(d, clients, "iid", seed=SEED)
    perm = np.random.default_rng(SEED).permutation(len(d.y))
    m, start = len(d.y), 0
    for k, p in enumerate(parts):
        size = m // clients + (1 if k < m % clients else 0)
        np.testing.assert_array_equal(p.y, d.y[perm[start:start + size]])
        start += size
    assert start == m


def test_label_skew_shards_as_documented():
    d = data()
    parts = shard(d, 3, "label_skew", alpha=0.5, seed=SEED)
    rng = np.random.default_rng(SEED)
    buckets = [[], [], []]
    for c in sorted(set(d.y.tolist())):
        idx = rng.permutation(np.flatnonzero(d.y == c))
        share = rng.dirichlet([0.5] * 3)
        cuts = np.floor(np.cumsum(share)[:-1] * len(idx)).astype(int)
        for k, part in enumerate(np.split(idx, cuts)):
            buckets[k].extend(part.tolist())
    want = [sorted(b) for b in buckets]
    assert all(want), "the documented empty-client fix is not exercised here"
    for p, w in zip(parts, want, strict=True):
        np.testing.assert_array_equal(p.X, d.X[w])


def test_minibatches_and_microbatches_as_documented():
    got = client_minibatches(70, 16, epoch=2, seed=SEED, client=1)
    perm = np.random.default_rng([SEED, 1, 2]).permutation(70)
    assert len(got) == 70 // 16
    for j, mb in enumerate(got):
        np.testing.assert_array_equal(mb, perm[j * 16:(j + 1) * 16])
    assert microbatch_bounds(10, 4) == [(math.floor(i * 10 / 4), math.floor((i + 1) * 10 / 4))
                                        for i in range(4)]


MODEL = [{"type": "conv2d", "in": 1, "out": 2, "kernel": 3}, {"type": "relu"},
         {"type": "flatten"}, {"type": "linear", "in": 72, "out": 5}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_weights_as_documented(dtype):
    model = build_model(MODEL, seed=SEED, dtype=dtype)
    for i, entry in enumerate(MODEL):
        layer = model.layers[i]
        rng = np.random.default_rng(np.random.SeedSequence([SEED, i]))
        if entry["type"] == "linear":
            w = rng.standard_normal((entry["in"], entry["out"])) * math.sqrt(2 / entry["in"])
        elif entry["type"] == "conv2d":
            k = entry["kernel"]
            w = (rng.standard_normal((entry["out"], entry["in"], k, k))
                 * math.sqrt(2 / (entry["in"] * k * k)))
        else:
            assert layer.params == []
            continue
        np.testing.assert_array_equal(layer.params[0], w.astype(dtype))
        np.testing.assert_array_equal(layer.params[1], np.zeros(entry["out"], dtype))


def test_a_checkpoint_written_from_the_documented_layout_loads(tmp_path):
    """Written with h5py from REPRODUCE.md, not with checkpoint.save."""
    stages = build_model(MODEL, seed=SEED, dtype=np.float64).split([2])
    path = tmp_path / "hand.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = 1
        f.attrs["epoch"] = 3
        f.attrs["seed"] = SEED
        for name, st, kind in (("client0_bottom", stages[0], "adam"),
                               ("server_stage1", stages[1], "sgd")):
            g = f.create_group(f"stages/{name}")
            params = []
            for k, layer in enumerate(st.layers):
                if layer.params:
                    for pname, p in zip(("weight", "bias"), layer.params, strict=True):
                        arr = rng.standard_normal(p.shape)
                        g.create_dataset(f"layers/{k}/{pname}", data=arr)
                        params.append(arr)
            o = g.create_group("optimizer")
            o.attrs["kind"], o.attrs["t"] = kind, 5 if kind == "adam" else 0
            for i, arr in enumerate(params):
                o.create_dataset(f"v{i}", data=arr * 0.5)
                if kind == "adam":
                    o.create_dataset(f"m{i}", data=arr * 0.25)
    got, epoch, seed = checkpoint.load(str(path))
    assert (epoch, seed) == (3, SEED)
    bottom = LayerWorker(stages[0], Adam())
    bottom.load_state(got["client0_bottom"], "client0_bottom")
    with h5py.File(path) as f:
        np.testing.assert_array_equal(stages[0].layers[0].params[0],
                                      f["stages/client0_bottom/layers/0/weight"][()])
        assert bottom.opt.t == 5 and len(bottom.opt._m) == 2
        np.testing.assert_array_equal(bottom.opt._m[1],
                                      f["stages/client0_bottom/optimizer/m1"][()])
    server = LayerWorker(stages[1], SGD(lr=0.1, momentum=0.9))
    server.load_state(got["server_stage1"], "server_stage1")
    assert len(server.opt._v) == 2
    with h5py.File(path, "a") as f:  # the attribute the old documented layout left out
        del f.attrs["format"]
    with pytest.raises(ValueError, match="is not a streampipe training checkpoint"):
        checkpoint.load(str(path))


def test_the_page_documents_each_recipe():
    text = PAGE.read_text()
    for needle in ("format = 1", "default_rng(seed).permutation(n)", "np.array_split",
                   "SeedSequence([seed, i])", "default_rng([seed, c, e])", "dirichlet"):
        assert needle in text, needle
