"""A stage with items but no usable time span (a failed run's rank that shipped no stamps):
its rates and Little's-law figures are unknown, so JSON null and a dash in the text, never a
count over a floored epsilon (which printed 6 items as 6e12 items/s). The other stages keep the
figures their stamps give, checked against the synthetic run's closed form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streampipe import report, runfile
from streampipe.cli import main
from streampipe.summary import pipeline_rate, rows
from streampipe.textreport import _conclusions, table_rows
from tests.unit.test_report_units import doc_schema, synthetic_run, validate

# queue_L is not here: the synthetic sink never queues, and an area of 0 is 0 items over any span
UNKNOWN = ("window", "throughput", "lam", "L", "W", "little_residual", "queue_W",
           "queue_residual")


def stampless(stage: int, n: int = 40):
    """A 3-stage synthetic run (1, 2, 1 ms per item) whose ``stage`` kept its counts and
    integrals but lost every stamp."""
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 1, 1], n=n)
    ranks[stage]["events"] = np.empty((0, 5))
    return plan, ranks


def numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from numbers(v)
    elif isinstance(x, float | int) and not isinstance(x, bool):
        yield x


def test_stage_without_stamps_has_unknown_rates():
    plan, ranks = stampless(2)
    summary = report.summarize(plan, ranks)
    doc = json.loads(json.dumps(report.analyze(plan, ranks, summary=summary), allow_nan=False))
    validate(doc, doc_schema())
    sink = doc["stages"][2]
    assert sink["items"] == 40 and sink["events"] == 0
    assert {k: sink[k] for k in UNKNOWN} == dict.fromkeys(UNKNOWN)
    # the stages with stamps: items over first arrival to last send, from the events themselves
    for i in (0, 1):
        ev = ranks[i]["events"]
        assert doc["stages"][i]["throughput"] == pytest.approx(
            40 / (ev[:, 4].max() - ev[:, 1].min()), rel=1e-12)
    # the sink's period is unknown: so is the pipeline's throughput (it was 0 before)
    assert doc["pipeline"]["throughput"] is None and doc["pipeline"]["period"] is None
    assert doc["edges"][1]["lam"] is None and doc["edges"][1]["W"] is None
    # 40 items over ~0.1 s: no figure anywhere near a rate over an epsilon
    assert max(abs(v) for v in numbers(doc)) < 1e10
    assert not [f for f in doc["little_flags"] if f["where"] == "stage:s2"]
    # text: dashes where the JSON has null
    head, table = table_rows(summary)
    row = dict(zip(head, table[2], strict=True))
    assert [row[k] for k in ("items/s", "L", "W ms", "|L-λW|/L")] == ["-"] * 4
    assert row["items"] == "40"
    text = "\n".join(_conclusions(doc))
    assert "throughput -/s (period - ms" in text and "nan" not in text


def test_run_file_summary_and_pipeline_rate_stay_unknown(tmp_path):
    plan, ranks = stampless(1)
    summary = report.summarize(plan, ranks)
    path = tmp_path / "r.h5"
    runfile.write(str(path), {"plan": plan.to_dict(), "ranks": len(ranks), "job_name": "syn"},
                  ranks, {k: r.to_dict() for k, r in summary.items()})
    back = rows(runfile.read(str(path))["summary"])
    assert math.isnan(back["s1"].throughput) and math.isnan(back["s1"].t_first)
    # the pipeline rate spans the stages with stamps only (source first arrival to sink send)
    t0 = ranks[0]["events"][:, 1].min()
    t1 = ranks[2]["events"][:, 4].max()
    assert pipeline_rate(back) == pytest.approx(40 / (t1 - t0), rel=1e-12)
    for r in back.values():
        r.t_first = r.t_last = math.nan
    assert math.isnan(pipeline_rate(back))


def test_failed_run_report_prints_the_error_without_markup(tmp_path, capsys):
    plan, ranks = stampless(2)
    summary = report.summarize(plan, ranks)
    error = "streampipe: stage 's1' (replica 0 of 1) on rank 1 failed: KeyError: '[x]'"
    path = tmp_path / "f.h5"
    runfile.write(str(path), {"plan": plan.to_dict(), "ranks": len(ranks), "job_name": "syn",
                              "status": "failed", "error": error},
                  ranks, {k: r.to_dict() for k, r in summary.items()})
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"error: {error}" in out  # the message exactly, its own brackets included
    assert "[red]" not in out and "[/]" not in out
    line = next(x for x in out.splitlines() if x.startswith("│ s2"))
    assert line.count(" - ") >= 4 and "e+" not in out
