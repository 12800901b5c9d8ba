"""Pipeline-parallel training of streampipe layers under MPI: the framework's own layout.

Oracle: the whole model trained in one process on each full minibatch with the mean loss
(``softmax_cross_entropy(..., "mean")``, one backward, the same optimizer). Pipelined training
adds summed microbatch gradients (and, with replicas, all-reduces them) and divides once, the
same gradient up to rounding: float64 weights agree to ~1e-15, and 1e-10 is far below any real
fault (a lost microbatch or a missing all-reduce moves weights by >= 1e-4 here).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from streampipe.runfile import read
from streampipe.schedule import simulate
from streampipe.train.checkpoint import load
from streampipe.train.config import parse_train
from streampipe.train.losses import softmax_cross_entropy
from streampipe.train.model_spec import build_model
from streampipe.train.optim import make_optimizer
from streampipe.train.partition import balance_by_time
from tests.mpiutil import streampipe
from tests.train_jobs import train_toml

pytestmark = pytest.mark.mpi

MODEL = [{"type": "linear", "in": 64, "out": 32}, {"type": "relu"},
         {"type": "linear", "in": 32, "out": 24}, {"type": "gelu"},
         {"type": "linear", "in": 24, "out": 16}, {"type": "relu"},
         {"type": "linear", "in": 16, "out": 10}]


def _data(n: int = 192, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 64)), rng.integers(0, 10, n)


def _h5(path: Path, X: np.ndarray, y: np.ndarray) -> str:
    with h5py.File(path, "w") as f:
        f["x_train"], f["y_train"] = X, y
        f["x_test"], f["y_test"] = X[:40], y[:40]
    return str(path)


def _run(tmp: Path, train: dict, timeout: float = 40) -> dict:
    job = tmp / "job.toml"
    job.write_text(train_toml(train))
    out = tmp / "run.h5"
    done = streampipe("run", str(job), "--out", str(out), "--quiet", timeout=timeout)
    assert done.returncode == 0, done.output[-4000:]
    return read(str(out))


def _serial(train: dict, X: np.ndarray, y: np.ndarray) -> list:
    """Plain training in file order (shuffle = false): full minibatch, mean loss."""
    model = build_model(train["model"], seed=train.get("seed", 0), dtype=np.float64)
    opt = make_optimizer(train["optimizer"])
    mb = train["minibatch"]
    for _ in range(train["epochs"]):
        for k in range(len(y) // mb):
            model.zero_grad()
            out = model.forward(X[k * mb:(k + 1) * mb], mb="s")
            _, g = softmax_cross_entropy(out, y[k * mb:(k + 1) * mb], reduction="mean")
            model.backward(g, mb="s")
            opt.step(model.params, model.grads)
    return model.layers


def _max_diff(ckpt: str, layers: list, cuts: list[int]) -> float:
    saved, _, _ = load(ckpt)
    bounds = [0, *cuts, len(layers)]
    worst = 0.0
    for s in range(len(bounds) - 1):
        st = saved[f"stage{s}"]["layers"]
        for k, layer in enumerate(layers[bounds[s]:bounds[s + 1]]):
            for name, p in zip(("weight", "bias"), layer.params, strict=False):
                worst = max(worst, float(np.abs(st[str(k)][name] - p).max()))
    return worst


def _base(tmp: Path, **kw) -> dict:
    X, y = _data()
    train = {"model": MODEL, "microbatches": 4, "minibatch": 32, "epochs": 1, "seed": 2,
             "dtype": "float64", "checkpoint": str(tmp / "w.h5"),
             "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.9},
             "data": {"source": _h5(tmp / "d.h5", X, y), "shuffle": False}}
    train.update(kw)
    return train


def test_replicas_and_auto_cuts_equal_serial(tmp_path):
    """Stage 0 on two replicas (alternate microbatches, gradients all-reduced), cuts measured."""
    train = _base(tmp_path, schedule="1f1b", cuts="auto", stages=2, replicas=[2, 1])
    run = _run(tmp_path, train)
    res = run["meta"]["result"]
    assert res["cuts"] == balance_by_time(res["layer_times"], 2) and res["cuts_measured"]
    X, y = _data()
    assert _max_diff(train["checkpoint"], _serial(train, X, y), res["cuts"]) <= 1e-10
    steps = len(y) // 32
    ranks = run["ranks"]
    assert [r["stage"] for r in ranks] == ["pipe0.0", "pipe0.1", "pipe1"]
    # each replica ran every other microbatch; the last stage all of them
    assert ranks[0]["items_in"] == ranks[1]["items_in"] == 2 * steps
    assert ranks[2]["items_in"] == 4 * steps
    assert ranks[0]["wire"]["sent"]["activation"]["2"][0] == 2 * steps


def test_zb_h1_equals_serial_with_dry_run_peaks(tmp_path):
    train = _base(tmp_path, schedule="zb-h1", cuts=[2, 4])
    run = _run(tmp_path, train)
    X, y = _data()
    assert _max_diff(train["checkpoint"], _serial(train, X, y), [2, 4]) <= 1e-10
    sim = simulate(parse_train(train).layout().physical(0))
    assert [r["peak_live"] for r in run["ranks"]] == [sim.rank_peak_activations[r]
                                                      for r in range(3)]


def test_recompute_holds_only_stage_inputs(tmp_path):
    """1F1B with recomputation: after each forward a stage holds just its live inputs, so the
    measured peak bytes are (peak live) x (microbatch of 8 rows) x (input width) x 8 bytes."""
    loader = tmp_path / "ld.py"
    loader.write_text("import h5py\n\ndef load():\n"
                      f"    with h5py.File({str(tmp_path / 'd.h5')!r}) as f:\n"
                      "        return f['x_train'][()], f['y_train'][()]\n")
    train = _base(tmp_path, schedule="1f1b", cuts=[2, 4], recompute=True,
                  optimizer={"name": "adam", "lr": 0.01})
    train["data"] = {"source": "ld.py:load", "shuffle": False}
    run = _run(tmp_path, train)
    X, y = _data()
    assert _max_diff(train["checkpoint"], _serial(train, X, y), [2, 4]) <= 1e-10
    ranks = run["ranks"]
    assert [r["peak_live"] for r in ranks] == [3, 2, 1]  # 1F1B: min(m, P - s)
    assert ranks[0]["peak_live_bytes"] == 3 * 8 * 64 * 8
    assert ranks[1]["peak_live_bytes"] == 2 * 8 * 32 * 8
    # the last stage also keeps the loss gradient (8 x 10) of its one live microbatch
    assert ranks[2]["peak_live_bytes"] == 8 * 24 * 8 + 8 * 10 * 8


def test_bad_data_is_one_line_naming_file_and_dataset(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["x_train"] = np.zeros((64, 64))
    train = _base(tmp_path, cuts=[2])
    train["data"] = {"source": "bad.h5"}
    job = tmp_path / "job.toml"
    job.write_text(train_toml(train))
    done = streampipe("run", str(job), "--out", str(tmp_path / "r.h5"), timeout=30)
    assert done.returncode != 0
    assert "bad.h5: missing dataset(s) y_train (has: x_train)" in done.stderr
    assert "Traceback" not in done.stderr


def test_gpu_device_equals_serial(tmp_path):
    """``device = "gpu"``: CuPy layers (the strict stand-in without a GPU), activations and
    gradients through streampipe.gpu's wire codec. Same oracle and tolerance: on the stand-in
    the arithmetic is NumPy's (exact), on a GPU CUDA's rounding differs by ulps per operation,
    far inside 1e-10."""
    from tests.gpu_harness import standin_env

    train = _base(tmp_path, schedule="1f1b", cuts=[2, 4], device="gpu")
    with standin_env():
        run = _run(tmp_path, train)
    X, y = _data()
    assert _max_diff(train["checkpoint"], _serial(train, X, y), [2, 4]) <= 1e-10
    for r in run["ranks"]:
        assert r["device"] == "gpu" and r["gpu_peak_bytes"] > 0, r


def test_torch_model_without_torch_names_the_extra(tmp_path, monkeypatch):
    """A machine without torch (a torch package that fails to import shadows the real one)."""
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return None\n")
    train = _base(tmp_path, cuts=[1], model="net.py:build")
    job = tmp_path / "job.toml"
    job.write_text(train_toml(train))
    done = streampipe("run", str(job), "--out", str(tmp_path / "r.h5"), timeout=30)
    assert done.returncode != 0
    assert "PyTorch models need the torch extra: pip install 'streampipe[torch]'" in done.stderr
    assert "Traceback" not in done.stderr
