"""``simulate JOB --from RUN.h5`` refuses a run file of another job (its name, or its stages)
with one line naming what differs, before simulating anything; a run of the job itself is
replayed and its measured rate printed."""

from __future__ import annotations

import pytest

from streampipe import report, runfile
from streampipe.cli import main
from tests.unit.test_report_units import synthetic_run

JOB = """
[pipeline]
name = "{name}"
[[stages]]
name = "s0"
uses = "tests.stages:Numbers"
[[stages]]
name = "{mid}"
uses = "tests.stages:Sleep"
[[stages]]
name = "s2"
uses = "tests.stages:Collect"
"""


@pytest.fixture
def run_file(tmp_path):
    """A run of job 'syn' with stages s0, s1, s2 (1, 2, 1 ms per item, 50 items), and the rate
    the replay compares with: items over first arrival to last send, from the stamps."""
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 1, 1], n=50)
    summary = report.summarize(plan, ranks)
    path = tmp_path / "syn.h5"
    runfile.write(str(path), {"plan": plan.to_dict(), "ranks": len(ranks), "job_name": "syn",
                              "status": "ok"},
                  ranks, {k: r.to_dict() for k, r in summary.items()})
    return path, 50 / (ranks[2]["events"][:, 4].max() - ranks[0]["events"][:, 1].min())


def simulate(tmp_path, run_file, capsys, name="syn", mid="s1"):
    job = tmp_path / f"{name}-{mid}.toml"
    job.write_text(JOB.format(name=name, mid=mid))
    rc = main(["simulate", str(job), "--from", str(run_file)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_jobs_own_run_is_replayed(tmp_path, run_file, capsys):
    path, rate = run_file
    rc, out, err = simulate(tmp_path, path, capsys)
    assert rc == 0 and err == ""
    assert "simulated 'syn'" in out and f"measured {rate:.1f} items/s" in out


def test_another_jobs_run_is_refused(tmp_path, run_file, capsys):
    rc, out, err = simulate(tmp_path, run_file[0], capsys, name="chain")
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "it is a run of job 'syn', not 'chain'" in err


def test_other_stages_are_refused_naming_them(tmp_path, run_file, capsys):
    rc, out, err = simulate(tmp_path, run_file[0], capsys, mid="square")
    assert rc == 2 and out == "" and err.strip().count("\n") == 0
    assert "not in the job: s1" in err and "not in the run file: square" in err
    assert "run of job" not in err  # the name matched: only the stages are named


def test_stages_in_another_order_are_refused(tmp_path, capsys):
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 1, 1], n=5)
    d = plan.to_dict()
    d["stages"][0]["name"], d["stages"][1]["name"] = "s1", "s0"
    path = tmp_path / "swapped.h5"
    runfile.write(str(path), {"plan": d, "ranks": len(ranks), "job_name": "syn"}, ranks, {})
    rc, _, err = simulate(tmp_path, path, capsys)
    assert rc == 2 and "in another order than the job's s0, s1, s2" in err
