"""The simulator and the advisor on graphs (no MPI): on a chain the graph recurrence equals the
chain recurrence to rounding; forks, merge and zip joins and several sources give the closed-form
rate of their costliest stage per source item."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streampipe.advisor import advise
from streampipe.job import parse_job
from streampipe.plan import make_plan
from streampipe.sim import Dist, Flow, format_result, simulate
from streampipe.simgraph import per_round, run_graph
from tests.unit.test_sim import chain


def job(*stages, **pipeline):
    return {"pipeline": dict(pipeline), "stages": [dict(s) for s in stages]}


def S(name, uses="Identity", **kw):
    return {"name": name, "uses": f"tests.stages:{uses}", **kw}


def const(**ms):
    return {k: Dist("const", v * 1e-3) for k, v in ms.items()}


def fork_join(join="merge", **kw):
    return make_plan(parse_job(job(
        S("src", "Numbers"), S("a", inputs=["src"], replicas=kw.get("a_reps", 2)),
        S("b", inputs=["src"]), S("j", inputs=["a", "b"], join=join), S("out", "Collect")),
        check_imports=False))


@pytest.mark.parametrize("reps,cap", [([1] * 5, 1), ([1] * 5, 3), ([1, 3, 1, 1], 4),
                                      ([1, 2, 3, 1], 2)])
def test_on_a_chain_the_graph_recurrence_is_the_chain_recurrence(reps, cap):
    # two algorithms for one model; random times drawn in the same order: every event time
    # agrees to rounding (1e-12 s over 3000 items)
    plan = chain(reps, cap)
    stages = [dataclasses.replace(s, inputs=(s.index - 1,) if s.index else ())
              for s in plan.stages]
    dists = [Dist("exp", a) for a in (1e-3, 4e-3, 2e-3, 3e-3, 0.5e-3)[:len(reps)]]
    ref = simulate(plan, dists, 3000, seed=3, keep_events=True)
    got = run_graph(stages, dists, 3000, np.random.default_rng(3), 512, 0.0, True)
    for s in plan.stages:
        assert np.abs(got.events[s.name] - ref.events[s.name]).max() < 1e-12, s.name


@pytest.mark.parametrize("join,times,period", [
    # a: 4 ms on 2 replicas = 2 ms; b: 3 ms; a merge join sees 2 items per source item
    ("merge", dict(src=1, a=4, b=3, j=1, out=0.5), 3e-3),  # b
    ("merge", dict(src=1, a=4, b=3, j=2, out=0.5), 4e-3),  # j: 2 x 2 ms
    ("zip", dict(src=1, a=4, b=3, j=2, out=0.5), 3e-3),  # a zip sees one tuple: b
    ("merge", dict(src=1, a=7, b=1, j=1, out=1), 3.5e-3),  # a: 7 ms / 2 replicas
])
def test_fork_and_join_give_the_rate_of_the_costliest_stage_per_source_item(join, times, period):
    plan = fork_join(join)
    res = simulate(plan, const(**times), 3000)
    # constant times: the fill/drain transient is a few items of 3000 (well under 1%)
    assert res.throughput == pytest.approx(1 / period, rel=0.01)
    n_join = 2 if join == "merge" else 1
    assert res.summary["j"].items == res.summary["out"].items == 3000 * n_join
    assert res.summary["a"].items == res.summary["b"].items == 3000
    assert f"{1e3 * period:.3g} ms per source item" in format_result(res, "t")


def test_two_sources_merged_and_a_second_sink():
    plan = make_plan(parse_job(job(
        S("x", "Numbers"), S("y", "Numbers"), S("m", inputs=["x", "y"]),
        S("left", "Collect", inputs=["m"]), S("right", "Collect", inputs=["y"])),
        check_imports=False))
    assert per_round(plan.stages) == [1, 1, 2, 2, 1]
    res = simulate(plan, const(x=1, y=0.5, m=1.5, left=0.2, right=0.2), 2000)
    assert res.throughput == pytest.approx(1 / 3e-3, rel=0.01)  # m: 2 x 1.5 ms
    assert res.summary["m"].busy == pytest.approx(1.0, abs=0.01)


def test_a_slow_branch_holds_the_fork_back_through_its_credits():
    # the source puts each item to both branches side by side: with capacity 1 the fast branch
    # can run at most a credit ahead of the slow one, so everything runs at the slow one's rate
    # and the source is blocked most of the time
    plan = make_plan(parse_job(job(
        S("src", "Numbers"), S("fast", inputs=["src"]), S("slow", inputs=["src"]),
        S("f_out", "Collect", inputs=["fast"]), S("s_out", "Collect", inputs=["slow"]),
        capacity=1), check_imports=False))
    res = simulate(plan, const(src=1, fast=1, slow=5), 1000)
    assert res.summary["fast"].throughput == pytest.approx(200, rel=0.02)
    assert res.summary["src"].blocked == pytest.approx(0.8, abs=0.02)


def test_key_routing_spreads_the_rounds_over_the_replicas():
    # the key function's values are not known before a run: items spread evenly by position
    plan = make_plan(parse_job(job(
        S("src", "Numbers"), S("k", inputs=["src"], replicas=3, route="key",
                               key="tests.stages:key_mod5"),
        S("b", inputs=["src"]), S("z", inputs=["k", "b"], join="zip"), S("out", "Collect")),
        check_imports=False))
    res = simulate(plan, const(src=1, k=6, b=1, z=1), 3000)
    assert res.throughput == pytest.approx(500, rel=0.01)  # 6 ms / 3 replicas


def test_graph_refuses_flows_it_does_not_model():
    with pytest.raises(ValueError, match=r"simulate: stage 'a' x2 on a graph"):
        simulate(fork_join(), const(a=1), 10, flow={"a": Flow(2.0)})


def test_advisor_weighs_a_merge_join_by_the_items_it_sees():
    spec = parse_job(job(
        S("src", "Numbers"), S("a", inputs=["src"]), S("b", inputs=["src"]),
        S("j", inputs=["a", "b"]), S("out", "Collect")), check_imports=False)
    times = const(src=0.5, a=4, b=1, j=1.5, out=0.1)
    adv = advise(spec, times, budget=7)
    # per source item: a 4 ms, j 2 x 1.5 = 3 ms. Two more ranks: a=2 and j=2 gives 2 ms per
    # source item (500/s); counting j per item (1.5 ms) would give a third replica to a and
    # leave j at 3 ms (333/s)
    assert adv.replicas["a"] == 2 and adv.replicas["j"] == 2
    assert adv.expected == pytest.approx(500, rel=0.02)
    assert adv.replicas["src"] == adv.replicas["out"] == 1
