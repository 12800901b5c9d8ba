"""Graph jobs without MPI: validation errors name the field, the plan's edges and routes, the
single-process evaluation of forks and joins against hand-computed answers, key routing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streampipe.job import JobError, parse_job
from streampipe.plan import make_plan
from streampipe.routing import key_replica
from streampipe.serial import run_serial
from streampipe.zipper import Zipper


def job(*stages, **pipeline):
    return {"pipeline": dict(pipeline), "stages": [dict(s) for s in stages]}


def S(name, uses, **kw):
    return {"name": name, "uses": f"tests.stages:{uses}", **kw}


FORK_JOIN = [S("src", "Numbers", params={"n": 6}), S("sq", "Square", inputs=["src"]),
             S("id", "Identity", inputs=["src"]), S("both", "Identity", inputs=["sq", "id"]),
             S("out", "Collect")]


# ----------------------------------------------------------------------------- bad graphs
@pytest.mark.parametrize("stages,pattern", [
    ([S("src", "Numbers"), S("a", "Square", inputs=["nope"]), S("out", "Collect")],
     r"stages\[1\]\.inputs: no stage named 'nope'"),
    ([S("src", "Numbers"), S("a", "Square", inputs=["src", "b"]),
      S("b", "Square", inputs=["a"]), S("out", "Collect", inputs=["b"])],
     r"stages\[\d\]\.inputs: the stages form a cycle \((a -> b -> a|b -> a -> b)\); only "
     r"feedback_to may point back"),
    ([S("src", "Numbers"), S("out", "Collect"), S("a", "Square", inputs=["out"]),
      S("out2", "Collect")], r"stages\[2\]\.inputs: 'out' is a Sink \(Collect\) and cannot "
                             r"feed 'a'"),
    ([S("s1", "Numbers"), S("s2", "Numbers"), S("a", "Square", inputs=["s1"]),
      S("b", "Square", inputs=["s2"]), S("z", "Identity", inputs=["a", "b"], join="zip"),
      S("out", "Collect")],
     r"stages\[4\]\.join: zip pairs the items of one source item, so its inputs must come from "
     r"the same single source; got 'a' from s1, 'b' from s2"),
    ([S("src", "Numbers"), S("a", "Square", inputs=["src", "src"]), S("out", "Collect")],
     r"stages\[1\]\.inputs: 'src' is named twice"),
    ([S("src", "Numbers"), S("a", "Square", inputs=[]), S("out", "Collect")],
     r"stages\[1\]\.inputs: 'a' \(Square\) reads nothing; only a Source starts the graph"),
    ([S("src", "Numbers"), S("src2", "Numbers", inputs=["src"]), S("out", "Collect")],
     r"stages\[1\]\.inputs: 'src2' is a Source \(Numbers\): it reads nothing"),
    ([S("src", "Numbers"), S("a", "Square"), S("b", "Square", inputs=["src"]),
      S("out", "Collect", inputs=["b"])],
     r"stages\[1\]: 'a' \(Square\) feeds no stage; only a Sink ends the graph"),
    ([S("src", "Numbers"), S("a", "Square", join="zip"), S("out", "Collect")],
     r"stages\[1\]\.join: 'a' has one input; join needs several"),
    ([S("src", "Numbers"), S("a", "Square", inputs=["src"]), S("b", "Square", inputs=["src"]),
      S("j", "Identity", inputs=["a", "b"], join="cross"), S("out", "Collect")],
     r"stages\[3\]\.join: must be one of merge, zip, got 'cross'"),
    ([S("src", "Numbers"), S("a", "Square", route="key"), S("out", "Collect")],
     r'stages\[1\]\.key: route = "key" needs key = "module:function"'),
    ([S("src", "Numbers"), S("a", "Square", route="key", key="tests.stages:nokey"),
      S("out", "Collect")], r"stages\[1\]\.key: module 'tests\.stages' has no attribute 'nokey'"),
    ([S("src", "Numbers"), S("a", "Square", key="tests.stages:parity"), S("out", "Collect")],
     r'stages\[1\]\.key: only used with route = "key"'),
    ([S("src", "Numbers"), S("a", "Square", route="hash"), S("out", "Collect")],
     r"stages\[1\]\.route: must be one of balance, key, got 'hash'"),
    ([S("src", "Numbers"), S("a", "Square", inputs=["src"]), S("b", "Square", inputs=["src"]),
      S("z", "Identity", inputs=["a", "b"], join="zip", replicas=2, route="key",
        key="tests.stages:parity"), S("out", "Collect")],
     r'stages\[3\]\.route: a zip stage routes by source item'),
    ([S("src", "Numbers"), S("a", "Square", inputs="src"), S("out", "Collect")],
     r"stages\[1\]\.inputs: expected list"),
])
def test_bad_graphs_name_the_field(stages, pattern):
    with pytest.raises(JobError, match=pattern):
        parse_job(job(*stages))


def test_zip_needs_an_ordered_pipeline():
    stages = [S("src", "Numbers"), S("a", "Square", inputs=["src"]),
              S("b", "Identity", inputs=["src"]), S("z", "Identity", inputs=["a", "b"],
                                                     join="zip"), S("out", "Collect")]
    with pytest.raises(JobError, match=r"stages\[3\]\.join: zip needs pipeline\.ordered = true"):
        parse_job(job(*stages, ordered=False))


def test_feedback_must_point_upstream_in_a_graph():
    stages = [S("src", "Numbers"), S("a", "Square", inputs=["src"]),
              S("b", "Square", inputs=["src"], feedback_to="a"),
              S("j", "Identity", inputs=["a", "b"]), S("out", "Collect")]
    with pytest.raises(JobError, match=r"stages\[2\]\.feedback_to: must name an earlier stage"):
        parse_job(job(*stages))


# ----------------------------------------------------------------------------- the plan
def test_plan_of_a_fork_and_join():
    plan = make_plan(parse_job(job(*FORK_JOIN)))
    assert [(plan.stages[e.src].name, plan.stages[e.dst].name, e.port) for e in plan.edges] == [
        ("src", "sq", 0), ("src", "id", 0), ("sq", "both", 0), ("id", "both", 1),
        ("both", "out", 0)]
    assert [s.kind for s in plan.stages] == ["source", "stage", "stage", "stage", "sink"]
    assert plan.stages[3].join == "merge" and plan.merge_kind(3) == "heads"
    role = plan.role(0)  # the source sends on two edges: a broadcast to both branches
    assert [e for e, _ in role.outputs] == [0, 1]
    text = plan.format()
    assert "sq + id -> both  (join merge, 1 replica)" in text
    assert "src             source         0  0                     8  -> sq, id" in text


def test_a_linear_job_is_a_chain_with_one_edge_per_stage():
    spec = parse_job(job(S("src", "Numbers"), S("a", "Square", replicas=2), S("out", "Collect")))
    plan = make_plan(spec)
    assert plan.is_chain and [(e.src, e.dst) for e in plan.edges] == [(0, 1), (1, 2)]
    assert "graph:" not in plan.format()


@pytest.mark.parametrize("stages,pipeline,checkpoint,want", [
    # a plain ordered chain: every receiver has one sender, whose records arrive in order
    ([S("src", "Numbers"), S("a", "Square"), S("out", "Collect")], {}, False,
     [False, False, False]),
    # the sink merges 2 replicas by position; "a" can only say how far it got if src says so
    ([S("src", "Numbers"), S("a", "Square", replicas=2), S("out", "Collect")], {}, False,
     [True, True, True]),
    # ... but not once the pipeline is unordered (arrival order)
    ([S("src", "Numbers"), S("a", "Square", replicas=2), S("out", "Collect")],
     {"ordered": False}, False, [False, False, False]),
    # a checkpointing sink needs its input's position for the high-water mark
    ([S("src", "Numbers"), S("a", "Square"), S("out", "Collect")], {}, True,
     [True, True, True]),
    # a join merges its inputs by position; the sink after it has one sender and reads none
    (FORK_JOIN, {}, False, [True, True, True, True, False]),
])
def test_progress_marks_go_only_where_a_stage_reads_them(stages, pipeline, checkpoint, want):
    plan = make_plan(parse_job(job(*stages, **pipeline), check_imports=False))
    assert plan.reads_marks(checkpoint) == want


# ----------------------------------------------------------------------------- one process
def test_fork_then_merge_join_gives_each_item_from_each_branch_in_input_order():
    got = run_serial(parse_job(job(*FORK_JOIN)))
    assert got == [v for x in range(6) for v in (x * x, x)]


def test_zip_pairs_the_branches_and_drops_what_one_side_dropped():
    stages = [S("src", "Numbers", params={"n": 10}), S("sq", "Square", inputs=["src"]),
              S("odd", "DropAt", inputs=["src"], params={"at": 4}),
              S("z", "Identity", inputs=["sq", "odd"], join="zip"), S("out", "Collect")]
    assert run_serial(parse_job(job(*stages))) == [(x * x, x) for x in range(10) if x != 4]


def test_several_sources_interleave_by_seq_and_several_sinks_give_a_dict():
    stages = [S("a", "Numbers", params={"n": 3}), S("b", "Numbers", params={"n": 5}),
              S("m", "Identity", inputs=["a", "b"]), S("left", "Collect", inputs=["m"]),
              S("right", "Checksum", inputs=["b"])]
    got = run_serial(parse_job(job(*stages)))
    # item i of source s has seq 2i + s: a0 b0 a1 b1 a2 b2 b3 b4
    assert got == {"left": [0, 0, 1, 1, 2, 2, 3, 4], "right": {"n": 5, "sum": 10}}


def test_merge_join_tells_the_stage_which_input_an_item_came_from():
    stages = [S("src", "Numbers", params={"n": 3}), S("x", "Identity", inputs=["src"]),
              S("y", "Square", inputs=["src"]), S("tag", "TagInput", inputs=["x", "y"]),
              S("out", "Collect")]
    assert run_serial(parse_job(job(*stages))) == [
        ("x", 0), ("y", 0), ("x", 1), ("y", 1), ("x", 2), ("y", 4)]


def test_zipper_matches_by_key_rest_and_waits_for_completion():
    z = Zipper(2)
    out = []
    z.add([(0, 0), (0, 1), (1, 0, 0), (1, 0, 1)], ["a", "b", "c", "d"], out)
    assert out == [((0,), ("a", "b"))]  # seq 0 is complete once seq 1 starts
    z.add([(1, 1, 1)], ["e"], out)
    z.complete((1, 1, 5), out)  # input 1 may still send (1, 1, 7): not complete
    assert len(out) == 1
    z.complete((2,), out)
    assert out[1:] == [((1, 1), ("d", "e"))]  # (1, 0) had no partner on input 1


# ----------------------------------------------------------------------------- routing
@given(st.one_of(st.integers(), st.text(), st.binary(), st.tuples(st.integers(), st.text())),
       st.integers(1, 9))
def test_key_replica_is_stable_and_in_range(key, n):
    r = key_replica(key, n)
    assert 0 <= r < n and r == key_replica(key, n)


def test_key_replica_is_pinned():
    # the documented encoding: a changed hash would move keys between replicas across versions
    import zlib

    assert key_replica(42, 1000) == zlib.crc32(b"i42") % 1000
    assert key_replica(("x", 1), 1000) == zlib.crc32(b"(2,sx,i1)") % 1000
    with pytest.raises(TypeError, match="a routing key must be"):
        key_replica([1, 2], 3)


# ----------------------------------------------------------------------------- report, sim
def test_graph_bound_weighs_each_stage_by_the_items_it_sees():
    from streampipe.report import bottleneck, graph_bound
    from streampipe.summary import StageRow

    # 100 source items; a merge join sees 200 (both branches); a fan-out doubles a branch
    rows = {"src": StageRow(kind="source", items=100, cost=1e-3),
            "a": StageRow(kind="stage", items=100, cost=4e-3, replicas=2),  # 2 ms / item
            "b": StageRow(kind="stage", items=100, cost=1e-3),  # 1 ms
            "j": StageRow(kind="stage", items=200, cost=1.5e-3),  # 2 x 1.5 = 3 ms: the bound
            "out": StageRow(kind="sink", items=200, cost=0.1e-3)}
    gb = graph_bound(rows)
    assert gb["stage"] == "j" and gb["period"] == pytest.approx(3e-3)
    assert gb["per_stage"]["a"] == pytest.approx(2e-3)
    assert "x 2 items per source item / 1 replica = 3.000 ms" in gb["reason"]
    assert "graph bound at 'j'" in bottleneck(rows, gb)["reason"]


def test_checkpoint_on_a_graph_needs_order_and_single_sinks():
    # one sink after a fork and a join: its ordered merge gives the high-water mark; a second
    # sink keeps a mark of its own
    parse_job(job(*FORK_JOIN, checkpoint=True, ordered=True), check_imports=False)
    two_sinks = [*FORK_JOIN, S("more", "Collect", inputs=["sq"])]
    parse_job(job(*two_sinks, checkpoint=True, ordered=True), check_imports=False)
    with pytest.raises(JobError, match=r"pipeline\.checkpoint: needs pipeline\.ordered = true"):
        parse_job(job(*two_sinks, checkpoint=True, ordered=False), check_imports=False)
    two_replicas = [*FORK_JOIN, S("more", "Collect", inputs=["sq"], replicas=2)]
    with pytest.raises(JobError, match=r"stages\[5\]\.replicas: pipeline\.checkpoint needs one "
                                       r"replica of sink 'more'"):
        parse_job(job(*two_replicas, checkpoint=True, ordered=True), check_imports=False)


def test_trace_flows_follow_the_graph_edges():
    import numpy as np

    from streampipe.events import WIDTH
    from streampipe.trace import trace_events

    plan = make_plan(parse_job(job(*FORK_JOIN)))
    ranks = []
    for r in range(plan.size):  # one item (seq 0) on every rank
        ev = np.zeros((1, WIDTH))
        ev[0, 1:5] = [r, r + 0.1, r + 0.5, r + 0.6]
        ranks.append({"wall0": 0.0, "events": ev})
    flows = [e for e in trace_events(plan, ranks) if e["ph"] == "f"]
    # src -> sq, src -> id, sq -> both, id -> both, both -> out
    assert sorted(e["tid"] for e in flows) == [1, 2, 3, 3, 4]
