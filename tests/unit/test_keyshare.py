"""The key distribution of route = "key" stages (no MPI): bucket counts give each replica's share
exactly for counts dividing 2520, the simulator replays them (chains and graphs) to the
closed-form rate of the hottest replica, and the advisor weighs key-routed stages by it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from streampipe import keyshare, runfile
from streampipe.advisor import advise
from streampipe.job import parse_job
from streampipe.plan import make_plan
from streampipe.routing import BUCKETS, key_hash, key_replica
from streampipe.sim import format_result, job_keys, keys_from_run, simulate
from tests.unit.test_sim_graph import S, const, job


def _keys(n, seed=0):
    """Mixed routing keys, skewed: a third of them one hot key."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = int(rng.integers(4))
        if i % 3 == 0:
            out.append("hot")
        elif kind == 0:
            out.append(int(rng.integers(-10**6, 10**6)))
        elif kind == 1:
            out.append(f"user-{int(rng.integers(500))}")
        elif kind == 2:
            out.append((int(rng.integers(50)), "x", 1.5))
        else:
            out.append(bytes([int(rng.integers(256))]) * 3)
    return out


def test_replica_shares_from_the_buckets_equal_a_direct_count():
    keys = _keys(5000)
    # three senders count their own part, rank 0 merges the sparse records
    recs = []
    for part in (keys[:1000], keys[1000:3500], keys[3500:]):
        dense = [0] * BUCKETS
        for k in part:
            dense[key_hash(k) % BUCKETS] += 1
        recs.append({"key_buckets": {"k": keyshare.sparse(dense)}})
    recs.append(None)  # a missing rank adds nothing
    merged = keyshare.merge(recs)["k"]
    assert sum(merged.values()) == 5000 and all(c > 0 for c in merged.values())
    for r in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 28, 36, 40, 63, 2520):
        direct = Counter(key_replica(k, r) for k in keys)
        got = keyshare.replica_counts(merged, r)
        assert got.tolist() == [direct.get(j, 0) for j in range(r)], r
    # 11, 16, 25 do not divide 2520: h % r is not a function of h % 2520
    for r in (11, 16, 25):
        assert keyshare.replica_counts(merged, r) is None
    assert keyshare.hottest(merged) >= 1 / 3  # the hot key's bucket, at least


def test_the_weighted_round_robin_is_exact_per_period_and_smooth():
    w = [7, 2, 1, 0]
    a = keyshare.assign(w, 95)
    assert np.bincount(a[:10], minlength=4).tolist() == w
    assert np.bincount(a[:90], minlength=4).tolist() == [63, 18, 9, 0]
    frac = np.array(w) / 10
    for i in range(1, 96):  # after any prefix, less than one item from the exact share
        assert np.abs(np.bincount(a[:i], minlength=4) - i * frac).max() < 1
    with pytest.raises(ValueError, match="weights"):
        keyshare.assign([0, 0], 5)


def _chain(reps=3):
    return make_plan(parse_job(job(
        S("src", "Numbers"), S("k", replicas=reps, route="key", key="tests.stages:key_mod5"),
        S("out", "Collect")), check_imports=False))


def _fork(reps=3):
    return make_plan(parse_job(job(
        S("src", "Numbers"), S("k", inputs=["src"], replicas=reps, route="key",
                               key="tests.stages:key_mod5"),
        S("b", inputs=["src"]), S("z", inputs=["k", "b"], join="zip"), S("out", "Collect")),
        check_imports=False))


# bucket counts: the hottest replica holds 700 of 1000 items at 3 replicas (b % 3 == 0), 800
# at 2 (b even), 600 at 6 (bucket 0 alone)
SKEW = {0: 600, 3: 100, 4: 50, 8: 150, 1: 50, 5: 50}


@pytest.mark.parametrize("plan_of,times", [
    (_chain, dict(src=1, k=6, out=0.1)),
    (_fork, dict(src=1, k=6, b=1, z=1)),
])
def test_skewed_shares_give_the_hottest_replicas_rate(plan_of, times):
    for reps, hot in ((3, 0.7), (2, 0.8), (6, 0.6)):
        plan = plan_of(reps)
        assert keyshare.replica_counts(SKEW, reps).max() / 1000 == pytest.approx(hot)
        res = simulate(plan, const(**times), 3000, keys={"k": SKEW})
        # the hottest replica takes `hot` of the items at 6 ms each; every other stage is faster
        assert res.throughput == pytest.approx(1 / (hot * 6e-3), rel=0.01), reps
        assert not res.even
        # its row's bound is the hottest replica's, as in a run's report, and the table's
        # bottleneck line says so
        assert res.summary["k"].bound == pytest.approx(1 / (hot * 6e-3), rel=1e-9)
        assert f"bound {1 / (hot * 6e-3):.1f} source items/s" in format_result(res, "t")
        # the even spread would have said reps / 6 ms, the source's 1 ms cap at 6 replicas
        even = simulate(plan, const(**times), 3000)
        assert even.throughput == pytest.approx(min(reps / 6e-3, 1e3), rel=0.01)
        assert even.even == {"k": "no key counts"}
        assert "k (no key counts)" in format_result(even, "t")


def test_a_replica_count_the_buckets_do_not_cover_falls_back_to_the_even_spread():
    plan = _fork(11)
    res = simulate(plan, const(src=1, k=6, b=1, z=1), 2000, keys={"k": SKEW})
    ref = simulate(plan, const(src=1, k=6, b=1, z=1), 2000)
    assert res.throughput == ref.throughput  # bit for bit the model without counts
    assert res.even == {"k": "11 replicas do not divide 2520"}
    assert "k (11 replicas do not divide 2520)" in format_result(res, "t")
    with pytest.raises(ValueError, match="keys: no stage named nope"):
        simulate(plan, const(src=1), 10, keys={"nope": SKEW})


def test_the_run_file_keeps_the_counts_and_an_old_one_reads_without_them(tmp_path):
    plan = _chain(3)
    meta = {"ranks": 1, "plan": plan.to_dict()}
    new, old = str(tmp_path / "new.h5"), str(tmp_path / "old.h5")
    runfile.write(new, meta, [None], {}, keys={"k": SKEW}, modulus=BUCKETS)
    runfile.write(old, meta, [None], {})  # as a file written before the counts existed
    assert runfile.read(new)["keys"] == {"k": SKEW}
    assert job_keys(plan, runfile.read(new)) == {"k": SKEW}
    assert runfile.read(old)["keys"] == {} and keys_from_run(old) == {}
    assert job_keys(plan, runfile.read(old)) == {} and job_keys(plan, None) == {}


# 40 of 100 items in bucket 0, one item in each of buckets 1..60: at r replicas (r | 2520) the
# hottest is replica 0 with 40 + floor(60 / r) items; bucket 0 alone needs 40% of the items
CAPPED = {0: 40, **{b: 1 for b in range(1, 61)}}


def _closed_form(r, t_src=1e-3, t_k=4e-3):
    return min(1 / t_src, 1 / ((40 + 60 // r) / 100 * t_k))


def test_advisor_weighs_a_key_routed_stage_by_its_hottest_replica():
    spec = parse_job(job(S("src", "Numbers"), S("k", route="key", key="tests.stages:key_mod5"),
                         S("out", "Collect")), check_imports=False)
    times = const(src=1, k=4, out=0.1)
    adv = advise(spec, times, budget=8, n_items=1000, keys={"k": CAPPED})
    # six replicas for k: 40 + 10 = 50% on the hottest, 2 ms per source item
    assert adv.replicas["k"] == 6
    assert adv.expected == pytest.approx(_closed_form(6), rel=0.03)
    for reps, rate in adv.steps:
        assert rate == pytest.approx(_closed_form(reps["k"]), rel=0.02), reps
    note = "\n".join(adv.notes)
    assert "one key bucket holds 40%" in note and "at least 1.6 ms per source item" in note
    assert "more than 63 replicas cannot help" in note  # the first count past 60 dividing 2520
    assert note in adv.format()
    # 13 ranks: k could take 11, which the buckets cannot tell; the next count, 12, needs 14
    adv13 = advise(spec, times, budget=13, n_items=500, keys={"k": CAPPED})
    assert all(keyshare.divides(reps["k"]) for reps, _ in adv13.steps)
    assert [reps["k"] for reps, _ in adv13.steps][-1] == 10
    # without counts: the even spread (k at 4 ms / r until the 1 ms source), said in a note
    plain = advise(spec, times, budget=8, n_items=1000)
    assert plain.expected == pytest.approx(1000, rel=0.03)
    assert any("without a measured key distribution" in n for n in plain.notes)
