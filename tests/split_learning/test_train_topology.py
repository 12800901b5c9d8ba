"""Split-learning layout, [train] config validation and plan text (no MPI)."""

from __future__ import annotations

import pytest

from pipelines.split_learning.splitnn import parse_train
from pipelines.split_learning.topology import round_robin
from streampipe.job import JobError, parse_job
from streampipe.schedule import Action, simulate

MODEL = [{"type": "linear", "in": 64, "out": 8}, {"type": "relu"},
         {"type": "linear", "in": 8, "out": 10}]
MODEL5 = [{"type": "linear", "in": 64, "out": 8}, {"type": "relu"},
          {"type": "linear", "in": 8, "out": 8}, {"type": "relu"},
          {"type": "linear", "in": 8, "out": 10}]


def _layout(**kw):
    return parse_train({"model": MODEL5, **kw}).layout()


def test_u_shape_client_runs_bottom_and_head_in_a_deadlock_free_order():
    topo = _layout(cuts=[1, 2, 4], clients=3, u_shape=True, schedule="1f1b", microbatches=4)
    assert topo.size == 3 + 2
    assert {s: r[0] for s, r in topo.route(1).items()} == {0: 1, 1: 3, 2: 4, 3: 1}
    phys = topo.physical(1)
    assert set(phys) == {1, 3, 4}  # the other clients sit this step out
    # each stage keeps the template's own order (gradients added in microbatch order)
    for s in (0, 3):
        assert [a for a in phys[1] if a.stage == s] == topo.template[s]
    simulate(phys)  # raises DeadlockError otherwise
    kinds = {k for _, _, k in topo.links()}
    assert kinds == {"activation", "gradient"}  # U-shape: no label link exists at all


def test_vanilla_topology_sends_labels_to_the_last_server_stage():
    topo = _layout(cuts=[2, 4], clients=2, schedule="gpipe", microbatches=2)
    assert (0, 3, "label") in topo.links() and (1, 3, "label") in topo.links()
    assert topo.actions(1, 0) == []
    assert topo.actions(2, 0)[-1] == Action(1, "S")


def test_zb_h1_u_shape_merges_split_backwards():
    topo = _layout(cuts=[1, 2, 4], u_shape=True, schedule="zb-h1", microbatches=4)
    phys = topo.physical(0)
    kinds = {a.kind for acts in phys.values() for a in acts}
    assert kinds == {"F", "I", "W", "S"}
    for s in range(4):  # weight gradients in microbatch order on every stage
        assert [a.microbatch for acts in phys.values() for a in acts
                if a.stage == s and a.kind == "W"] == [0, 1, 2, 3]


def test_round_robin_turns_and_skips_exhausted_clients():
    # client sizes 100, 40, 70 with minibatch 20 -> 5, 2, 3 minibatches
    order = list(round_robin([100, 40, 70], 20, epoch=0))
    assert order == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (2, 2),
                     (0, 3), (0, 4)]


@pytest.mark.parametrize("patch,field", [
    ({"cuts": [3]}, "train.cuts[0]"),
    ({"cuts": [2, 1]}, "train.cuts[1]"),
    ({"microbatches": 0}, "train.microbatches"),
    ({"schedule": "zb"}, "train.schedule"),
    ({"optimizer": {"name": "sgd", "lr": 0}}, "train.optimizer.lr"),
    ({"model": [{"type": "linear", "in": 64}]}, "train.model[0].out"),
    ({"u_shape": True}, "train.cuts"),
    ({"dtype": "float16"}, "train.dtype"),
    ({"data": {"nope": 1}}, "train.data.nope"),
    ({"replicas": [1, 2]}, "train.replicas"),
    ({"clients": 0}, "train.clients"),
    ({"loss": "hinge"}, "train.loss"),
    ({"device": "tpu"}, "train.device"),
    ({"cuts": "auto"}, "train.stages"),
    ({"cuts": "half"}, "train.cuts"),
])
def test_bad_train_fields_are_named(patch, field):
    table = {"model": MODEL, "cuts": [2], **patch}
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_train(table)


def test_job_file_carries_the_train_table():
    spec = parse_job({"pipeline": {"name": "t"}, "train": {"model": MODEL, "cuts": [2]}})
    assert spec.train == {"model": MODEL, "cuts": [2]} and spec.stages == []
    with pytest.raises(JobError, match="stages"):
        parse_job({"train": {}, "stages": [{"uses": "x:y"}]})


def test_plan_prints_grid_and_balanced_cuts():
    from streampipe.job import load_job
    from streampipe.train import plan_text

    spec = load_job("jobs/split-learning.toml",
                    ["train.layer_times=[4.0, 1.0, 1.0, 1.0, 1.0]"])
    text = plan_text(spec)
    assert "Rank 0" in text and "0F0" in text and "1S" not in text.split("Step")[0]
    # times 4,1,1,1,1 in 3 stages: the best max-stage time is 4 (layer 0 alone), then [1..4)
    # and [4] or [1..3) and [3..5); balance_by_time takes the latest cuts on ties
    assert "balance_by_time: cuts [1, 4]" in text
    assert "cuts [2, 4]: stage times 5000000, 2000000, 1000000 us" in text


def test_shuffle_false_one_client_takes_rows_in_file_order(tmp_path):
    import h5py
    import numpy as np

    from streampipe.train.data import load_source

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x_train"], f["y_train"] = rng.random((50, 64)), rng.integers(0, 10, 50)
    cfg = parse_train({"model": MODEL, "cuts": [2], "minibatch": 8, "microbatches": 2,
                       "data": {"source": "d.h5", "shuffle": False}},
                      base=str(tmp_path / "job.toml"))
    layout = cfg.layout()
    data = load_source("d.h5", cfg.base, cfg.loss)
    shards, test = layout.load_data(cfg, data)
    # no x_test: the test split is the last quarter of the rows, the training rows stay in order
    assert np.array_equal(shards[0].X, data.train.X[:38]) and len(test.y) == 12
    steps = list(layout.steps(0, {0: len(shards[0].y)}))
    assert [list(idx) for _, idx in steps] == [list(range(k * 8, k * 8 + 8)) for k in range(4)]
