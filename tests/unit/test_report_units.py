"""Report analysis on synthetic runs (no MPI): recorder integrals, advice arithmetic, the JSON
schema of docs/diagnostics.md, Little's-law flags and the trace format."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from streampipe import metrics as M
from streampipe import report
from streampipe.plan import Plan
from streampipe.trace import trace_events

DOC = Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md"
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
         "integer": int, "number": (int, float)}


def doc_schema() -> dict:
    """The schema as documented (so docs and output cannot drift apart)."""
    text = DOC.read_text()
    block = re.search(r"## JSON document.*?```json\n(.*?)```", text, re.S).group(1)
    return json.loads(block)


def validate(value, schema: dict, path: str = "$") -> None:
    """The JSON Schema subset the document uses: type, const, enum, required, properties, items."""
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, TYPES[k]) and not (k in ("integer", "number")
                 and isinstance(value, bool)) for k in kinds)
        assert ok, f"{path}: {value!r} is not {kinds}"
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for k in schema.get("required", []):
            assert k in value, f"{path}: missing {k!r}"
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                validate(value[k], sub, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate(v, schema["items"], f"{path}[{i}]")


def test_validator_rejects_bad_documents():
    schema = doc_schema()
    with pytest.raises(AssertionError, match="missing 'advice'"):
        validate({"schema_version": 1, "run": {}, "stages": [], "ranks": [], "pipeline": None,
                  "edges": [], "end_to_end": None, "bottleneck": {}, "serial": None,
                  "little_flags": []}, schema)
    with pytest.raises(AssertionError, match="schema_version"):
        validate({"schema_version": 2}, schema)


def test_level_integral_is_order_independent():
    # oracle: the integral of a counter is the sum of (leave - arrive) over the items, whatever
    # order the updates are applied in (the recorder applies 'started' after the fact)
    rng = np.random.default_rng(1)
    arrive = np.sort(rng.uniform(0, 10, 200))
    leave = arrive + rng.uniform(0, 3, 200)
    lvl = M.Level(0.0)
    for a, b in zip(arrive, leave, strict=True):
        lvl.add(1, a)
        lvl.add(-1, b)  # out of time order with the next arrivals
    lvl.close(20.0)
    assert lvl.area == pytest.approx(np.sum(leave - arrive), rel=1e-12)
    assert lvl.value == 0


def test_event_limit_resolves_explicit_over_job_over_env(monkeypatch):
    from streampipe.job import JobSpec, StageSpec
    from streampipe.runtime import RunOptions, resolve_options

    spec = JobSpec("j", [StageSpec("a", "m:A"), StageSpec("b", "m:B")])
    monkeypatch.setenv("STREAMPIPE_EVENT_LIMIT", "0")
    assert resolve_options(RunOptions(), spec).event_limit == 0
    spec.settings = {"event_limit": 7}
    assert resolve_options(RunOptions(), spec).event_limit == 7
    assert resolve_options(RunOptions(event_limit=3), spec).event_limit == 3
    monkeypatch.setenv("STREAMPIPE_RECV", "posted")
    with pytest.raises(ValueError, match="STREAMPIPE_RECV"):
        resolve_options(RunOptions(), spec)


def test_recorder_event_limit_zero_keeps_integrals():
    rec = M.Recorder(event_limit=0)
    rec.arrived(1, rec.t0 + 0.1)
    rec.item(0, rec.t0 + 0.1, rec.t0 + 0.2, rec.t0 + 0.3, rec.t0 + 0.4)
    d = rec.dump()
    assert len(d["events"]) == 0 and d["events_dropped"] == 1
    # the integrals are kept without events: held 0.3 s, queued 0.1 s
    assert d["held_area"] == pytest.approx(0.3) and d["queued_area"] == pytest.approx(0.1)


def synthetic_run(times: list[float], replicas: list[int], n: int = 400, wire: float = 1e-4):
    """A deterministic pipeline simulated exactly: stage i takes times[i] s per item on each of
    its replicas (round-robin), unbounded queues, ``wire`` s between stages, one clock."""
    stages, ranks, r = [], [], 0
    t_ready = np.zeros(n)  # when each item reaches the current stage
    for i, (t, k) in enumerate(zip(times, replicas, strict=True)):
        kind = "source" if i == 0 else "sink" if i == len(times) - 1 else "stage"
        groups = [[r + j] for j in range(k)]
        stages.append({"index": i, "name": f"s{i}", "kind": kind, "replicas": k, "group": 1,
                       "capacity": 8, "groups": groups})
        free = np.zeros(k)
        start = np.empty(n)
        for s in range(n):
            j = s % k
            start[s] = max(t_ready[s], free[j])
            free[j] = start[s] + t
        end = start + t
        for j in range(k):
            sel = np.arange(j, n, k)
            ev = np.c_[sel, t_ready[sel], start[sel], end[sel], end[sel]]
            busy = t * len(sel)
            elapsed = end[-1] + 1.0
            ranks.append({"stage": f"s{i}", "replica": j, "host": "h", "wall0": 0.0,
                          "elapsed": elapsed, "events": ev, "items_in": len(sel),
                          "items_out": len(sel), "events_dropped": 0,
                          "held_area": float(np.sum(ev[:, 4] - ev[:, 1])),
                          "queued_area": float(np.sum(ev[:, 2] - ev[:, 1])), "held_peak": 1,
                          "edges": {}, "io_bytes": 0,
                          "time": {"busy": busy, "starved": elapsed - busy, "blocked": 0.0,
                                   "transfer": 0.0, "io": 0.0, "other": 0.0}})
        r += k
        t_ready = end + wire
    return Plan.from_dict({"stages": stages}), ranks


def test_advice_arithmetic_on_a_deterministic_pipeline():
    plan, ranks = synthetic_run([1e-4, 2e-3, 8e-3, 3e-3, 1e-4], [1, 1, 1, 1, 1])
    doc = report.analyze(plan, ranks, {"job_name": "syn", "status": "ok"})
    validate(json.loads(json.dumps(doc, allow_nan=False)), doc_schema())
    assert doc["bottleneck"]["stage"] == "s2" and doc["bottleneck"]["by_bound"] == "s2"
    # closed form: period = 8 ms; latency bound = sum of t_i; makespan = latency + (N-1) period
    pipe = doc["pipeline"]
    assert pipe["period"] == pytest.approx(8e-3, rel=1e-9)
    assert pipe["latency_bound"] == pytest.approx(13.2e-3, rel=1e-9)
    assert pipe["makespan_predicted"] == pytest.approx(13.2e-3 + 399 * 8e-3, rel=1e-9)
    # to reach the next bound (3 ms -> 333/s) the 8 ms stage needs ceil(8/3) = 3 replicas
    adv = next(a for a in doc["advice"] if a["kind"] == "replicas")
    assert (adv["add_replicas"], adv["next_limit"]) == (2, "s3")
    assert adv["throughput"] == pytest.approx(1 / 3e-3, rel=1e-9)
    for st in doc["stages"]:
        assert st["little_residual"] < 1e-9 and st["queue_residual"] < 1e-9
    e2e = doc["end_to_end"]
    assert e2e["applicable"] and e2e["little_residual"] < 1e-9
    assert doc["little_flags"] == []
    # wire time is what the synthetic run put between stages
    assert all(e["transit_min"] == pytest.approx(1e-4, abs=1e-12) for e in doc["edges"])


def test_replicas_move_the_bottleneck_as_advised():
    plan, ranks = synthetic_run([1e-4, 2e-3, 8e-3, 3e-3, 1e-4], [1, 1, 3, 1, 1])
    doc = report.analyze(plan, ranks)
    assert doc["bottleneck"]["stage"] == "s3"
    assert doc["pipeline"]["throughput"] == pytest.approx(1 / 3e-3, rel=1e-6)


def test_inconsistent_measurement_is_flagged():
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 1, 1])
    clean = report.analyze(plan, ranks)["end_to_end"]
    a1 = ranks[1]["held_area"]
    ranks[1]["held_area"] *= 1.10  # an occupancy integral that disagrees with the stamps by 10%
    doc = report.analyze(plan, ranks)
    assert [f["where"] for f in doc["little_flags"]] == ["stage:s1"]
    # end to end the error is diluted by the other stages' (correct) integrals
    area = clean["L"] * clean["window"]
    assert doc["end_to_end"]["little_residual"] == pytest.approx(0.1 * a1 / (area + 0.1 * a1))
    assert doc["little_flags"][0]["residual"] == pytest.approx(0.1 / 1.1, rel=1e-9)
    assert any(a["kind"] == "little" for a in doc["advice"])


def test_serial_fraction_is_amdahl():
    plan, ranks = synthetic_run([4e-3, 8e-3, 8e-3, 4e-3], [1, 4, 4, 1])
    doc = report.analyze(plan, ranks)
    # serial work 8 ms of 24 ms -> s = 1/3, speed-up limit 3x; source caps at 250/s
    assert doc["serial"]["fraction"] == pytest.approx(1 / 3, rel=1e-9)
    assert doc["serial"]["throughput_cap"] == pytest.approx(250, rel=1e-9)
    assert any(a["kind"] == "serial" for a in doc["advice"])


def test_trace_tracks_slices_and_flows():
    plan, ranks = synthetic_run([1e-3, 2e-3, 1e-3], [1, 2, 1], n=10)
    ev = trace_events(plan, ranks)
    names = {e["tid"]: e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    assert sorted(names) == [0, 1, 2, 3] and names[2].startswith("s1[1]")
    slices = [e for e in ev if e["ph"] == "X"]
    assert len(slices) == 3 * 10
    # slice durations are the process times, in microseconds
    assert {round(e["dur"]) for e in slices if e["name"] == "s1"} == {2000}
    starts = {e["id"]: e for e in ev if e["ph"] == "s"}
    ends = {e["id"]: e for e in ev if e["ph"] == "f"}
    assert starts.keys() == ends.keys() and len(starts) == 2 * 10  # two hops per item
    assert all(ends[i]["ts"] >= starts[i]["ts"] and not math.isnan(ends[i]["ts"]) for i in ends)


def test_text_report_prints_littles_law_end_to_end_only_where_it_applies():
    from streampipe.textreport import _conclusions

    e2e = {"items": 100, "applicable": True, "L": 2.0, "lam": 100.0, "W": 0.02,
           "little_residual": 0.0, "saturation_in_flight": 1.5}
    doc = {"bottleneck": {}, "pipeline": {}, "advice": [], "stages": [], "end_to_end": e2e}
    assert any(line.startswith("end to end: L 2.00 in flight") for line in _conclusions(doc))
    # a graph (or a fan-out): L, λ and W of one sojourn per source item mean nothing there
    doc["end_to_end"] = dict(e2e, applicable=False, little_residual=0.47)
    lines = [line for line in _conclusions(doc) if line.startswith("end to end")]
    assert lines == ["end to end: Little's law not checked (items are forked, joined, dropped "
                     "or multiplied on the way; the per-stage and per-edge figures hold)"]
