"""Where a resumed run starts (``streampipe.resume``), from the checkpoint files alone: the
sources at the lowest sink's mark, every sink at its own; missing or broken files are one-line
errors naming the file (and the sink)."""

from __future__ import annotations

import pickle

import pytest

from streampipe.resume import Checkpointer, checkpoint_path, resume_point


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
