"""The transport under real MPI: every frame kind between two ranks, one handler per edge."""

from __future__ import annotations

import json

import pytest

from tests.mpiutil import ROOT, mpiexec

pytestmark = pytest.mark.mpi


def test_frames_arrive_whole_and_in_order_and_an_edge_has_one_handler():
    done = mpiexec(2, str(ROOT / "tests" / "scripts" / "transport_frames.py"), timeout=60)
    assert done.returncode == 0, done.output
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[7:])
    assert r["kinds"] == r["expect"] and r["srcs"] == [0] * 6
    assert r["credits"] == [3, 3] and r["big"] and r["wide"]
    assert r["credit"] == [2, 17, True, 2.5e-4] and r["progress"] == [41, 2]
    assert r["control"] == {"a": 1} and r["eos"] is None
    assert "edge 5 already has a handler" in r["dup"]
    # the measured wait strategy is recorded: improbe once, or twice where it reports late
    assert r["waits"]["wait_recv"] == "probe" and r["waits"]["wait_probe_calls"] >= 1
