"""Bad input everywhere: each a clear error naming what is wrong, before work starts when possible.

The in-process checks (job fields, --set, --inject, data files, stage classes) need no MPI; the
rest launch real ranks through tests/mpiutil.py. Each test asserts the *field* or *item* the
message must name, which the test itself broke (the oracle).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from streampipe.faults import parse_inject
from streampipe.job import JobError, apply_overrides, load_job, parse_job
from streampipe.stage import Context
from tests.mpiutil import mpiexec, streampipe

BASE = {
    "pipeline": {"name": "t", "capacity": 4, "ordered": True},
    "stages": [
        {"name": "src", "uses": "tests.stages:Numbers", "params": {"n": 10}},
        {"name": "sq", "uses": "tests.stages:Square", "replicas": 2},
        {"name": "sink", "uses": "tests.stages:Collect"},
    ],
}


def job(**edits) -> dict:
    """BASE with edits: ``pipeline__key=v`` or ``s1__key=v`` (stage 1); value None deletes."""
    t = copy.deepcopy(BASE)
    for k, v in edits.items():
        where, key = k.split("__")
        node = t["pipeline"] if where == "pipeline" else t["stages"][int(where[1:])]
        if v is None:
            node.pop(key, None)
        else:
            node[key] = v
    return t


def test_base_job_is_valid():
    spec = parse_job(job())
    assert spec.ranks == 4  # 1 + 2 + 1: the fixture itself is a valid job


@pytest.mark.parametrize("table,pattern", [
    (job(pipeline__colour="red"), r"pipeline\.colour: unknown key"),
    (job(s1__replica=2), r"stages\[1\]\.replica: unknown key"),
    (job(pipeline__capacity="8"), r"pipeline\.capacity: expected integer, got str"),
    (job(pipeline__ordered=1), r"pipeline\.ordered: expected boolean, got int"),
    (job(s1__replicas=True), r"stages\[1\]\.replicas: expected integer, got boolean"),
    (job(s1__params=[1]), r"stages\[1\]\.params: expected table"),
    (job(s1__timeout="5s"), r"stages\[1\]\.timeout: expected integer or number"),
    (job(s1__timeout=0), r"stages\[1\]\.timeout: must be a finite number > 0"),
    (job(s1__uses=None), r"stages\[1\]\.uses: missing"),
    (job(s1__uses="tests.stages.Square"), r"stages\[1\]\.uses: expected 'module:Class'"),
    (job(s1__uses="tests.no_such_module:X"), r"stages\[1\]\.uses: cannot import "
                                             r"'tests\.no_such_module': ModuleNotFoundError"),
    (job(s1__uses="tests.stages:Sqaure"), r"stages\[1\]\.uses: module 'tests\.stages' has no "
                                          r"attribute 'Sqaure'"),
    (job(s1__uses="nowhere/file.py:X"), r"stages\[1\]\.uses: file 'nowhere/file\.py' not found"),
    (job(s1__replicas=0), r"stages\[1\]\.replicas: must be >= 1, got 0"),
    (job(s1__capacity=0), r"stages\[1\]\.capacity: must be >= 1, got 0"),
    (job(pipeline__capacity=-1), r"pipeline\.capacity: must be >= 1, got -1"),
    (job(s1__device="tpu"), r"stages\[1\]\.device: must be one of cpu, gpu, auto, got 'tpu'"),
    (job(s1__feedback_to="nope"), r"stages\[1\]\.feedback_to: no stage named 'nope'"),
    (job(s1__feedback_to="sink"), r"stages\[1\]\.feedback_to: must name an earlier stage"),
    (job(s0__group=2), r"stages\[0\]\.group: sources and sinks run on one rank"),
    (job(s2__group=2), r"stages\[2\]\.group: sources and sinks run on one rank"),
    (job(s1__name="src"), r"stages\[1\]\.name: duplicate stage name 'src'"),
    (job(pipeline__checkpoint=True, pipeline__ordered=False), r"pipeline\.checkpoint: needs "
                                                              r"pipeline\.ordered = true"),
    (job(s0__replicas=2), r"stages\[0\]\.replicas: a replicated source has no single order"),
    # a second Source is allowed (graphs), but then the first one feeds nothing
    (job(s1__uses="tests.stages:Numbers"), r"stages\[0\]: 'src' \(Numbers\) feeds no stage"),
    (job(s0__uses="tests.stages:Square"), r"stages\[0\]\.uses: the first stage must be a "
                                          r"streampipe Source"),
    (job(s2__uses="tests.stages:Square"), r"stages\[2\]\.uses: the last stage must be a "
                                          r"streampipe Sink"),
    ({"pipeline": {}, "stages": []}, r"stages: a job needs at least two"),
    ({"pipeline": {}, "stages": [1, 2]}, r"stages\[0\]: expected a table"),
    ({"pipeline": {}, "stage": []}, r"stage: unknown key"),
])
def test_job_field_errors_name_the_field(table, pattern):
    with pytest.raises(JobError, match=pattern):
        parse_job(table)


@pytest.mark.parametrize("uses,pattern", [
    ("tests.stages_durable:NotAStage", r"stages\[1\]\.uses \(sq\): class NotAStage is not a "
                                       r"streampipe Stage"),
    ("tests.stages_durable:Misspelled", r"stages\[1\]\.uses \(sq\): stage Misspelled does not "
                                        r"define "
                                        r"process\(\) \(found 'proccess'; did you mean "
                                        r"'process'\?\)"),
])
def test_stage_class_errors(uses, pattern):
    with pytest.raises(JobError, match=pattern):
        parse_job(job(s1__uses=uses))


@pytest.mark.parametrize("override,pattern", [
    ("stages.nosuch.replicas=2", r"--set stages\.nosuch\.replicas: no stage 'nosuch'"),
    ("stages[7].replicas=2", r"--set stages\[7\]\.replicas: no stage '7'"),
    ("stages.sq.replicas", r"--set 'stages\.sq\.replicas': expected key=value"),
    ("stages.sq.replicas.x=1", r"--set stages\.sq\.replicas\.x: stages\[1\]\.replicas is not a "
                               r"table"),
])
def test_set_errors(override, pattern):
    with pytest.raises(JobError, match=pattern):
        apply_overrides(job(), [override])


@pytest.mark.parametrize("override,pattern", [
    ("stages.sq.replicas=0", r"stages\[1\]\.replicas: must be >= 1, got 0"),
    ("stages.sq.replicas=two", r"stages\[1\]\.replicas: expected integer, got str 'two'"),
    ("pipeline.colour=1", r"pipeline\.colour: unknown key"),
])
def test_set_values_are_validated_like_the_file(override, pattern):
    with pytest.raises(JobError, match=pattern):
        parse_job(apply_overrides(job(), [override]))


@pytest.mark.parametrize("text,pattern", [
    ("stage=sq", r"needs stage=NAME and item=SEQ"),
    ("item=3", r"needs stage=NAME and item=SEQ"),
    ("stage=sq,item=x", r"item and replica must be integers"),
    ("stage=sq,item=3,replica=a", r"item and replica must be integers"),
    ("stage=sq,item=3,kind=explode", r"kind must be one of raise, exit, sleep, kill"),
    ("stage=sq,item=3,colour=red", r"unknown key 'colour'"),
    ("stage=sq,item", r"expected key=value pairs, got 'item'"),
    ("stage=sq;item=3", r"needs stage=NAME and item=SEQ"),
    ("stage=sq,item=-3", r"item and replica must be >= 0"),
    ("stage=sq,item=3,replica=-1", r"item and replica must be >= 0"),
])
def test_inject_syntax_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_inject(text)


def test_inject_parses():
    f = parse_inject("stage=sq, item=137, kind=kill, replica=1")
    assert (f.stage, f.item, f.kind, f.replica) == ("sq", 137, "kill", 1)


def test_job_file_not_found_and_not_toml(tmp_path):
    with pytest.raises(JobError, match=r"job file '.*missing\.toml': No such file"):
        load_job(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline\nname = 1\n")
    with pytest.raises(JobError, match=r"job file '.*bad\.toml': not valid TOML"):
        load_job(bad)


# ------------------------------------------------------------------------ data files
def _hdf5_source(params: dict):
    from streampipe.io import HDF5Source

    src = HDF5Source()
    src.setup(Context(params=params, stage="read"))
    return list(src.generate())


def test_hdf5_missing_dataset_and_wrong_dtype(tmp_path):
    import h5py

    from streampipe.io import DataError

    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(12, dtype=np.int32).reshape(6, 2)
    with pytest.raises(DataError, match=r"in\.h5: no dataset 'y' \(has \['x'\]\)"):
        _hdf5_source({"path": str(path), "dataset": "y"})
    with pytest.raises(DataError, match=r"in\.h5:x: dtype is int32, expected float64"):
        _hdf5_source({"path": str(path), "dataset": "x", "dtype": "float64"})
    with pytest.raises(DataError, match=r"in\.h5:x: row shape is \(2,\), expected \(3,\)"):
        _hdf5_source({"path": str(path), "dataset": "x", "shape": [3]})
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk\.h5: cannot open as HDF5"):
        _hdf5_source({"path": str(tmp_path / "junk.h5"), "dataset": "x"})
    # the valid file reads back exactly (the checks above are not rejecting everything)
    got = _hdf5_source({"path": str(path), "dataset": "x", "dtype": "int32", "chunk_rows": 4})
    assert np.array_equal(np.concatenate(got), np.arange(12).reshape(6, 2))


@pytest.mark.parametrize("data,pattern", [
    (b"P6 320 240 255\n", r"not a YUV4MPEG2 file"),
    (b"YUV4MPEG2 H16 F30:1 Ip C420jpeg\n", r"header field W.*missing"),
    (b"YUV4MPEG2 W16 H16 F30:1 Ip C444\n", r"only 4:2:0 8-bit"),
    (b"YUV4MPEG2 W16 H16 F30:1 It C420jpeg\n", r"only progressive"),
    (b"YUV4MPEG2 W16 H16 F30:1 Ip C420jpeg\nFRAME\n" + b"\0" * 10, r"frame 0"),
    (b"", r"no header line"),
])
def test_y4m_bad_headers(tmp_path, data, pattern):
    from pipelines.video.frameio import FrameError, read_y4m

    p = tmp_path / "bad.y4m"
    p.write_bytes(data)
    with pytest.raises(FrameError, match=pattern):
        read_y4m(p)


# ------------------------------------------------------------------------ with MPI ranks
def _write(tmp_path, stages_toml: str):
    p = tmp_path / "job.toml"
    p.write_text('[pipeline]\nname = "bad"\n' + stages_toml)
    return p


CHAIN = """
[[stages]]
name = "src"
uses = "tests.stages:Numbers"
params = {{n = 500}}
[[stages]]
name = "bad"
uses = "{uses}"
replicas = {replicas}
params = {{at = 100}}
[[stages]]
name = "sink"
uses = "tests.stages:Collect"
"""


@pytest.mark.parametrize("uses,what", [
    ("tests.stages_durable:ReturnsLambda", "Can't pickle local object"),
    ("tests.stages_durable:ReturnsFile", "cannot pickle '_io.TextIOWrapper' object"),
])
def test_unpicklable_item_fails_fast_naming_stage_and_item(tmp_path, uses, what):
    """Items are batched, so the pickling error surfaces at a later flush; the message must
    still name the item that produced the object (100), not the one being processed then."""
    job_file = _write(tmp_path, CHAIN.format(uses=uses, replicas=1))
    done = streampipe("run", str(job_file), "--out", str(tmp_path / "r.h5"), "--quiet",
                      timeout=40)
    assert done.returncode != 0
    assert done.seconds < 10
    assert re.search(r"stage 'bad' \(replica 0 of 1\) on rank 1 .* failed at item seq 100: "
                     r"UnsendableItem: its output for item seq 100 cannot be sent", done.stderr), \
        done.output
    assert what in done.stderr


def test_bad_job_fails_before_any_rank_starts(tmp_path):
    job_file = _write(tmp_path, CHAIN.format(uses="tests.stages:Sqaure", replicas=1))
    done = streampipe("run", str(job_file), "--out", str(tmp_path / "r.h5"), timeout=40)
    assert done.returncode == 2
    assert "stages[1].uses: module 'tests.stages' has no attribute 'Sqaure'" in done.stderr
    assert not (tmp_path / "r.h5").exists()  # nothing ran, so no run file


def test_bad_inject_and_set_on_the_command_line(tmp_path):
    job_file = _write(tmp_path, CHAIN.format(uses="tests.stages:Square", replicas=1))
    done = streampipe("run", str(job_file), "--inject", "stage=bad,item=x", timeout=40)
    assert done.returncode == 2 and "item and replica must be integers" in done.stderr
    done = streampipe("run", str(job_file), "--set", "stages.nope.replicas=2", timeout=40)
    assert done.returncode == 2 and "--set stages.nope.replicas: no stage 'nope'" in done.stderr
    # a fault that could never fire is refused, not silently ignored (the run would pass)
    done = streampipe("run", str(job_file), "--inject", "stage=bda,item=3", timeout=40)
    assert done.returncode == 2, done.output
    assert ("--inject stage=bda,item=3: the job has no stage 'bda' (stages: src, bad, sink)"
            in done.stderr)
    done = streampipe("run", str(job_file), "--inject", "stage=bad,item=3,replica=1", timeout=40)
    assert done.returncode == 2, done.output
    assert "stage 'bad' has 1 replica(s), numbered from 0" in done.stderr


def test_resume_refuses_a_job_without_checkpoints(tmp_path):
    job_file = _write(tmp_path, CHAIN.format(uses="tests.stages:Square", replicas=1))
    done = streampipe("run", str(job_file), "--resume", str(tmp_path / "r.h5"), timeout=40)
    assert done.returncode == 2, done.output
    assert "has pipeline.checkpoint = false, so its sinks would not restore" in done.stderr


def test_wrong_rank_count_every_rank_says_both_numbers(tmp_path):
    # replicas = 2: the job needs 4 ranks
    job_file = _write(tmp_path, CHAIN.format(uses="tests.stages:Square", replicas=2))
    done = mpiexec(3, "-m", "streampipe", "run", str(job_file), "--no-launch", "--quiet",
                   "--out", str(tmp_path / "r.h5"), timeout=40)
    assert done.returncode != 0
    for r in range(3):
        assert f"rank {r}: job 'bad' needs 4 ranks" in done.stderr, done.output
    assert done.stderr.count("but was started with 3") == 3
