"""Interleaved 1F1B (``virtual`` model chunks per rank) over MPI against the serial oracle.

The oracle is ``train_round_robin_serial``: the whole model in one process. Each stage still adds
its microbatch gradients in microbatch order under interleaving, so float64 weights agree to
rounding; 1e-10 is ~1e5 ulps of O(1) weights while a lost or doubled microbatch moves them by
~1e-3. Peak live activations per *rank* (summed over its chunks) are compared with the unit-time
dry run of the same per-rank action lists: on one rank actions run one after another, so both
are the running maximum of (forwards done - backwards done) and must agree exactly.
"""

from __future__ import annotations

import pytest

from pipelines.split_learning.splitnn import load_data, parse_train, train_round_robin_serial
from streampipe.schedule import simulate
from tests.split_learning.test_train_mpi import _max_diff, _run, _small

# four linear blocks -> cuts [2, 4, 6] give 4 stages = P 2 ranks x V 2 chunks
MODEL4 = [{"type": "linear", "in": 64, "out": 24}, {"type": "relu"},
          {"type": "linear", "in": 24, "out": 20}, {"type": "relu"},
          {"type": "linear", "in": 20, "out": 16}, {"type": "relu"},
          {"type": "linear", "in": 16, "out": 10}]


def _interleaved(**kw) -> dict:
    return _small(schedule="interleaved", virtual=2, cuts=[2, 4, 6], model=MODEL4, **kw)


@pytest.mark.mpi
@pytest.mark.parametrize("clients", [1, 2])
def test_interleaved_equals_serial_and_dry_run_peaks(tmp_path, clients):
    ckpt = str(tmp_path / "w.h5")
    train = _interleaved(clients=clients, checkpoint=ckpt)
    run = _run(tmp_path, train)
    cfg = parse_train(train)
    topo = cfg.layout()
    assert topo.size == clients + 1  # P = 2 pipeline positions: the active client + 1 server
    shards, _ = load_data(cfg)
    assert _max_diff(ckpt, train_round_robin_serial(cfg, shards)) <= 1e-10

    sim = simulate(topo.physical(0))
    server = clients
    assert run["ranks"][server]["peak_live"] == sim.rank_peak_activations[server]
    assert run["ranks"][0]["peak_live"] == sim.rank_peak_activations[0]
    # the rank holds two chunks at once: more than any one stage's own peak
    assert sim.rank_peak_activations[0] > max(sim.peak_activations[s] for s in (0, 2))

    # wire: a client sends the activations of both its chunks (stages 0 and 2) to the server,
    # the server sends stage 1's back to it (the wrap-around link) and stage 3 computes the loss
    m = cfg.microbatches
    for c in range(clients):
        own = len(shards[c].y) // cfg.minibatch
        sent = run["ranks"][c]["wire"]["sent"]
        assert sent["activation"][str(server)][0] == 2 * m * own
        assert sent["gradient"][str(server)][0] == m * own  # from stage 2 to stage 1
        assert sent["label"][str(server)][0] == m * own
        got = run["ranks"][server]["wire"]["sent"]
        assert got["activation"][str(c)][0] == m * own
        assert got["gradient"][str(c)][0] == 2 * m * own  # to stages 0 and 2


@pytest.mark.parametrize("patch,msg", [
    ({"virtual": 1}, 'train.virtual: must be >= 2 for schedule "interleaved"'),
    ({"microbatches": 3}, "train.microbatches: must be a multiple of the number of pipeline "
                          r"ranks \(2\)"),
    ({"cuts": [2, 4]}, "train.cuts: schedule \"interleaved\" with virtual = 2 needs a multiple"),
    ({"u_shape": True}, "train.u_shape: not supported"),
    ({"schedule": "1f1b"}, "train.virtual: only schedule \"interleaved\" uses it"),
    ({"virtual": "2"}, "train.virtual: expected int"),
])
def test_bad_interleaved_fields_are_named(patch, msg):
    with pytest.raises(ValueError, match=msg):
        parse_train({**_interleaved(), **patch})
