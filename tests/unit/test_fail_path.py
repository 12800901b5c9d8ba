"""The failure path of a rank never falls through to the normal end of the run (issue 20: with
an MPI_Abort that returned, run_rank went on to _finish with its result unbound)."""

from __future__ import annotations

import types

import pytest

from streampipe import metrics as M
from streampipe import runtime


class Quiet:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def abort_others(self, msg, size):
        self.calls.append("abort_others")

    def gather_failed(self, stats, grace):
        self.calls.append("gather_failed")
        return None  # not rank 0: nothing to write

    def Abort(self, code):  # noqa: N802 - the MPI name
        self.calls.append(f"Abort({code})")  # returns, unlike a real MPI_Abort


def test_fail_raises_even_when_abort_returns(monkeypatch):
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    q = Quiet()
    rt = types.SimpleNamespace(loop=None, m=M.Recorder(), rank=1, size=2, t=q, collector=q,
                               comm=q, seq=5, stats=lambda: {},
                               describe=lambda what: f"stage 'x' failed at item seq 5: {what}")
    with pytest.raises(SystemExit) as err:
        runtime._fail(rt, ValueError("boom"), 1)
    assert err.value.code == 1
    assert q.calls == ["abort_others", "gather_failed", "Abort(1)"]
