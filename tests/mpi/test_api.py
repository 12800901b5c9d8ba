"""The Python API (sp.Pipeline, sp.run) under mpiexec does what the CLI does."""

from __future__ import annotations

import json
import textwrap

import pytest

import streampipe as sp
from streampipe.runfile import read
from tests.mpiutil import mpiexec

pytestmark = pytest.mark.mpi


def test_pipeline_and_run_return_the_sink_result_on_every_rank(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(textwrap.dedent("""
        [[stages]]
        name = "numbers"
        uses = "tests.stages:Numbers"
        params = { n = 1000 }
        [[stages]]
        name = "square"
        uses = "tests.stages:Square"
        replicas = 4
        [[stages]]
        name = "collect"
        uses = "tests.stages:Collect"
        """))
    out = tmp_path / "api.h5"
    done = mpiexec(6, "tests/scripts/api_pipeline.py", str(out), str(job), str(tmp_path),
                   timeout=60)
    assert done.returncode == 0, done.output
    rows = [json.loads(p.read_text()) for p in tmp_path.glob("rank*.json")]
    assert sorted(r["rank"] for r in rows) == list(range(6))
    for r in rows:  # every rank gets the sink's result
        assert r["pipeline"] == [x * x + 1 for x in range(50)]
        assert r["job"] == [x * x for x in range(7)]  # the --set style override applied
    assert read(str(out))["meta"]["status"] == "ok"


def test_pipeline_outside_mpi_says_how_to_start_it():
    from tests.stages import Collect, Numbers, Square

    p = sp.Pipeline("api").add(Numbers, params={"n": 3}).add(Square, replicas=2).add(Collect)
    with pytest.raises(sp.JobError, match=r"needs 4 ranks: start it with `mpiexec -n 4"):
        p.run()


def test_pipeline_fields_are_checked_like_job_files():
    from tests.stages import Collect, Numbers

    with pytest.raises(sp.JobError, match=r"stages\[1\].replicas: must be >= 1, got 0"):
        sp.Pipeline().add(Numbers).add(Collect, replicas=0).spec()
    with pytest.raises(sp.JobError, match=r"stages\[0\]: 'numbers' \(Numbers\) feeds no stage"):
        sp.Pipeline().add(Numbers).add(Numbers).add(Collect).spec()
