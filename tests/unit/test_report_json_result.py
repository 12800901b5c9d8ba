"""``streampipe report --json`` carries the job's result from the run file (docs/diagnostics.md):
what the sink returned, as JSON, and null for a run without one."""

from __future__ import annotations

import json
import math

from streampipe import report, runfile
from streampipe.cli import main
from tests.unit.test_report_units import doc_schema, synthetic_run, validate


def report_json(tmp_path, capsys, **meta):
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 1, 1], n=20)
    summary = report.summarize(plan, ranks)
    path = tmp_path / "r.h5"
    runfile.write(str(path), {"plan": plan.to_dict(), "ranks": len(ranks), "job_name": "syn",
                              "status": "ok", **meta},
                  ranks, {k: r.to_dict() for k, r in summary.items()})
    assert main(["report", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate(doc, doc_schema())
    return doc


def test_json_report_has_the_runs_result(tmp_path, capsys):
    result = {"n": 20, "levels": [{"confidence": 0.99, "var": 1.5, "var_se": 0.25}],
              "big": 2**70, "hole": math.nan}
    doc = report_json(tmp_path, capsys, result=result)
    # as written, NaN as null (the document's rule for non-finite numbers)
    assert doc["result"] == {**result, "hole": None}


def test_json_report_result_is_null_without_one(tmp_path, capsys):
    assert report_json(tmp_path, capsys, result=None)["result"] is None
    assert report_json(tmp_path, capsys)["result"] is None
