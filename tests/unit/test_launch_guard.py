"""What ``streampipe run`` refuses before any rank starts (no MPI): a ``--out`` the ranks could
not write. The oracle is the path the test broke: the one-line error must name ``--out`` and it,
``main([...])`` must not have reached the launch, and nothing may be left behind."""

from __future__ import annotations

import pytest

from streampipe import launch, live
from streampipe.cli import main

JOB = ('[pipeline]\nname = "g"\n[[stages]]\nname = "src"\nuses = "tests.stages:Numbers"\n'
       '[[stages]]\nname = "sink"\nuses = "tests.stages:Collect"\n')


@pytest.fixture
def no_launch(monkeypatch):
    started = []
    monkeypatch.setattr(launch, "launch", lambda *a, **k: started.append(a) or 0)
    monkeypatch.setattr(launch, "under_mpi", lambda: False)
    return started


def test_unwritable_out_is_one_line_naming_out_before_launch(tmp_path, capsys, no_launch):
    jobf = tmp_path / "g.toml"
    jobf.write_text(JOB)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, why in (("/proc/x.h5", "cannot write the run file there"),  # even as root
                     (str(afile / "x.h5"), f"{afile} is not a directory"),
                     (str(tmp_path), "is a directory")):
        assert main(["run", str(jobf), "--quiet", "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"streampipe run: error: --out {out}: ") and why in err, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not no_launch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "g.toml"]


def test_writable_out_in_a_new_folder_is_accepted_and_leaves_no_probe(tmp_path):
    out = tmp_path / "a" / "b" / "r.h5"
    launch.check_out(str(out))
    # the folders are what the run would create; the probe (the live file) is gone again
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []
    assert not live.live_path(str(out)).exists()
