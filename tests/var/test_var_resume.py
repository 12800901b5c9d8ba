"""``streampipe run jobs/var.toml --set pipeline.checkpoint=true``: a run that fails at an item
and is resumed ends with exactly the uninterrupted result (the serial oracle, which an
uninterrupted MPI run equals bit for bit: tests/var/test_builtin_var.py)."""

from __future__ import annotations

import json

from pipelines.var import run_serial
from streampipe.resume import resume_point
from streampipe.runfile import read
from tests.mpiutil import ROOT, streampipe

N, BATCH, SEED, FAIL_AT = 100_000, 2_000, 13, 40
SETS = ["pipeline.checkpoint=true", f"stages.scenarios.params.n_scenarios={N}",
        f"stages.scenarios.params.batch_size={BATCH}", f"stages.scenarios.params.seed={SEED}",
        "stages.value.device=\"cpu\""]


def run(tmp_path, out, *extra):
    args = [a for s in SETS for a in ("--set", s)]
    return streampipe("run", str(ROOT / "jobs" / "var.toml"), "--out", str(tmp_path / out),
                      "--quiet", *args, *extra, cwd=tmp_path, timeout=90)


def test_resumed_var_run_equals_the_uninterrupted_result(tmp_path):
    failed = run(tmp_path, "run1.h5", "--inject", f"stage=aggregate,item={FAIL_AT},kind=raise")
    assert failed.returncode != 0 and f"failed at item seq {FAIL_AT}" in failed.stderr, \
        failed.output[-3000:]
    hwm, state = resume_point(str(tmp_path / "run1.h5"), ["aggregate"]).sinks["aggregate"]
    assert 0 < hwm <= FAIL_AT and state["next"] == hwm  # the histogram after batches < hwm
    done = run(tmp_path, "run2.h5", "--resume", str(tmp_path / "run1.h5"))
    assert done.returncode == 0, done.output[-3000:]
    result = read(str(tmp_path / "run2.h5"))["meta"]["result"]
    result = json.loads(result) if isinstance(result, str) else result
    serial = run_serial({"portfolio": "pipelines/var/data/portfolio.toml", "n_scenarios": N,
                         "batch_size": BATCH, "seed": SEED, "mode": "stream",
                         "confidence": [0.99, 0.975]})
    assert result == json.loads(json.dumps(serial))  # every float, every count
    assert result["n"] == N and result["batches"] == N // BATCH
