"""The live view's arithmetic and files, on synthetic snapshots (no MPI): per-second rates and
time split from counter differences, the bottleneck, the JSON lines a watcher follows, and the
series for the run file."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from streampipe import live
from streampipe.job import parse_job
from streampipe.metrics import STATES, Recorder
from streampipe.plan import make_plan

JOB = {"pipeline": {"name": "lv"},
       "stages": [{"name": "src", "uses": "tests.stages:Numbers"},
                  {"name": "work", "uses": "tests.stages:Square", "replicas": 2},
                  {"name": "sink", "uses": "tests.stages:Collect"}]}


def snap(wall: float, items: int, split: dict[str, float], held: int = 0) -> tuple:
    return (wall, items, items, [split.get(s, 0.0) for s in STATES], held)


def test_rates_and_time_split_over_the_last_second(tmp_path):
    plan = make_plan(parse_job(JOB))
    path = tmp_path / "r.h5.live.jsonl"
    c = live.LiveCollector(plan, path, t0=100.0)
    # ranks: 0 src, 1-2 work, 3 sink; second 1 then second 2 (cumulative counters)
    for r, items, split in ((0, 50, {"busy": 0.1, "blocked": 0.9}),
                            (1, 25, {"busy": 1.0}), (2, 25, {"busy": 0.9, "starved": 0.1}),
                            (3, 50, {"starved": 1.0})):
        c.receive(r, snap(101.0, items, split, held=2))
    first = c.emit(101.0)
    for r, items, split in ((0, 90, {"busy": 0.3, "blocked": 1.7}),
                            (1, 45, {"busy": 2.0}), (2, 45, {"busy": 1.8, "starved": 0.2}),
                            (3, 90, {"starved": 1.5, "busy": 0.5})):
        c.receive(r, snap(102.0, items, split))
    second = c.emit(102.0)
    assert first["stages"]["work"]["rate"] == pytest.approx(50.0)  # 25 + 25 in the first second
    w, s = second["stages"]["work"], second["stages"]["src"]
    assert w["rate"] == pytest.approx(40.0) and w["items"] == 90  # the two replicas' roots
    assert w["busy"] == pytest.approx((1.0 + 0.9) / 2) and w["starved"] == pytest.approx(0.05)
    assert s["blocked"] == pytest.approx(0.8) and second["stages"]["sink"]["busy"] == \
        pytest.approx(0.5)
    assert first["stages"]["work"]["held"] == 4 and second["bottleneck"] == "work"
    c.emit(102.5)  # the last one (finish_run emits it before writing the series)
    c.end("ok", 102.6)
    got = list(live.follow(path))
    assert [r.get("end", False) for r in got] == [False, False, False, True]
    assert got[1] == json.loads(json.dumps(second)) and got[-1]["status"] == "ok"
    ser = c.series()
    assert list(ser["time"]) == [1.0, 2.0, 2.5] and list(ser["work.rate"][:2]) == [50.0, 40.0]


def test_a_rank_not_heard_from_is_left_out_not_zero():
    plan = make_plan(parse_job(JOB))
    c = live.LiveCollector(plan, None, t0=0.0)
    c.receive(1, snap(1.0, 10, {"busy": 1.0}))
    rec = c.emit(1.0)
    assert set(rec["stages"]) == {"work"} and rec["stages"]["work"]["busy"] == 1.0
    assert np.isnan(c.series()["src.rate"][0])


def test_snapshot_includes_the_state_the_rank_is_in():
    rec = Recorder(event_limit=0)
    rec.enter(1)  # starved from t0 + x on
    t = rec.t_state + 0.5
    wall, _, _, totals, _ = live.snapshot(rec, t)
    assert totals[1] == pytest.approx(0.5) and sum(totals) == pytest.approx(t - rec.t0)
    assert wall == pytest.approx(rec.wall0 + t - rec.t0)


def test_follow_waits_for_a_file_that_grows(tmp_path):
    path = tmp_path / "x.jsonl"
    got = []
    th = threading.Thread(target=lambda: got.extend(live.follow(path, poll=0.01)))
    th.start()
    with open(path, "w") as f:
        f.write(json.dumps({"t": 1, "stages": {}, "bottleneck": None}) + "\n")
        f.flush()
        f.write('{"t": 2, "end": true, "status": "failed"}\n')
    th.join(5)
    assert not th.is_alive() and [r["t"] for r in got] == [1, 2]


def test_watch_prints_one_line_per_record_without_a_terminal(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    rec = {"t": 3, "stages": {"work": {"items": 9, "rate": 4.5, "held": 1,
                                       **{s: 0.0 for s in STATES}, "busy": 0.75}},
           "bottleneck": "work"}
    path.write_text(json.dumps(rec) + "\n" + '{"t": 4, "end": true, "status": "ok"}\n')
    assert live.watch(path) == "ok"
    assert capsys.readouterr().out.strip() == "t=3s work 4.5/s busy 75%; bottleneck work"
