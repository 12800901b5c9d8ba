"""PyTorch models trained across MPI ranks against plain single-process PyTorch.

Oracle: ``torch`` training the whole ``nn.Sequential`` on each full minibatch (same order,
mean-reduced loss, the same ``torch.optim`` optimizer). The run's final weights are read back
from its checkpoint (``checkpoint.torch_state_dict``). Float64 weights agree to ~1e-15; 1e-10 is
far below a real fault (a lost microbatch or a wrong divisor moves them by >= 1e-4 here).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (pip install '.[torch]'); the "
                            "test extra installs it")

from streampipe.runfile import read  # noqa: E402
from streampipe.train.checkpoint import torch_state_dict  # noqa: E402
from streampipe.train.data import minibatch_order  # noqa: E402
from streampipe.train.partition import balance_by_time  # noqa: E402
from tests.mpiutil import ROOT, streampipe  # noqa: E402
from tests.train_jobs import train_toml  # noqa: E402

pytestmark = pytest.mark.mpi

NET = '''import torch
from torch import nn


def build(out=10):
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(256, 32), nn.Tanh(), nn.Linear(32, 16),
                         nn.GELU(), nn.Linear(16, out))
'''


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"m_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _plain(net, opt_spec, loss, X, y, batches):
    ref = copy.deepcopy(net).double()
    if opt_spec["name"] == "sgd":
        opt = torch.optim.SGD(ref.parameters(), lr=opt_spec["lr"],
                              momentum=opt_spec.get("momentum", 0.0))
    else:
        opt = torch.optim.Adam(ref.parameters(), lr=opt_spec["lr"])
    f = torch.nn.functional.cross_entropy if loss == "cross_entropy" else \
        torch.nn.functional.mse_loss
    for idx in batches:
        opt.zero_grad()
        f(ref(torch.from_numpy(X[idx])), torch.from_numpy(y[idx])).backward()
        opt.step()
    return ref


def _diff(ckpt: str, ref) -> float:
    got = torch_state_dict(ckpt)
    want = ref.state_dict()
    assert set(got) == set(want)
    return max(float(np.abs(got[k] - want[k].numpy()).max()) for k in want)


def _run(job: Path, out: Path, *sets: str, timeout: float = 90) -> dict:
    args = [a for s in sets for a in ("--set", s)]
    done = streampipe("run", str(job), "--out", str(out), "--quiet", *args, timeout=timeout)
    assert done.returncode == 0, done.output[-4000:]
    return read(str(out))


def test_shipped_torch_job_equals_plain_torch(tmp_path):
    """jobs/digits-cnn-torch.toml (1F1B over 3 ranks), one epoch in float64."""
    ckpt = str(tmp_path / "w.h5")
    run = _run(ROOT / "jobs" / "digits-cnn-torch.toml", tmp_path / "run.h5", "train.epochs=1",
               'train.dtype="float64"', f'train.checkpoint="{ckpt}"')
    mod = _module(ROOT / "jobs" / "torch_digits.py")
    data = mod.load()
    torch.manual_seed(0)
    net = mod.build()
    X, y = data["x_train"].astype(np.float64), data["y_train"]
    ref = _plain(net, {"name": "adam", "lr": 0.003}, "cross_entropy", X, y,
                 minibatch_order(len(y), 32, 0, 0))
    assert _diff(ckpt, ref) <= 1e-10
    res = run["meta"]["result"]
    with torch.no_grad():
        pred = ref(torch.from_numpy(data["x_test"].astype(np.float64))).argmax(1).numpy()
    assert res["accuracy"] == [float(np.mean(pred == data["y_test"]))]
    assert res["model"] == "torch" and [r["stage"] for r in run["ranks"]] == \
        ["pipe0", "pipe1", "pipe2"]


def _job(tmp: Path, out: int, y_kind: str, **train) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.random((128, 64))
    y = rng.integers(0, 10, 128) if y_kind == "class" else rng.standard_normal((128, out))
    with h5py.File(tmp / "d.h5", "w") as f:
        f["x_train"], f["y_train"] = X, y
    (tmp / "net.py").write_text(NET)
    table = {"model": "net.py:build", "model_args": {"out": out}, "microbatches": 4,
             "minibatch": 32, "epochs": 1, "dtype": "float64", "seed": 4,
             "checkpoint": str(tmp / "w.h5"), "data": {"source": "d.h5", "shuffle": False},
             **train}
    job = tmp / "job.toml"
    job.write_text(train_toml(table))
    return job, X, y


def _net(tmp: Path, out: int):
    torch.manual_seed(4)
    return _module(tmp / "net.py").build(out)


CASES = {
    # P = 2 x V = 2 chunks, wrap-around link from the last rank back to the first
    "interleaved": dict(schedule="interleaved", virtual=2, cuts=[2, 4, 6],
                        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9}),
    # P = 3, split backward, recomputation, regression (P = 4 runs in tests/unit, in-process)
    "zb-h1-recompute-mse": dict(schedule="zb-h1", cuts=[3, 6], recompute=True, loss="mse",
                                optimizer={"name": "adam", "lr": 0.01}),
    # P = 2, cuts measured on the model
    "gpipe-auto": dict(schedule="gpipe", cuts="auto", stages=2,
                       optimizer={"name": "adam", "lr": 0.01}),
}


@pytest.mark.parametrize("case", CASES)
def test_schedules_equal_plain_torch(tmp_path, case):
    train = CASES[case]
    loss = train.get("loss", "cross_entropy")
    out = 3 if loss == "mse" else 10
    job, X, y = _job(tmp_path, out, "class" if loss == "cross_entropy" else "reg", **train)
    run = _run(job, tmp_path / "run.h5")
    ref = _plain(_net(tmp_path, out), train["optimizer"], loss, X, y,
                 minibatch_order(len(y), 32, 0, 0, shuffle=False))
    assert _diff(str(tmp_path / "w.h5"), ref) <= 1e-10
    res = run["meta"]["result"]
    if train["cuts"] == "auto":
        assert res["cuts"] == balance_by_time(res["layer_times"], 2)
    if train.get("recompute"):  # stage 0 keeps only its inputs: 32/4 rows x 64 doubles each
        live = run["ranks"][0]["peak_live"]
        assert run["ranks"][0]["peak_live_bytes"] == live * 8 * 64 * 8
