"""Where a resumed run starts (``streampipe.resume``), from the checkpoint files alone: the
sources at the lowest sink's mark, every sink at its own; missing or broken files are one-line
errors naming the file (and the sink)."""

from __future__ import annotations

import pickle

import pytest

from streampipe.resume import Checkpointer, checkpoint_path, identity, resume_point


class Offsets:
    """A sink whose state is how many items it has made durable."""

    def __init__(self):
        self.n = 0

    def checkpoint(self):
        return self.n


def test_each_sink_keeps_its_mark_and_the_sources_start_at_the_lowest(tmp_path):
    run = str(tmp_path / "r.h5")
    for name, hwm in (("a", 120), ("b", 75)):
        c = Checkpointer(run, name, 0, every=0.0)
        sink = Offsets()
        sink.n = hwm
        c.consumed_upto(hwm, sink, now=1.0)
        c.consumed_upto(hwm - 10, sink, now=2.0)  # a mark never moves back (nor is saved)
    p = resume_point(run, ["a", "b"])
    assert p.start == 75 and p.sinks == {"a": (120, 120), "b": (75, 75)}


def test_one_sink_uses_the_plain_file(tmp_path):
    run = str(tmp_path / "r.h5")
    Checkpointer(run, None, 30, every=1.0).save(Offsets())
    assert checkpoint_path(run) == f"{run}.ckpt"
    assert resume_point(run, ["only"]).sinks == {"only": (30, 0)}


def test_missing_and_broken_checkpoints(tmp_path):
    run = str(tmp_path / "r.h5")
    with pytest.raises(ValueError, match=r"no checkpoint .*r\.h5\.ckpt \(was the job run"):
        resume_point(run, ["only"])
    Checkpointer(run, "a", 0, every=1.0).save(Offsets())
    with pytest.raises(ValueError, match=r"no checkpoint .*r\.h5\.ckpt\.b of sink 'b'"):
        resume_point(run, ["a", "b"])
    with open(checkpoint_path(run, "b"), "wb") as f:
        f.write(pickle.dumps({"state": 1})[:-3])
    with pytest.raises(ValueError, match=r"unreadable checkpoint .*r\.h5\.ckpt\.b"):
        resume_point(run, ["a", "b"])


class _Spec:
    """What :func:`identity` reads of a job: its name and its graph."""

    def __init__(self, name, names, inputs):
        from streampipe.graph import Graph

        self.name, self.graph = name, Graph(tuple(names), tuple(tuple(i) for i in inputs))


def test_a_checkpoint_of_another_job_or_graph_is_refused(tmp_path):
    run = str(tmp_path / "r.h5")
    job = identity(_Spec("ck", ["src", "sq", "out"], [[], [0], [1]]))
    Checkpointer(run, None, 40, every=1.0, job=job).save(Offsets())
    assert resume_point(run, ["out"], job).start == 40
    with pytest.raises(ValueError, match=r"r\.h5\.ckpt was written by job 'ck', not 'chain'"):
        resume_point(run, ["out"], identity(_Spec("chain", ["src", "sq", "out"],
                                                  [[], [0], [1]])))
    other = identity(_Spec("ck", ["src", "inc", "out"], [[], [0], [1]]))
    with pytest.raises(ValueError, match=r"with other stages \(src<-\(source\), sq<-src, "
                                         r"out<-sq\); this job has src<-\(source\), inc<-src"):
        resume_point(run, ["out"], other)


def test_a_checkpoint_without_a_job_is_taken_as_it_is(tmp_path):
    """Checkpoints written before the job was recorded: the user's word that they match."""
    run = str(tmp_path / "r.h5")
    with open(checkpoint_path(run), "wb") as f:
        pickle.dump({"hwm": 7, "state": 3}, f)
    job = identity(_Spec("ck", ["src", "out"], [[], [0]]))
    assert resume_point(run, ["out"], job).sinks == {"out": (7, 3)}
