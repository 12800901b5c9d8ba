"""Pipeline schedules: structure, closed-form bubble and memory, validation, deadlock, printing."""

from __future__ import annotations

import itertools

import pytest

from streampipe.schedule import (
    Action,
    DeadlockError,
    ScheduleError,
    format_grid,
    gpipe,
    interleaved_1f1b,
    one_f_one_b,
    simulate,
    validate,
)

SIZES = [(p, m) for p in (1, 2, 3, 4, 6) for m in (1, 2, 3, 4, 8, 13)]
GENERATORS = {"gpipe": gpipe, "1f1b": one_f_one_b}


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("p,m", SIZES)
def test_each_rank_runs_forward_before_backward_once(name, p, m):
    sched = GENERATORS[name](p, m)
    validate(sched)
    for r, acts in sched.items():
        assert acts[-1] == Action(r, "S")
        f = [a.microbatch for a in acts if a.kind == "F"]
        b = [a.microbatch for a in acts if a.kind == "B"]
        assert sorted(f) == sorted(b) == list(range(m))
        # backwards in ascending order: gradient sums in the serial trainer's order
        assert b == list(range(m))
        for mb in range(m):
            assert acts.index(Action(r, "F", mb)) < acts.index(Action(r, "B", mb))


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("p,m", SIZES)
@pytest.mark.parametrize("t", [1, 2])
def test_unit_time_bubble_matches_closed_form(name, p, m, t):
    # GPipe and 1F1B both idle (P-1)/(m+P-1) of the makespan 2t(m+P-1) when t_f = t_b = t
    res = simulate(GENERATORS[name](p, m), t_f=t, t_b=t)
    assert res.makespan == 2 * t * (m + p - 1)
    for r in range(p):
        assert res.idle_fraction[r] == pytest.approx((p - 1) / (m + p - 1), abs=1e-12)
        assert res.busy[r] == 2 * t * m


@pytest.mark.parametrize("p,m", SIZES)
def test_peak_live_activations(p, m):
    one = simulate(one_f_one_b(p, m)).peak_activations
    gp = simulate(gpipe(p, m)).peak_activations
    for s in range(p):
        assert one[s] <= p - s
        assert one[s] == min(m, p - s)  # exact: warm-up forwards plus the one in flight
        assert gp[s] == m


def test_unequal_times_dry_run_by_hand():
    # 2 stages, 2 microbatches, t_f=1, t_b=2, GPipe: rank1 F0 [1,2) F1 [2,3) B0 [3,5) B1 [5,7);
    # rank0 F0 [0,1) F1 [1,2) B0 [5,7) B1 [7,9)
    res = simulate(gpipe(2, 2), t_f=1, t_b=2)
    starts = {str(a): (s, e) for ev in res.events.values() for a, s, e in ev}
    assert starts == {"0F0": (0, 1), "0F1": (1, 2), "1F0": (1, 2), "1F1": (2, 3),
                      "1B0": (3, 5), "1B1": (5, 7), "0B0": (5, 7), "0B1": (7, 9),
                      "0S": (9, 9), "1S": (7, 7)}
    assert res.makespan == 9
    assert res.idle_fraction == {0: pytest.approx(3 / 9), 1: pytest.approx(3 / 9)}


def test_comm_latency_adds_per_hop():
    # a single microbatch crosses P-1 links forward and back: 2(P-1) latencies
    p, lat = 4, 0.5
    assert simulate(gpipe(p, 1), t_comm=lat).makespan == pytest.approx(2 * p + 2 * (p - 1) * lat)


@pytest.mark.parametrize("p,m,v", [(2, 2, 2), (2, 4, 2), (4, 4, 2), (4, 8, 2), (3, 6, 3),
                                   (4, 12, 3)])
def test_interleaved_valid_and_smaller_bubble(p, m, v):
    sched = interleaved_1f1b(p, m, v)
    validate(sched)
    assert {a.stage for a in sched[1] if a is not None} == {c * p + 1 for c in range(v)}
    inter = simulate(sched, t_f=1, t_b=1)  # per chunk: a stage's work split v ways
    flat = simulate(one_f_one_b(p, m), t_f=v, t_b=v)
    assert inter.busy[0] == flat.busy[0] == 2 * m * v
    if m > p:  # Megatron's bubble: (P-1) * (t_f + t_b) per chunk, v times smaller than 1F1B
        assert inter.makespan == 2 * m * v + 2 * (p - 1)
        assert inter.makespan < flat.makespan
    with pytest.raises(ScheduleError, match="n_microbatches"):
        interleaved_1f1b(p, m + 1, v)


@pytest.mark.parametrize("text", ["2F0", "1B3", "0S", "12F107"])
def test_action_string_round_trip(text):
    a = Action.parse(text)
    assert str(a) == text and Action.parse(str(a)) == a


@pytest.mark.parametrize("text", ["F0", "1X0", "1F", "0S3", "", "-1F0"])
def test_action_parse_rejects(text):
    with pytest.raises(ScheduleError, match="action"):
        Action.parse(text)


def test_all_actions_round_trip():
    for acts in one_f_one_b(3, 4).values():
        assert [Action.parse(str(a)) for a in acts] == acts


def _broken(edit):
    s = one_f_one_b(3, 3)
    edit(s)
    return s


@pytest.mark.parametrize("edit,match", [
    (lambda s: s[1].remove(Action(1, "F", 2)), r"rank 1: 1F2 is missing"),
    (lambda s: s[2].insert(0, Action(2, "B", 0)), r"rank 2 step \d+ \(2B0\): 2B0 runs twice"),
    (lambda s: s[0].pop(), r"rank 0: stage 0 has no optimizer step 0S"),
    (lambda s: s[0].insert(0, s[0].pop()), r"rank 0 step \d+ \(0F0\): comes after the step 0S"),
    (lambda s: s[1].insert(0, s[1].pop(s[1].index(Action(1, "B", 0)))),
     r"rank 1 step 0 \(1B0\): backward before its forward"),
    (lambda s: s[2].append(Action(1, "F", 5)), r"stage 1 appears on rank 1 .* and on rank 2"),
])
def test_validate_names_the_fault(edit, match):
    with pytest.raises(ScheduleError, match=match):
        validate(_broken(edit))


def test_deadlock_reported_with_step():
    # rank 0 waits for 1B0 before sending 0F1; rank 1 wants 1F1 before it runs 1B0
    sched = {0: [Action.parse(t) for t in "0F0 0B0 0F1 0B1 0S".split()],
             1: [Action.parse(t) for t in "1F0 1F1 1B0 1B1 1S".split()]}
    with pytest.raises(DeadlockError) as err:
        simulate(sched)
    msg = str(err.value)
    assert "rank 0 step 1: 0B0 waits for 1B0" in msg
    assert "rank 1 step 1: 1F1 waits for 0F1" in msg
    assert err.value.stuck == {0: (1, Action(0, "B", 0), Action(1, "B", 0)),
                               1: (1, Action(1, "F", 1), Action(0, "F", 1))}
    assert "0B0<<" in msg and "1F1<<" in msg  # the grid marks the stuck steps
    with pytest.raises(DeadlockError):
        validate(sched)


def test_timed_grid_checks_slots():
    # a hand-written unit-time grid where 1F0 shares slot 0 with 0F0: impossible in time
    grid = {0: [Action(0, "F", 0), None, Action(0, "B", 0), Action(0, "S")],
            1: [Action(1, "F", 0), Action(1, "B", 0), None, Action(1, "S")]}
    validate(grid)  # as an order it is fine
    with pytest.raises(ScheduleError, match=r"rank 1 step 0 \(1F0\): runs in slot 0"):
        validate(grid, timed=True)
    good = simulate(one_f_one_b(3, 4)).grid
    for r, s in ((0, 0), (1, 1), (2, 2)):  # the dry-run grid plus steps is itself timed-valid
        good[r].append(Action(s, "S"))
    validate(good, timed=True)


def test_simulated_grid_replays_to_itself():
    # a 2-unit backward fills two slots of the grid; keep one entry per action to replay it
    res = simulate(one_f_one_b(4, 6), t_f=1, t_b=2)
    orders = {r: [a for i, a in enumerate(row) if a is None or a != row[i - 1]] + [Action(r, "S")]
              for r, row in res.grid.items()}
    replay = simulate(orders, t_f=1, t_b=2)
    assert replay.grid == res.grid


def test_format_grid_matches_hand_written():
    text = format_grid(simulate(one_f_one_b(2, 2)))
    assert text.splitlines() == [
        "        Rank 0 Rank 1",
        "Step 0: 0F0",
        "Step 1: 0F1    1F0",
        "Step 2:        1B0",
        "Step 3: 0B0    1F1",
        "Step 4:        1B1",
        "Step 5: 0B1",
    ]


def test_fractional_times_have_no_grid():
    # rank 1: F0 [.5, 1) F1 [1, 1.5) B0 [1.5, 2.5) B1 [2.5, 3.5); rank 0: B0, B1 until 4.5
    res = simulate(gpipe(2, 2), t_f=0.5)
    assert res.grid is None and res.makespan == 4.5
    with pytest.raises(ScheduleError, match="fractional"):
        format_grid(res)


@pytest.mark.parametrize("bad,match", [
    (dict(t_f=-1), r"t_f\[0\]"), (dict(t_b=[1, 1, 1]), "t_b: needs one time per stage"),
    (dict(t_comm=float("nan")), "t_comm"),
])
def test_simulate_rejects_bad_times(bad, match):
    with pytest.raises(ScheduleError, match=match):
        simulate(gpipe(2, 2), **bad)


def test_per_stage_times_bottleneck():
    # steady state of 1F1B runs at the slowest stage's pace: makespan ~ m * (t_f + t_b) of it
    p, m = 3, 40
    res = simulate(one_f_one_b(p, m), t_f=[1, 3, 1], t_b=[1, 3, 1])
    assert m * 6 <= res.makespan <= m * 6 + 2 * (p - 1) * 3
    assert all(x >= 0 for x in res.idle_fraction.values())
    assert min(res.idle_fraction, key=res.idle_fraction.get) == 1


def test_generators_reject_bad_sizes():
    for args in itertools.product((0, 2), (0, 2)):
        if 0 in args:
            with pytest.raises(ScheduleError, match="n_"):
                gpipe(*args)
