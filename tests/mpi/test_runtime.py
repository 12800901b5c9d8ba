"""The runtime under real MPI: order, exactly-once, backpressure, arrays, failures, feedback,
group stages. Every launch goes through tests/mpiutil.py (timeout + process-group kill)."""

from __future__ import annotations

import textwrap
from collections import Counter

import numpy as np
import pytest

from streampipe.runfile import read
from tests.mpiutil import mpiexec, streampipe

pytestmark = pytest.mark.mpi


def job(tmp_path, text: str, name: str = "job.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def run_ok(tmp_path, text: str, *extra: str, timeout: float = 60.0):
    path = job(tmp_path, text)
    out = str(tmp_path / "run.h5")
    done = streampipe("run", path, "--out", out, "--quiet", *extra, timeout=timeout)
    assert done.returncode == 0, done.output
    run = read(out)
    assert run["meta"]["status"] == "ok"
    return run


SQUARE = """
[pipeline]
name = "squares"
capacity = {cap}
ordered = {ordered}
[[stages]]
name = "numbers"
uses = "tests.stages:Numbers"
params = {{ n = {n} }}
[[stages]]
name = "square"
uses = "tests.stages:Square"
replicas = 3
[[stages]]
name = "collect"
uses = "tests.stages:Collect"
"""


def test_ordered_replicas_give_the_sequential_map_in_order(tmp_path):
    n = 2000
    run = run_ok(tmp_path, SQUARE.format(cap=4, ordered="true", n=n))
    assert run["meta"]["result"] == [i * i for i in range(n)]
    s = run["summary"]
    assert s["numbers"]["items"] == s["square"]["items"] == s["collect"]["items"] == n


def test_unordered_gives_the_same_multiset(tmp_path):
    n = 2000
    run = run_ok(tmp_path, SQUARE.format(cap=2, ordered="false", n=n))
    assert Counter(run["meta"]["result"]) == Counter(i * i for i in range(n))


def assert_little_exact(run):
    """Per rank, the held level's integral is the sum of the items' times inside (t_sent -
    t_recv): both are the same quantity, so they agree to rounding (every event kept)."""
    for r in run["ranks"]:
        ev = np.asarray(r["events"])
        assert r["events_dropped"] == 0 and len(ev) == r["items_in"]
        inside = float(np.sum(ev[:, 4] - ev[:, 1]))
        assert r["held_area"] == pytest.approx(inside, rel=1e-6, abs=1e-9), r["stage"]


def test_backpressure_bounds_what_each_stage_holds(tmp_path):
    cap, batch = 3, 4
    run = run_ok(tmp_path, f"""
        [pipeline]
        capacity = {cap}
        batch = {batch}
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = {{ n = 300 }}
        [[stages]]
        name = "square"
        uses = "tests.stages:Square"
        replicas = 2
        [[stages]]
        name = "slow"
        uses = "tests.stages:Sleep"
        params = {{ ms = 2 }}
        [[stages]]
        name = "collect"
        uses = "tests.stages:Checksum"
        """)
    s = run["summary"]
    # small records: a credit per wire message of <= batch records, so a stage holds at most
    # capacity x batch records per upstream rank (queued or being processed) plus one open
    # batch per receiver it sends to; an edge has at most (capacity + 1) x batch records put
    # and not yet credited back per receiving rank (in flight, and in the sender's open batch)
    assert s["square"]["held_peak"] <= 1 * cap * batch + 1 * batch
    assert s["slow"]["held_peak"] <= 2 * cap * batch + 1 * batch
    assert s["numbers"]["edges"]["square"]["peak"] <= 2 * (cap + 1) * batch
    assert s["square"]["edges"]["slow"]["peak"] <= (cap + 1) * batch  # per sender
    # a message carries at most max_delay (1 ms) of its receiver's work: the 2 ms stage gets
    # one record per message, so it holds at most a credit's worth from each of its 2 senders
    # plus the one it works on; and it does fill its queues (the bound is reached)
    assert cap < s["slow"]["held_peak"] <= 2 * cap + 1
    assert s["square"]["edges"]["slow"]["peak"] <= cap + 1
    # the source was really held back: it spent most of its time blocked on credit
    assert s["numbers"]["blocked"] > 0.5
    assert run["meta"]["result"] == {"n": 300, "sum": sum(i * i for i in range(300))}
    assert_little_exact(run)


def test_replicas_of_a_slow_stage_share_the_items(tmp_path):
    # a fast source batches small records, but never more than max_delay (1 ms) of the
    # receiver's work per message: each 5 ms replica gets about n / 4 items (a 64-record
    # message to one replica leaves the others idle and the ordered sink waiting on it: 14
    # replicas of a 20 ms stage ran at 50 items/s instead of 650)
    n, k = 240, 4
    run = run_ok(tmp_path, f"""
        [pipeline]
        capacity = 4
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = {{ n = {n} }}
        [[stages]]
        name = "slow"
        uses = "tests.stages:Sleep"
        replicas = {k}
        params = {{ ms = 5 }}
        [[stages]]
        name = "collect"
        uses = "tests.stages:Checksum"
        """)
    per = sorted(r["items_in"] for r in run["ranks"] if r["stage"] == "slow")
    # within 10% of n / k of each other (64-record messages gave 45 / 65 / 65 / 65 here)
    assert sum(per) == n and per[-1] - per[0] <= 0.1 * n / k, per
    assert run["meta"]["result"] == {"n": n, "sum": n * (n - 1) // 2}


def test_backpressure_bounds_arrays_by_capacity(tmp_path):
    cap = 3
    run = run_ok(tmp_path, f"""
        [pipeline]
        capacity = {cap}
        [[stages]]
        name = "arrays"
        uses = "tests.stages:Blocks"
        params = {{ n = 150, kb = 64 }}
        [[stages]]
        name = "pass"
        uses = "tests.stages:Identity"
        replicas = 2
        [[stages]]
        name = "slow"
        uses = "tests.stages:Sleep"
        params = {{ ms = 3 }}
        [[stages]]
        name = "sum"
        uses = "tests.stages:Checksum"
        """)
    s = run["summary"]
    # a record carrying array buffers costs a credit of its own, in flight or in an open batch:
    # at most `capacity` arrays per (sender, receiver) pair, whatever `batch` is
    assert s["pass"]["held_peak"] <= 1 * cap + 1 * cap
    assert s["slow"]["held_peak"] <= 2 * cap + 1 * cap
    # edge levels count records, markers included: the source's END((), n), which is forwarded
    # to the merge, may share a message with arrays
    assert s["arrays"]["edges"]["pass"]["peak"] <= 2 * cap + 1
    assert s["pass"]["edges"]["slow"]["peak"] <= cap + 1
    assert s["slow"]["held_peak"] > cap
    # held back: blocked most of the time (what is left is start-up and the final drain)
    assert s["arrays"]["blocked"] > 0.5
    assert run["meta"]["result"] == {"n": 150, "sum": 8192 * sum(range(150))}
    assert_little_exact(run)  # a blocked put of arrays settles no row before it is sent


def test_large_arrays_arrive_bit_exact(tmp_path):
    import numpy as np

    from tests.stages import ArrayDigest, Arrays

    run = run_ok(tmp_path, """
        [pipeline]
        capacity = 2
        [[stages]]
        name = "arrays"
        uses = "tests.stages:Arrays"
        params = { n = 8, mb = 8 }
        [[stages]]
        name = "pass"
        uses = "tests.stages:Identity"
        params = { sleep = 0 }
        [[stages]]
        name = "digest"
        uses = "tests.stages:ArrayDigest"
        """)
    # the same digests computed in this process, without MPI
    src, sink = Arrays(), ArrayDigest()
    from streampipe import Context

    src.setup(Context(params={"n": 8, "mb": 8}))
    sink.setup(Context())
    for a in src.generate():
        sink.consume(a)
    assert run["meta"]["result"] == sink.out
    assert np.isclose(sum(r["io_bytes"] for r in run["summary"].values()), 0)


def test_exception_in_replicated_stage_ends_all_ranks_fast(tmp_path):
    path = job(tmp_path, """
        [pipeline]
        capacity = 4
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 100000 }
        [[stages]]
        name = "fail"
        uses = "tests.stages:Fail"
        replicas = 3
        params = { at = 137 }
        [[stages]]
        name = "collect"
        uses = "tests.stages:Checksum"
        """)
    out = tmp_path / "run.h5"
    done = streampipe("run", path, "--out", str(out), timeout=30)
    assert done.returncode != 0
    assert done.seconds < 10, f"teardown took {done.seconds:.1f} s"
    err = done.stderr
    assert "stage 'fail'" in err and "item seq 137" in err and "ZeroDivisionError" in err
    assert "on rank " in err and "replica" in err
    assert err.count("failed at item") == 1, err  # one message, not one per rank
    run = read(str(out))  # a failed run still leaves its run file
    assert run["meta"]["status"] == "failed"
    assert "item seq 137" in run["meta"]["error"]


def test_wrong_rank_count_names_both_numbers(tmp_path):
    path = job(tmp_path, SQUARE.format(cap=4, ordered="true", n=10))
    done = mpiexec(3, "-m", "streampipe", "run", path, "--no-launch", "--quiet", timeout=30)
    assert done.returncode != 0
    assert "needs 5 ranks" in done.stderr and "started with 3" in done.stderr


@pytest.mark.parametrize("field, value, message", [
    ("stages[1].replicas", "0", "stages[1].replicas: must be >= 1, got 0"),
    ("pipeline.capacity", "0", "pipeline.capacity: must be >= 1, got 0"),
    ("stages.square.replicas", '"two"', "stages[1].replicas: expected integer"),
    ("stages.square.uses", '"tests.stages:Nope"', "stages[1].uses: module 'tests.stages' has no "
                                                  "attribute 'Nope'"),
    ("stages.square.uses", '"no_such_module:X"', "stages[1].uses: cannot import 'no_such_module'"),
    ("stages.square.colour", '"red"', "stages[1].colour: unknown key"),
    ("stages.collect.uses", '"tests.stages:Square"', "the last stage must be a streampipe Sink"),
])
def test_bad_job_fields_are_named_before_any_rank_starts(tmp_path, field, value, message):
    path = job(tmp_path, SQUARE.format(cap=4, ordered="true", n=10))
    done = streampipe("run", path, "--set", f"{field}={value}", timeout=30)
    assert done.returncode == 2, done.output
    assert message in done.stderr
    assert "mpiexec" not in done.output.lower()  # failed before launching anything


FEEDBACK = """
[pipeline]
capacity = 2
[[stages]]
name = "numbers"
uses = "tests.stages:Numbers"
params = {{ n = {n} }}
[[stages]]
name = "prefix"
uses = "tests.stages:PrefixFeedback"
replicas = {rep}
params = {{ lag = {lag} }}
[[stages]]
name = "add"
uses = "tests.stages:AddFeedback"
feedback_to = "prefix"
[[stages]]
name = "collect"
uses = "tests.stages:Collect"
"""


def test_feedback_edge_closes_the_loop_without_deadlock(tmp_path):
    n = 300
    # item s needs the running total of item s-1, which only exists after stage "add":
    # every item waits on the loop, with replicas and capacity 2
    run = run_ok(tmp_path, FEEDBACK.format(n=n, rep=2, lag=1))
    assert run["meta"]["result"] == [i * (i + 1) // 2 for i in range(n)]


def test_dependency_on_a_later_item_is_a_clear_error(tmp_path):
    path = job(tmp_path, FEEDBACK.format(n=50, rep=1, lag=0))
    done = streampipe("run", path, "--out", str(tmp_path / "r.h5"), timeout=30)
    assert done.returncode != 0 and done.seconds < 10
    assert "not earlier in the stream" in done.stderr and "stage 'prefix'" in done.stderr


def test_group_stage_runs_spmd_on_its_sub_communicator(tmp_path):
    run = run_ok(tmp_path, """
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 40 }
        [[stages]]
        name = "group"
        uses = "tests.stages:GroupSum"
        replicas = 2
        group = 3
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """)
    # three ranks each add x + group_rank: 3x + 0 + 1 + 2
    assert run["meta"]["result"] == [3 * x + 3 for x in range(40)]
    assert run["meta"]["ranks"] == 8


def test_dependency_on_a_dropped_item_fails_fast_instead_of_hanging(tmp_path):
    # item 6 needs the feedback of item 5, which a stage between drops: the producer's watermark
    # tells the waiting stage that the value will never come
    path = job(tmp_path, """
        [pipeline]
        capacity = 2
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 50 }
        [[stages]]
        name = "prefix"
        uses = "tests.stages:PrefixFeedback"
        params = { lag = 1 }
        [[stages]]
        name = "drop"
        uses = "tests.stages:DropAt"
        params = { at = 5 }
        [[stages]]
        name = "add"
        uses = "tests.stages:AddFeedback"
        feedback_to = "prefix"
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """)
    done = streampipe("run", path, "--out", str(tmp_path / "r.h5"), timeout=30)
    assert done.returncode != 0 and done.seconds < 10, done.output
    assert "item 6 waits for feedback of item 5" in done.stderr
    assert "handled that item without sending feedback" in done.stderr


def test_failure_in_setup_is_reported_and_recorded(tmp_path):
    path = job(tmp_path, """
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 10 }
        [[stages]]
        name = "broken"
        uses = "tests.stages:FailSetup"
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """)
    out = tmp_path / "r.h5"
    done = streampipe("run", path, "--out", str(out), timeout=30)
    assert done.returncode != 0 and done.seconds < 10
    assert "stage 'broken' (replica 0 of 1) on rank 1" in done.stderr
    assert "failed at setup: ValueError: bad setup on replica 0" in done.stderr
    run = read(str(out))
    assert run["meta"]["status"] == "failed"
    assert all(r is not None for r in run["ranks"])  # every rank reported, the failed one too


def test_gpu_stage_gets_device_arrays_on_its_feedback_edge_too(tmp_path):
    from tests.gpu_harness import standin_env

    n = 40
    path = job(tmp_path, f"""
        [pipeline]
        capacity = 2
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = {{ n = {n} }}
        [[stages]]
        name = "array"
        uses = "tests.stages:AsArray"
        [[stages]]
        name = "prefix"
        uses = "tests.stages:DevicePrefix"
        device = "gpu"
        [[stages]]
        name = "add"
        uses = "tests.stages:AddFeedback"
        feedback_to = "prefix"
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """)
    out = str(tmp_path / "run.h5")
    with standin_env():
        done = streampipe("run", path, "--out", out, "--quiet", timeout=60)
    assert done.returncode == 0, done.output
    run = read(out)
    assert run["meta"]["result"] == [[i * (i + 1) / 2] for i in range(n)]
    prefix = next(r for r in run["ranks"] if r["stage"] == "prefix")
    assert prefix["gpu_items_timed"] >= n  # the codec timed the stage's device work per item


def test_process_batch_keeps_per_item_semantics(tmp_path):
    # a vectorised stage (drops and fan-outs) between replicas, ordered: the sink equals the
    # single-process run, which calls process() item by item
    from streampipe.job import load_job
    from streampipe.serial import run_serial

    log = tmp_path / "calls.txt"
    path = job(tmp_path, f"""
        [pipeline]
        capacity = 3
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = {{ n = 3000 }}
        [[stages]]
        name = "pre"
        uses = "tests.stages:Branch"
        replicas = 2
        params = {{ k = 3, drop = 7 }}
        [[stages]]
        name = "vec"
        uses = "tests.stages:BatchBranch"
        replicas = 2
        params = {{ k = 2, drop = 5, log = "{log}" }}
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """)
    out = str(tmp_path / "run.h5")
    done = streampipe("run", path, "--out", out, "--quiet", timeout=60)
    assert done.returncode == 0, done.output
    import json

    want = json.loads(json.dumps(run_serial(load_job(path))))
    assert read(out)["meta"]["result"] == want
    sizes = [int(x) for x in log.read_text().split()]
    assert max(sizes) > 1  # it really got several items per call


def test_a_failed_run_records_the_items_of_its_last_batch(tmp_path):
    path = job(tmp_path, """
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 10000 }
        [[stages]]
        name = "fail"
        uses = "tests.stages:Fail"
        params = { at = 137 }
        [[stages]]
        name = "collect"
        uses = "tests.stages:Checksum"
        """)
    out = tmp_path / "run.h5"
    done = streampipe("run", path, "--out", str(out), timeout=30)
    assert done.returncode != 0 and "item seq 137" in done.stderr
    run = read(str(out))
    fail = next(r for r in run["ranks"] if r["stage"] == "fail")
    # one upstream, items in order: every item before 137 was processed, the ones of the
    # unfinished batch (128..136 with batches of 64) included
    assert sorted(fail["events"][:, 0].astype(int)) == list(range(137))
