"""The PyTorch adapter against plain single-process PyTorch (in one process, no MPI).

Oracle: ``torch`` itself training the whole ``nn.Sequential`` on each full minibatch with the
mean-reduced loss and the same ``torch.optim`` optimizer. The pipelined side runs every schedule
through :func:`streampipe.train.local.run_schedule_local` over :class:`TorchWorker` stages: it
adds each microbatch's summed-loss gradient and divides by the minibatch size once, which is
the same gradient up to rounding. In float64 the weights after several steps agree to ~1e-16;
the tolerance 1e-10 is far below any real fault (a lost microbatch, a wrong divisor or an
optimizer step on stale gradients moves weights by >= 1e-4 here).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (pip install '.[torch]'); the "
                            "test extra installs it")

from streampipe.schedule import gpipe, interleaved_1f1b, one_f_one_b, zb_h1  # noqa: E402
from streampipe.train.checkpoint import load, save  # noqa: E402
from streampipe.train.local import run_schedule_local  # noqa: E402
from streampipe.train.torch_adapter import TorchModel  # noqa: E402

CPU = torch.device("cpu")
TOL = 1e-10
# tiny tensors: intra-op threads only spin against the other processes of a busy machine
torch.set_num_threads(1)


def _net(out: int = 10) -> torch.nn.Sequential:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(256, 32), nn.Tanh(), nn.Linear(32, 16),
                         nn.GELU(), nn.Linear(16, out))


def _plain(net, opt_spec, loss, X, y, steps, mb):
    ref = copy.deepcopy(net).double()
    if opt_spec["name"] == "sgd":
        opt = torch.optim.SGD(ref.parameters(), lr=opt_spec["lr"], momentum=opt_spec["momentum"])
    else:
        opt = torch.optim.Adam(ref.parameters(), lr=opt_spec["lr"])
    f = torch.nn.functional.cross_entropy if loss == "cross_entropy" else \
        torch.nn.functional.mse_loss
    for k in range(steps):
        opt.zero_grad()
        sl = slice(k * mb, (k + 1) * mb)
        f(ref(torch.from_numpy(X[sl])), torch.from_numpy(y[sl])).backward()
        opt.step()
    return ref.state_dict()


def _piped(net, sched, cuts, opt_spec, loss, X, y, steps, mb, recompute=False):
    model = TorchModel(copy.deepcopy(net), np.float64, CPU)
    b = [0, *cuts, model.n_layers]
    ws = [model.worker(b[i], b[i + 1], optimizer=opt_spec, recompute=recompute,
                       loss=loss if i == len(b) - 2 else None) for i in range(len(b) - 1)]
    for k in range(steps):
        sl = slice(k * mb, (k + 1) * mb)
        run_schedule_local(sched, ws, X[sl], y[sl])
    got = {}
    for w in ws:
        got.update(w.module.state_dict())
    return got, ws


def _diff(a, b):
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# (schedule builder, cuts into 9 children): P = 2..4 ranks, interleaved P=2 x V=2
CASES = {
    "gpipe-2": (lambda: gpipe(2, 4), [4]),
    "gpipe-3": (lambda: gpipe(3, 4), [3, 6]),
    "gpipe-4": (lambda: gpipe(4, 4), [2, 4, 6]),
    "1f1b-2": (lambda: one_f_one_b(2, 4), [4]),
    "1f1b-3": (lambda: one_f_one_b(3, 4), [3, 6]),
    "1f1b-4": (lambda: one_f_one_b(4, 8), [2, 4, 6]),
    "interleaved-2x2": (lambda: interleaved_1f1b(2, 4, 2), [2, 4, 6]),
    "interleaved-3x2": (lambda: interleaved_1f1b(3, 6, 2), [2, 3, 4, 6, 7]),
    "zb-h1-2": (lambda: zb_h1(2, 4), [4]),
    "zb-h1-4": (lambda: zb_h1(4, 8), [2, 4, 6]),
}


RUNS = [(c, False) for c in CASES] + [(c, True) for c in ("1f1b-3", "interleaved-2x2",
                                                          "zb-h1-4")]


@pytest.mark.parametrize("case,recompute", RUNS)
def test_every_schedule_equals_plain_torch(case, recompute):
    make, cuts = CASES[case]
    net = _net()
    rng = np.random.default_rng(1)
    X, y = rng.random((96, 64)), rng.integers(0, 10, 96)
    mb = 24 if "3x2" in case else 16
    steps = len(y) // mb
    opt = {"name": "adam", "lr": 0.01} if recompute else {"name": "sgd", "lr": 0.1,
                                                          "momentum": 0.9}
    got, ws = _piped(net, make(), cuts, opt, "cross_entropy", X, y, steps, mb, recompute)
    want = _plain(net, opt, "cross_entropy", X, y, steps, mb)
    assert _diff(got, want) <= TOL
    assert _diff(_net().double().state_dict(), want) > 1e-3  # the weights did move
    assert all(w.held() == (0, 0) for w in ws)  # nothing left in flight


def test_mse_regression_equals_plain_torch():
    net = _net(out=3)
    rng = np.random.default_rng(2)
    X, y = rng.random((64, 64)), rng.standard_normal((64, 3))
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.5}
    got, _ = _piped(net, zb_h1(3, 4), [3, 6], opt, "mse", X, y, 4, 16)
    assert _diff(got, _plain(net, opt, "mse", X, y, 4, 16)) <= TOL


def test_bytes_held_are_what_autograd_saves():
    # two Linear layers: autograd keeps each one's input (the weights are parameters, not
    # counted: 16 x (64 + 32) doubles) and the worker keeps the output (16 x 8); with
    # recomputation only the stage input
    lin = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 8))
    model = TorchModel(lin, np.float64, CPU)
    x = torch.rand(16, 64, dtype=torch.float64)
    for recompute, want in ((False, 16 * (64 + 32 + 8) * 8), (True, 16 * 64 * 8)):
        w = model.worker(0, 2, optimizer={"name": "sgd", "lr": 0.1}, loss=None,
                         recompute=recompute)
        w.begin(16)
        w.forward(0, x)
        w.forward(1, x.clone())
        assert w.held() == (2, 2 * want)
        w.backward(0, torch.ones(16, 8, dtype=torch.float64))
        assert w.held() == (1, want)


def test_checkpoint_round_trip_restores_weights_and_optimizer(tmp_path):
    net = _net()
    rng = np.random.default_rng(3)
    X, y = rng.random((64, 64)), rng.integers(0, 10, 64)
    opt = {"name": "adam", "lr": 0.01}
    _, ws = _piped(net, one_f_one_b(2, 4), [4], opt, "cross_entropy", X, y, 2, 16)
    save(str(tmp_path / "c.h5"), {f"stage{i}": w.state() for i, w in enumerate(ws)}, 1, 0)
    stages, epoch, seed = load(str(tmp_path / "c.h5"))
    assert (epoch, seed) == (1, 0)
    model = TorchModel(copy.deepcopy(net), np.float64, CPU)
    fresh = [model.worker(0, 4, optimizer=opt, loss=None, recompute=False),
             model.worker(4, 9, optimizer=opt, loss="cross_entropy", recompute=False)]
    for i, w in enumerate(fresh):
        w.load_state(stages[f"stage{i}"], f"/stages/stage{i}")
    for a in (ws, fresh):  # two more steps from the restored state = two more from the live one
        run_schedule_local(one_f_one_b(2, 4), a, X[32:48], y[32:48])
        run_schedule_local(one_f_one_b(2, 4), a, X[48:64], y[48:64])
    live = {k: v for w in ws for k, v in w.module.state_dict().items()}
    back = {k: v for w in fresh for k, v in w.module.state_dict().items()}
    assert _diff(live, back) == 0.0
    with pytest.raises(ValueError, match=r"/stages/stage0/torch: keys"):
        fresh[1].load_state(stages["stage0"], "/stages/stage0")


def test_missing_torch_names_the_extra(tmp_path, monkeypatch):
    from streampipe.train.config import parse_train
    from streampipe.train.model import load_model

    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return None\n")
    cfg = parse_train({"model": "net.py:build", "cuts": [1]}, base=str(tmp_path / "job.toml"))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(ValueError, match=r"pip install 'streampipe\[torch\]'"):
        load_model(cfg)


def test_not_a_sequential_is_refused():
    with pytest.raises(ValueError, match="must be a torch.nn.Sequential"):
        TorchModel(torch.nn.Linear(3, 3), np.float64, CPU)


def test_schedules_equal_torch_pipelining_generators():
    """ZB-H1 and interleaved 1F1B give torch.distributed.pipelining's own per-rank order."""
    from torch.distributed.pipelining import schedules as T

    def torch_order(cls, p, v, m, r):
        o = object.__new__(cls)
        o.n_local_stages, o.pp_group_size, o._n_microbatches = v, p, m
        o.number_of_rounds = max(1, m // p)
        o.microbatches_per_round = m // o.number_of_rounds
        return [str(a) for a in o._calculate_single_rank_operations(r) if a is not None]

    for p in range(1, 6):
        for m in range(1, 13):
            if m % max(1, m // p):
                continue  # torch's ZB1P needs m a multiple of its rounds
            for r in range(p):
                mine = [str(a) for a in zb_h1(p, m)[r] if a.kind != "S"]
                assert mine == torch_order(T.ScheduleInterleavedZeroBubble, p, 1, m, r)
    for p in range(2, 5):
        for v in (2, 3):
            # with m == p (one round) Megatron makes every forward warm-up, torch does not
            for m in range(2 * p, 13, p):
                for r in range(p):
                    mine = [str(a) for a in interleaved_1f1b(p, m, v)[r] if a.kind != "S"]
                    assert mine == torch_order(T.ScheduleInterleaved1F1B, p, v, m, r)


def test_gpu_without_cuda_is_a_clear_error():
    from streampipe.train.torch_adapter import torch_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path cannot be reached")
    with pytest.raises(ValueError, match=r'train.device: "gpu" but torch sees no CUDA device'):
        torch_device("gpu")
    assert torch_device("auto").type == "cpu"


def test_plan_of_a_torch_job_prints_cuts_stage_times_and_bubble(tmp_path):
    import h5py

    from streampipe.job import load_job
    from streampipe.train import plan_text

    (tmp_path / "net.py").write_text(
        "from torch import nn\n\ndef build():\n"
        "    return nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),\n"
        "                         nn.Linear(64, 5))\n")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x_train"] = np.random.default_rng(0).random((64, 12))
        f["y_train"] = np.arange(64) % 5
    (tmp_path / "job.toml").write_text(
        '[train]\nmodel = "net.py:build"\ncuts = "auto"\nstages = 2\nschedule = "zb-h1"\n'
        'microbatches = 4\nminibatch = 16\n[train.data]\nsource = "d.h5"\n')
    text = plan_text(load_job(tmp_path / "job.toml"))
    assert "model: torch, 5 layers: 0:Linear, 1:ReLU, 2:Linear, 3:ReLU, 4:Linear" in text
    assert "(auto): stage times" in text and "predicted step" in text and "bubble" in text
    assert "0I0" in text and "1W3" in text  # the ZB-H1 grid


def test_recompute_replays_dropout():
    # the recomputed forward draws the same dropout masks as the first one (RNG state kept),
    # so recomputation changes nothing but memory
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 10))
    rng = np.random.default_rng(4)
    X, y = rng.random((32, 64)), rng.integers(0, 10, 32)
    out = []
    for recompute in (False, True):
        torch.manual_seed(1)
        got, _ = _piped(net, one_f_one_b(2, 4), [2], {"name": "sgd", "lr": 0.1, "momentum": 0.0},
                        "cross_entropy", X, y, 2, 16, recompute)
        out.append(got)
    assert _diff(*out) == 0.0
