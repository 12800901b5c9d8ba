"""A job run from another directory: ``uses = "file.py:Class"`` is relative to the job file on
every rank, as validation resolves it (the ranks once resolved it against the working directory
and failed in setup after validation had passed); ``uses = "module:Class"`` finds a module next
to the job when the working directory and sys.path do not have it."""

from __future__ import annotations

import pytest

from streampipe.runfile import read
from tests.mpiutil import streampipe

STAGES = """
import streampipe as sp

class Triple(sp.Stage):
    def process(self, x):
        return 3 * x
"""

JOB = """
[pipeline]
name = "elsewhere"
[[stages]]
name = "src"
uses = "tests.stages:Numbers"
params = {{ n = 50 }}
[[stages]]
name = "triple"
uses = "{uses}"
replicas = 2
[[stages]]
name = "sink"
uses = "tests.stages:Checksum"
"""


@pytest.mark.parametrize("uses", ["mystages.py:Triple", "mystages:Triple"])
def test_stage_file_next_to_the_job_works_from_any_directory(tmp_path, uses):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "mystages.py").write_text(STAGES)
    (sub / "job.toml").write_text(JOB.format(uses=uses))
    done = streampipe("run", "sub/job.toml", "--out", "r.h5", "--quiet", cwd=tmp_path,
                      timeout=60)
    assert done.returncode == 0, done.output
    # oracle: sum of 3 x over 0..49 = 3 * 49 * 50 / 2, every item once
    assert read(str(tmp_path / "r.h5"))["meta"]["result"] == {"n": 50, "sum": 3 * 49 * 50 // 2}
