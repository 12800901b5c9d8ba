"""Fail fast: injected faults and outside kills end every rank quickly, with one clear message.

Every test launches real MPI ranks through tests/mpiutil.py, whose hard timeout turns a hang into
a failure (and kills the process group). Teardown time is measured as the wall time of the whole
``streampipe run`` minus the time a healthy run of the same job takes, bounded loosely by the
issue's 10 s budget; the message checks compare against the injected stage/item/replica, which
the test chose (an independent oracle for what the runtime must report).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampipe.runfile import read as _read
from tests.mpiutil import ROOT, streampipe


def read_run(path: Path) -> dict:
    return _read(str(path))

TEARDOWN_LIMIT = 10.0  # the budget for "every rank ends" after a failure
TIMEOUT = 40.0  # mpiutil hard timeout: a hang fails the test instead of stalling CI
WORST: list[float] = []  # worst teardown seen in this module (printed by the last test)


def write_job(path: Path, stages: list[dict], ordered: bool = True, capacity: int = 4,
              checkpoint: bool = False) -> Path:
    """Write a TOML job file from plain dicts (only the keys the tests need)."""
    lines = ["[pipeline]", 'name = "rel"', f"capacity = {capacity}",
             f"ordered = {str(ordered).lower()}", f"checkpoint = {str(checkpoint).lower()}"]
    for s in stages:
        lines += ["[[stages]]", f'name = "{s["name"]}"', f'uses = "{s["uses"]}"']
        for k in ("replicas", "timeout"):
            if k in s:
                lines.append(f"{k} = {s[k]}")
        if s.get("params"):
            body = ", ".join(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"'
                             for k, v in s["params"].items())
            lines.append(f"params = {{{body}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def chain(n: int = 400, mid_replicas: int = 2, timeout: dict[str, float] | None = None,
          sleep: float = 0.0) -> list[dict]:
    """source -> middle -> replicated middle -> sink (5 ranks with 2 replicas)."""
    timeout = timeout or {}
    stages = [
        {"name": "src", "uses": "tests.stages:Numbers", "params": {"n": n, "sleep": sleep}},
        {"name": "mid", "uses": "tests.stages:Square"},
        {"name": "rep", "uses": "tests.stages:Square", "replicas": mid_replicas},
        {"name": "sink", "uses": "tests.stages:Collect"},
    ]
    for s in stages:
        if s["name"] in timeout:
            s["timeout"] = timeout[s["name"]]
    return stages


def rank_of(stage: str, replica: int, mid_replicas: int = 2) -> int:
    """The rank that runs ``stage`` replica ``replica`` in :func:`chain` (stage order)."""
    return {"src": 0, "mid": 1, "rep": 2 + replica, "sink": 2 + mid_replicas}[stage]


def failed_run(tmp_path: Path, job: Path, *extra: str):
    out = tmp_path / "run.h5"
    done = streampipe("run", str(job), "--out", str(out), "--quiet", *extra, timeout=TIMEOUT)
    return done, out


# (kind, stage, replica, ordered): every kind at least twice, every position, both orders
MATRIX = [
    ("raise", "src", None, True),
    ("raise", "rep", 1, False),
    ("raise", "sink", None, True),
    ("exit", "mid", None, False),
    ("exit", "rep", 0, True),
    ("exit", "sink", None, False),
    ("kill", "src", None, False),
    ("kill", "rep", 1, True),
    ("kill", "sink", None, True),
    ("sleep", "mid", None, True),
    ("sleep", "rep", 0, False),
    ("sleep", "sink", None, True),
]


@pytest.mark.parametrize("kind,stage,replica,ordered", MATRIX)
def test_fault_matrix(tmp_path, kind, stage, replica, ordered):
    item = 150
    # a slow-ish source keeps every rank busy when the fault hits (no early-finished ranks)
    timeout = {stage: 0.5} if kind == "sleep" else None
    job = write_job(tmp_path / "job.toml", chain(n=400, timeout=timeout, sleep=1e-3),
                    ordered=ordered)
    # which replica gets a given item depends on credits, so a replica's fault covers a run of
    # items (one of them surely reaches it); the first one it meets is reported
    span = 10 if replica is not None else 1
    extra = []
    for i in range(item, item + span):
        spec = f"stage={stage},item={i},kind={kind}"
        extra += ["--inject", spec + (f",replica={replica}" if replica is not None else "")]
    done, out = failed_run(tmp_path, job, *extra)
    assert done.returncode != 0, done.output
    # the healthy run of this job takes ~1 s (400 items x 1 ms); the rest is teardown
    WORST.append(done.seconds)
    assert done.seconds < TEARDOWN_LIMIT + 1.0, f"took {done.seconds:.1f} s\n{done.output}"
    if kind == "kill":
        return  # a SIGKILLed rank prints nothing; mpiexec reports it and kills the rest
    m = re.search(r"streampipe: stage '(\w+)' \(replica (\d+) of (\d+)\) on rank (\d+) \([^)]*\) "
                  r"failed at item seq (\d+): (.*)", done.stderr)
    assert m, done.output
    got_stage, got_rep, _, got_rank, got_seq, what = m.groups()
    assert got_stage == stage
    if replica is not None:
        assert int(got_rep) == replica
    assert int(got_rank) == rank_of(stage, int(got_rep))
    assert item <= int(got_seq) < item + span
    assert len(re.findall(r"failed at item seq", done.stderr)) == 1, "one message, not one a rank"
    if kind == "raise":
        assert "InjectedFault: injected fault (kind=raise)" in what
        assert "Traceback (most recent call last)" in done.stderr  # the original traceback
    elif kind == "exit":
        assert "SystemExit(3)" in what
    else:
        assert "timeout = 0.5 s" in what
    if kind != "sleep":
        # the partial run file is written and marked failed (the watchdog aborts at once)
        import h5py

        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "failed"
            assert f"item seq {got_seq}" in f.attrs["error"]


def test_timeout_does_not_count_blocked_time(tmp_path):
    """A fast stage with a tight timeout ahead of a slow stage waits for credit, not for itself:
    the wait must not count against its timeout (it did before: the wrong stage was blamed)."""
    stages = [
        {"name": "src", "uses": "tests.stages:Numbers", "params": {"n": 12}},
        {"name": "fast", "uses": "tests.stages:Square", "timeout": 0.3},
        {"name": "slow", "uses": "tests.stages:Sleep", "params": {"ms": 150}},
        {"name": "sink", "uses": "tests.stages:Collect"},
    ]
    job = write_job(tmp_path / "job.toml", stages, capacity=2)
    done = streampipe("run", str(job), "--out", str(tmp_path / "r.h5"), timeout=TIMEOUT)
    assert done.returncode == 0, done.output
    assert read_run(tmp_path / "r.h5")["meta"]["result"] == [x * x for x in range(12)]


def test_failure_after_the_source_has_finished(tmp_path):
    """The source ends its stream long before the slow sink fails (every item fits in the
    queues, so the middle stage takes them all at once): rank 0, already collecting results,
    must still write the failed run file and print the one message (before, AbortRequested
    escaped from the collection in 4 of 5 such runs, with a traceback and no run file)."""
    stages = [
        {"name": "src", "uses": "tests.stages:Numbers", "params": {"n": 60}},
        {"name": "mid", "uses": "tests.stages:Square"},
        {"name": "sink", "uses": "tests.stages:Collect", "params": {"ms": 10}},
    ]
    job = write_job(tmp_path / "job.toml", stages, capacity=64)
    done, out = failed_run(tmp_path, job, "--inject", "stage=sink,item=50,kind=raise")
    assert done.returncode != 0, done.output
    assert "AbortRequested" not in done.stderr, done.stderr
    assert len(re.findall(r"failed at item seq 50: InjectedFault", done.stderr)) == 1, done.stderr
    run = read_run(out)
    assert run["meta"]["status"] == "failed"
    assert "stage 'sink'" in run["meta"]["error"]
    # the source's record reached the run file: it had generated every item
    src = [r for r in run["ranks"] if r["stage"] == "src"]
    assert len(src) == 1 and src[0]["items_out"] == 60


@pytest.mark.parametrize("victim", ["mid-0", "rep-1", "sink-0"])
def test_outside_kill9_of_a_rank(tmp_path, victim):
    """kill -9 of a non-zero rank mid-run from outside: every rank is gone within 10 s."""
    pids = tmp_path / "pids"
    pids.mkdir()
    stages = [
        {"name": "src", "uses": "tests.stages_durable:RssNumbers", "params": {"n": 10**7}},
        {"name": "mid", "uses": "tests.stages_durable:PidFile", "params": {"dir": str(pids)}},
        {"name": "rep", "uses": "tests.stages_durable:PidFile", "replicas": 2,
         "params": {"dir": str(pids)}},
        {"name": "sink", "uses": "tests.stages_durable:PidSink", "params": {"dir": str(pids)}},
    ]
    job = write_job(tmp_path / "job.toml", stages)
    from tests.mpiutil import _env

    proc = subprocess.Popen([sys.executable, "-m", "streampipe", "run", str(job), "--quiet",
                             "--out", str(tmp_path / "r.h5")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(list(pids.glob("*.pid"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(pids.glob("*.pid"))) == 4, "stages did not start"
        all_pids = [int(p.read_text()) for p in pids.glob("*.pid")]
        time.sleep(0.5)  # mid-run: items are flowing
        t0 = time.monotonic()
        os.kill(int((pids / f"{victim}.pid").read_text()), signal.SIGKILL)
        proc.communicate(timeout=TEARDOWN_LIMIT + 5)
        dt = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    WORST.append(dt)
    assert proc.returncode != 0
    assert dt < TEARDOWN_LIMIT, f"teardown took {dt:.1f} s"
    alive = [p for p in all_pids if _alive(p)]
    assert not alive, f"ranks still alive after teardown: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent has not reaped it yet)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@st.composite
def topologies(draw):
    n_mid = draw(st.integers(0, 2))
    stages = [{"name": "s0", "uses": "tests.stages:Numbers", "params": {"n": 120}}]
    for i in range(n_mid):
        stages.append({"name": f"m{i}", "uses": "tests.stages:Square",
                       "replicas": draw(st.integers(1, 2))})
    stages.append({"name": "sink", "uses": "tests.stages:Collect"})
    ordered = draw(st.booleans())
    fault = draw(st.none() | st.tuples(st.sampled_from([s["name"] for s in stages]),
                                       st.integers(0, 119), st.sampled_from(["raise", "exit"])))
    return stages, ordered, fault


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topologies())
def test_random_topologies_complete_or_fail_fast(tmp_path, topo):
    """Random 2-4 stage chains (<= 6 ranks), with or without a fault: either every item arrives
    exactly once (ordered: in order), or the job fails fast naming the faulty stage and item."""
    stages, ordered, fault = topo
    job = write_job(tmp_path / "job.toml", stages, ordered=ordered)
    extra = ["--inject", f"stage={fault[0]},item={fault[1]},kind={fault[2]}"] if fault else []
    done = streampipe("run", str(job), "--out", str(tmp_path / "r.h5"), "--quiet", *extra,
                      timeout=TIMEOUT)
    n_square = sum(1 for s in stages if s["uses"].endswith("Square"))
    # oracle: x -> x^(2^k) through k squaring stages
    want = [x ** (2 ** n_square) for x in range(120)]
    if fault is None:
        assert done.returncode == 0, done.output
        got = read_run(tmp_path / "r.h5")["meta"]["result"]
        assert (got if ordered else sorted(got)) == want
        return
    assert done.returncode != 0, done.output
    WORST.append(done.seconds)
    assert done.seconds < TEARDOWN_LIMIT
    assert f"stage {fault[0]!r}" in done.stderr
    assert f"failed at item seq {fault[1]}" in done.stderr


def test_worst_teardown_report():
    """Prints the worst teardown measured above (run with -s to see it)."""
    if WORST:
        print(f"\nworst failing-run wall time (incl. startup): {max(WORST):.2f} s "
              f"over {len(WORST)} runs")
        assert max(WORST) < TEARDOWN_LIMIT + 1.0
