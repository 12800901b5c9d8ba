"""Checkpoint and resume: after a failure at a random item, ``--resume`` completes the output so
that every item is in it exactly once, byte-identical to an uninterrupted run.

Oracle: the uninterrupted run of the same job (and, independently, the closed form x -> x^2 of
the Square stage). The sink is tests.stages_durable.DurableFile (fsync in checkpoint, truncate in
restore), so "exactly once" is checked on the file a user would keep, not on in-memory state.
"""

from __future__ import annotations

import os
import pickle
import random

import h5py
import numpy as np
import pytest

from streampipe.resume import checkpoint_path, resume_point
from tests.mpiutil import streampipe

N = 1500
SLEEP = 1e-3  # ~2 s of stream, so the sink checkpoints (every 1 s) mid-run
SECRET = "sp-test-secret-5f0c1e9a"  # an env var value that must never reach a run file

JOB = """
[pipeline]
name = "durable"
capacity = 8
ordered = true
checkpoint = true
[[stages]]
name = "src"
uses = "{source}"
params = {{n = {n}, sleep = {sleep}}}
[[stages]]
name = "sq"
uses = "tests.stages:Square"
replicas = 2
[[stages]]
name = "sink"
uses = "tests.stages_durable:DurableFile"
params = {{path = "{path}"}}
"""


# the same squares through a fork and an ordered merge join: the sink gets x^2, then x
GRAPH_JOB = JOB.replace('name = "sink"', '''name = "id"
uses = "tests.stages:Identity"
inputs = ["src"]
[[stages]]
name = "both"
uses = "tests.stages:Identity"
inputs = ["sq", "id"]
[[stages]]
name = "sink"''')


def write_job(tmp_path, out_txt, source="tests.stages:Numbers", name="job.toml", text=JOB):
    p = tmp_path / name
    p.write_text(text.format(source=source, n=N, sleep=SLEEP, path=out_txt))
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run's output (and its run file, for the secrets check)."""
    tmp = tmp_path_factory.mktemp("ref")
    os.environ["SP_TEST_TOKEN"] = SECRET  # inherited by mpiexec and every rank
    try:
        out = tmp / "ref.txt"
        job = write_job(tmp, out)
        done = streampipe("run", str(job), "--out", str(tmp / "ref.h5"), "--quiet", timeout=60)
    finally:
        del os.environ["SP_TEST_TOKEN"]
    assert done.returncode == 0, done.output
    data = out.read_bytes()
    # independent oracle: the Square stage squares 0..N-1, in order, once each
    assert data == b"".join(f"{i * i}\n".encode() for i in range(N))
    return data, tmp / "ref.h5"


@pytest.mark.parametrize("stage", ["sink", "sq"])
def test_resume_after_failure_is_exactly_once(tmp_path, reference, stage):
    seed = random.randrange(1 << 30)
    item = random.Random(seed).randrange(1150, 1450)  # after the first 1 s checkpoint
    ctx = f"(seed {seed}, fault at {stage} item {item})"
    out = tmp_path / "out.txt"
    job = write_job(tmp_path, out)
    run1 = tmp_path / "run1.h5"
    done = streampipe("run", str(job), "--out", str(run1), "--quiet",
                      "--inject", f"stage={stage},item={item},kind=raise", timeout=60)
    assert done.returncode != 0, done.output
    assert f"failed at item seq {item}" in done.stderr, ctx + done.output
    hwm, offset = resume_point(str(run1), ["sink"]).sinks["sink"]
    # every item below the mark is durable; the mark cannot pass the item that failed
    assert 0 < hwm <= item, ctx
    lines = out.read_bytes()[:offset].splitlines()
    assert lines == [str(i * i).encode() for i in range(hwm)], ctx

    run2 = tmp_path / "run2.h5"
    done = streampipe("run", str(job), "--out", str(run2), "--quiet", "--resume", str(run1),
                      timeout=60)
    assert done.returncode == 0, ctx + done.output
    assert out.read_bytes() == reference[0], ctx  # identical: every item exactly once, in order
    with h5py.File(run2, "r") as f:
        assert f.attrs["status"] == "ok"


def test_resume_needs_a_checkpoint(tmp_path):
    job = write_job(tmp_path, tmp_path / "o.txt")
    done = streampipe("run", str(job), "--resume", str(tmp_path / "none.h5"), timeout=30)
    assert done.returncode == 2
    assert f"no checkpoint {checkpoint_path(str(tmp_path / 'none.h5'))}" in done.stderr
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        (tmp_path / "junk.h5.ckpt").write_bytes(b"garbage")
        resume_point(str(tmp_path / "junk.h5"), ["sink"])


def test_resume_with_a_source_that_cannot_seek(tmp_path):
    """RssNumbers has no seek(): resuming must fail fast and say so, not replay from item 0."""
    out = tmp_path / "o.txt"
    run1 = tmp_path / "run1.h5"
    ok = write_job(tmp_path, out)
    done = streampipe("run", str(ok), "--out", str(run1), "--quiet",
                      "--inject", "stage=sink,item=1200,kind=raise", timeout=60)
    assert done.returncode != 0
    noseek = write_job(tmp_path, out, source="tests.stages_durable:RssNumbers", name="b.toml")
    done = streampipe("run", str(noseek), "--out", str(tmp_path / "r2.h5"), "--quiet",
                      "--resume", str(run1), timeout=60)
    assert done.returncode != 0
    assert "source RssNumbers cannot resume: it does not override Source.seek(seq)" in \
        done.stderr, done.output


def test_run_file_holds_no_environment(reference):
    """Security: a run file stores the job, versions and measurements, never the environment."""
    texts: list[str] = []

    def visit(name, obj):
        for k, v in obj.attrs.items():
            texts.append(f"{k}={v!r}")
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SUO":
            texts.append(repr(obj[()]))

    with h5py.File(reference[1], "r") as f:
        visit("/", f)
        f.visititems(visit)
        assert f["ranks/0/events"].dtype == np.float64  # measurements are numbers
    blob = "\n".join(texts)
    assert "job_text=" in blob  # the visitor saw the attributes (the check below can fail)
    assert SECRET not in blob
    assert "SP_TEST_TOKEN" not in blob
    assert os.environ.get("PATH", "<none>") not in blob


@pytest.mark.parametrize("stage", ["both", "id"])
def test_resume_of_a_graph_is_exactly_once(tmp_path, stage):
    """A fork and a merge join before the sink: the mark passes a source item only once both
    branches' records of it are in the file, so a resumed run neither loses the x^2 whose x
    was not written yet nor writes it twice."""
    seed = random.randrange(1 << 30)
    item = random.Random(seed).randrange(1150, 1450)
    ctx = f"(seed {seed}, fault at {stage} item {item})"
    out = tmp_path / "out.txt"
    job = write_job(tmp_path, out, text=GRAPH_JOB)
    expect = b"".join(f"{i * i}\n{i}\n".encode() for i in range(N))  # closed form
    run1 = tmp_path / "run1.h5"
    done = streampipe("run", str(job), "--out", str(run1), "--quiet",
                      "--inject", f"stage={stage},item={item},kind=raise", timeout=60)
    assert done.returncode != 0 and f"failed at item seq {item}" in done.stderr, ctx + done.output
    hwm, offset = resume_point(str(run1), ["sink"]).sinks["sink"]
    assert 0 < hwm <= item, ctx
    assert out.read_bytes()[:offset] == b"".join(f"{i * i}\n{i}\n".encode()
                                                 for i in range(hwm)), ctx
    done = streampipe("run", str(job), "--out", str(tmp_path / "run2.h5"), "--quiet",
                      "--resume", str(run1), timeout=60)
    assert done.returncode == 0, ctx + done.output
    assert out.read_bytes() == expect, ctx


# two sources and two sinks: `out` gets both sources merged (x from s0, x^2 from s1, interleaved
# by seq: source s's item i has seq 2i + s), `tap` gets s0 alone; each sink keeps its own mark
TWO_JOB = """
[pipeline]
name = "two"
capacity = 8
ordered = true
checkpoint = true
[[stages]]
name = "s0"
uses = "tests.stages:Numbers"
params = {{n = {n}, sleep = {sleep}}}
[[stages]]
name = "s1"
uses = "tests.stages:Numbers"
params = {{n = {n}, sleep = {sleep}}}
[[stages]]
name = "sq"
uses = "tests.stages:Square"
[[stages]]
name = "both"
uses = "tests.stages:Identity"
inputs = ["s0", "sq"]
[[stages]]
name = "out"
uses = "tests.stages_durable:DurableFile"
params = {{path = "{out}"}}
[[stages]]
name = "tap"
uses = "tests.stages_durable:DurableFile"
inputs = ["s0"]
params = {{path = "{tap}"}}
"""


def _two_lines(upto: int, sink: str) -> bytes:
    """The closed form of a sink's file for the seqs below ``upto``."""
    if sink == "tap":
        return b"".join(f"{k // 2}\n".encode() for k in range(0, upto, 2))
    return b"".join(f"{k // 2 if k % 2 == 0 else (k // 2) ** 2}\n".encode() for k in range(upto))


@pytest.mark.parametrize("stage", ["out", "tap", "sq"])
def test_resume_with_two_sources_and_two_sinks_is_exactly_once(tmp_path, stage):
    """Each sink resumes from its own mark and the sources from the lowest: the sink that was
    further drops what comes again. To be sure one sink is behind the other (their marks are
    taken a second apart, each on its own clock), `tap`'s checkpoint is replaced by an earlier
    one it could have written (its file truncated to the closed form below that mark)."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    item = rnd.randrange(2300, 2900)  # ~1.15-1.45 s in: after the first checkpoints
    item += (item % 2) != (stage == "sq")  # sq sees s1's odd seqs, tap s0's even ones
    ctx = f"(seed {seed}, fault at {stage} item {item})"
    files = {s: tmp_path / f"{s}.txt" for s in ("out", "tap")}
    job = tmp_path / "two.toml"
    job.write_text(TWO_JOB.format(n=N, sleep=SLEEP, out=files["out"], tap=files["tap"]))
    run1 = tmp_path / "run1.h5"
    done = streampipe("run", str(job), "--out", str(run1), "--quiet",
                      "--inject", f"stage={stage},item={item},kind=raise", timeout=60)
    assert done.returncode != 0 and f"failed at item seq {item}" in done.stderr, ctx + done.output
    point = resume_point(str(run1), ["out", "tap"])
    for s in ("out", "tap"):
        hwm, offset = point.sinks[s]
        assert 0 < hwm <= item, ctx
        assert files[s].read_bytes()[:offset] == _two_lines(hwm, s), ctx
    # tap goes back to a mark 400 seqs before out's: out must drop 400 seqs of the replay
    back = max(0, point.sinks["out"][0] - 400)
    back_offset = len(_two_lines(back, "tap"))
    with open(checkpoint_path(str(run1), "tap"), "wb") as f:
        pickle.dump({"hwm": back, "state": back_offset}, f)
    assert resume_point(str(run1), ["out", "tap"]).start == back
    done = streampipe("run", str(job), "--out", str(tmp_path / "run2.h5"), "--quiet",
                      "--resume", str(run1), timeout=60)
    assert done.returncode == 0, ctx + done.output
    for s in ("out", "tap"):
        assert files[s].read_bytes() == _two_lines(2 * N, s), ctx + s
