"""Plans and summary rows as plain data: what a run file stores reads back to the same objects."""

from __future__ import annotations

import json

from streampipe.job import parse_job
from streampipe.plan import Plan, make_plan
from streampipe.summary import StageRow

JOB = {
    "pipeline": {"name": "p", "capacity": 3, "ordered": True, "batch": 7},
    "stages": [
        {"name": "src", "uses": "tests.stages:Numbers"},
        {"name": "a", "uses": "tests.stages:Square", "replicas": 2, "timeout": 4.5},
        {"name": "b", "uses": "tests.stages:Square", "replicas": 3, "capacity": 9,
         "feedback_to": "a"},
        {"name": "sink", "uses": "tests.stages:Collect"},
    ],
}


def test_plan_round_trips_through_json():
    plan = make_plan(parse_job(JOB), start_seq=5)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan  # dataclass equality: every stage, group tuple, edge and setting
    assert again.role(4) == plan.role(4) and again.stage_of(5).name == "b"


def test_plan_from_older_and_training_run_files():
    # an older run file has no name and no edges (a chain); a training one adds its own keys
    full = make_plan(parse_job(JOB))
    d = full.to_dict()
    del d["name"], d["edges"]
    d["train"] = {"clients": 2}
    for st in d["stages"]:
        st["future_field"] = 1
        del st["inputs"]
    plan = Plan.from_dict(d)
    assert [s.name for s in plan.stages] == ["src", "a", "b", "sink"]
    assert plan.edges == full.edges and plan.stages == full.stages
    assert plan.stages[2].groups == ((3,), (4,), (5,))


def test_stage_row_round_trips_and_keeps_unknown_fields():
    row = StageRow(kind="stage", replicas=2, items=10, busy=0.5, edges={"b": {"L": 1.0,
                                                                            "peak": 2}},
                   extra={"step_time": 0.25})
    d = row.to_dict()
    assert d["step_time"] == 0.25 and "extra" not in d
    assert StageRow.from_dict(d) == row
