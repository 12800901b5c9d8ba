"""Two "hosts" on this machine: hydra starts one proxy per host entry (-launcher fork, no ssh) and
MPICH is told to use its network module between every pair of ranks (MPIR_CVAR_NOLOCAL=1,
MPIR_CVAR_CH4_SHM_ENABLE=0) instead of shared memory. The sink's result must equal a normal run's.
"""

from __future__ import annotations

import json
import os

from streampipe.runfile import read
from tests.mpiutil import streampipe

JOB = """
[pipeline]
name = "twohosts"
capacity = 4
[[stages]]
name = "numbers"
uses = "tests.stages:Numbers"
[stages.params]
n = 300
[[stages]]
name = "square"
uses = "tests.stages:Square"
replicas = 2
[[stages]]
name = "sink"
uses = "tests.stages:Checksum"
"""

HOSTS = ["--mpiexec-arg=-hosts", "--mpiexec-arg=127.0.0.1:2,localhost:2",
         "--mpiexec-arg=-launcher", "--mpiexec-arg=fork"]


def test_two_host_run_gives_the_same_sink_output(tmp_path, monkeypatch):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    plain = streampipe("run", str(job), "--out", str(tmp_path / "a.h5"), "--quiet", timeout=40)
    assert plain.returncode == 0, plain.output
    monkeypatch.setitem(os.environ, "MPIR_CVAR_NOLOCAL", "1")
    monkeypatch.setitem(os.environ, "MPIR_CVAR_CH4_SHM_ENABLE", "0")
    net = streampipe("run", str(job), "--out", str(tmp_path / "b.h5"), "--quiet", *HOSTS,
                     timeout=40)
    assert net.returncode == 0, net.output
    a, b = (read(str(tmp_path / f)) for f in ("a.h5", "b.h5"))
    # oracle: sum of squares 0..299 = 299*300*599/6, n = 300; both runs must give exactly it
    want = {"n": 300, "sum": 299 * 300 * 599 // 6}
    for run in (a, b):
        res = run["meta"]["result"]
        assert (json.loads(res) if isinstance(res, str) else res) == want
    assert b["meta"]["status"] == "ok" and b["meta"]["ranks"] == 4


def test_slurm_scripts_parse_and_ask_for_the_jobs_rank_count():
    import re
    import subprocess

    from streampipe.job import load_job
    from tests.mpiutil import ROOT

    for name, job in (("var", "jobs/var.toml"), ("video", "jobs/video.toml")):
        script = ROOT / "jobs" / "slurm" / f"{name}.sbatch"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        text = script.read_text()
        ntasks = int(re.search(r"#SBATCH --ntasks=(\d+)", text).group(1))
        sets = re.findall(r"--set (\S+)", text)
        # oracle: the plan's rank count with the script's own overrides
        assert ntasks == load_job(str(ROOT / job), sets).ranks
