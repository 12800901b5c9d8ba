"""The report's replicas advice is a configuration the job loader accepts: the advised replica
count, applied with the loader's own ``--set`` path, loads; a stage the loader would refuse to
replicate (an ordered pipeline's source, a checkpointed pipeline's sink) gets advice that adds
no replica. The loader is the oracle, not a copy of its rules."""

from __future__ import annotations

import pytest

from streampipe import report
from streampipe.advisor import advise
from streampipe.job import JobError, load_job
from streampipe.plan import make_plan
from streampipe.sim import Dist
from tests.unit.test_report_units import synthetic_run

JOB = """
[pipeline]
name = "adv"
ordered = {ordered}
checkpoint = {checkpoint}
[[stages]]
name = "s0"
uses = "tests.stages:Numbers"
[[stages]]
name = "s1"
uses = "tests.stages:Sleep"
[[stages]]
name = "s2"
uses = "tests.stages:Sleep"
[[stages]]
name = "s3"
uses = "tests.stages_durable:DurableFile"
[stages.params]
path = "unused.txt"
"""
LAYOUTS = [(True, True), (True, False), (False, False)]  # checkpoint needs ordered


def job_file(tmp_path, ordered: bool, checkpoint: bool):
    path = tmp_path / f"adv-{ordered}-{checkpoint}.toml"
    path.write_text(JOB.format(ordered=str(ordered).lower(), checkpoint=str(checkpoint).lower()))
    return path


def loads(path, stage: str, replicas: int) -> bool:
    try:
        load_job(path, [f"stages.{stage}.replicas={replicas}"])
    except JobError:
        return False
    return True


@pytest.mark.parametrize("ordered,checkpoint", LAYOUTS)
def test_fixed_stages_are_the_ones_the_loader_refuses_or_the_sink(tmp_path, ordered, checkpoint):
    path = job_file(tmp_path, ordered, checkpoint)
    fixed = report.fixed_replicas(make_plan(load_job(path)))
    refused = {s for s in ("s0", "s1", "s2", "s3") if not loads(path, s, 2)}
    # everything the loader refuses is fixed; beyond that only the sink (the advisor's rule:
    # its result() is the job's result)
    assert refused <= set(fixed) and set(fixed) - refused <= {"s3"}
    assert ("s0" in refused) == ordered and ("s3" in refused) == checkpoint


@pytest.mark.parametrize("ordered,checkpoint", LAYOUTS)
@pytest.mark.parametrize("slow", [0, 1, 2, 3])
def test_report_advice_loads(tmp_path, ordered, checkpoint, slow):
    path = job_file(tmp_path, ordered, checkpoint)
    times = [2e-3, 1e-3, 1.5e-3, 1e-3]
    times[slow] = 8e-3
    plan = make_plan(load_job(path))
    syn_plan, ranks = synthetic_run(times, [1, 1, 1, 1], n=60)
    assert [s.ranks for s in plan.stages] == [s.ranks for s in syn_plan.stages]
    doc = report.analyze(plan, ranks)
    assert doc["bottleneck"]["stage"] == f"s{slow}"
    adv = next(a for a in doc["advice"] if a["kind"] == "replicas")
    stage = adv["stage"]
    if adv["add_replicas"] is None:
        assert stage in report.fixed_replicas(plan)
        assert "more replicas are not an option" in adv["text"]
    else:
        assert loads(path, stage, 1 + adv["add_replicas"]), adv["text"]
        # to reach the next bound, 2 ms (1.5 ms where the source is the slow one), the 8 ms
        # stage needs ceil(8 / 2) = 4 replicas, 3 more (ceil(8 / 1.5) = 6, 5 more)
        assert adv["add_replicas"] == (5 if slow == 0 else 3)
    if ordered and slow == 0:  # what the report used to advise: the loader refuses it
        assert adv["add_replicas"] is None and not loads(path, "s0", 2)
    if slow == 0 and not ordered:
        assert "split the stream by ctx.replica" in adv["text"]


@pytest.mark.parametrize("ordered,checkpoint", LAYOUTS)
def test_simulate_advise_overrides_load(tmp_path, ordered, checkpoint):
    path = job_file(tmp_path, ordered, checkpoint)
    spec = load_job(path)
    times = {"s0": Dist("const", 8e-3), "s1": Dist("const", 4e-3), "s3": Dist("const", 9e-3)}
    adv = advise(spec, times, budget=8, n_items=200)
    load_job(path, adv.overrides())  # raises JobError if the advice cannot be followed
    assert adv.replicas["s3"] == 1 and (adv.replicas["s0"] == 1 or not ordered)
