"""The end of a run with per-rank shards (no MPI): every rank writes its events to its own
shard and hands rank 0 a reduction; rank 0's summary, run file and printed report must equal
the ones made from every rank's full record (the collection before shards), and a run file with
more events than the audit reads back says where the audit is."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from streampipe import finish, runfile
from streampipe.plan import Plan
from streampipe.report import analyze, summarize
from streampipe.textreport import short_text
from tests.unit.test_report_units import synthetic_run


def _run(tmp_path):
    plan, full = synthetic_run([1e-4, 2e-3, 8e-3, 3e-3, 1e-4], [1, 2, 1, 1, 1], n=300)
    for r, d in enumerate(full):
        d.update(host="h", rank=r, stage_index=plan.stage_of(r).index, group_rank=0)
    out = str(tmp_path / "run.h5")
    spec = SimpleNamespace(name="syn", text="")
    opts = SimpleNamespace(out=out, report=True, quiet=False)
    reduced = [finish.rank_record(dict(d), out, r) for r, d in enumerate(full)]
    return plan, full, reduced, spec, opts, out


def test_rank_zero_gets_reductions_and_the_result_is_the_same(tmp_path, capsys):
    plan, full, reduced, spec, opts, out = _run(tmp_path)
    assert all("events" not in d and d["reduced"]["n"] == len(f["events"])
               for d, f in zip(reduced, full, strict=True))
    finish.finish_run(spec, plan, opts, reduced, "ok", None, {"answer": 42})
    printed = capsys.readouterr().out
    # oracle: the report from every rank's full record in memory (what rank 0 used to hold)
    want = summarize(plan, full)
    assert summarize(plan, reduced) == want
    assert printed.startswith(short_text(plan, want, full))
    back = runfile.read(out)
    for d, f in zip(back["ranks"], full, strict=True):
        np.testing.assert_array_equal(d["events"], f["events"])
    doc = analyze(Plan.from_dict(back["meta"]["plan"]), back["ranks"], back["meta"])
    ref = analyze(plan, full, back["meta"])
    assert json.dumps(doc, sort_keys=True) == json.dumps(ref, sort_keys=True)
    assert back["meta"]["result"] == {"answer": 42}


def test_more_events_than_the_audit_reads_back_are_left_to_report(tmp_path, capsys,
                                                                 monkeypatch):
    plan, full, reduced, spec, opts, out = _run(tmp_path)
    monkeypatch.setattr(finish, "AUDIT_EVENTS", 100)
    monkeypatch.setattr(runfile, "read", lambda *a: pytest.fail("read back past the limit"))
    finish.finish_run(spec, plan, opts, reduced, "ok", None, None)
    text = capsys.readouterr().out
    assert f"over {sum(len(d['events']) for d in full):,} events: streampipe report {out}" in text
    assert "throughput" in text and "bottleneck: stage 's2'" in text  # from the reductions
