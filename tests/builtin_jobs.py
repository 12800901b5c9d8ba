"""Run a shipped job (jobs/*.toml) under real MPI for the built-in end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streampipe.runfile import read

from .mpiutil import ROOT, streampipe


def run_job(job: str, cwd: Path, *sets: str, name: str = "run", timeout: float = 60.0
            ) -> dict[str, Any]:
    """``streampipe run jobs/JOB.toml --set ...`` in ``cwd``; returns the run file's contents
    with ``meta["result"]`` decoded from JSON.  Fails the test on a non-zero exit or a run file
    not marked ok."""
    out = cwd / f"{name}.h5"
    args = [a for s in sets for a in ("--set", s)]
    done = streampipe("run", str(ROOT / "jobs" / f"{job}.toml"), "--out", str(out), "--quiet",
                      *args, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, done.output[-4000:]
    run = read(out)
    assert run["meta"]["status"] == "ok", run["meta"].get("error")
    result = run["meta"]["result"]
    run["meta"]["result"] = json.loads(result) if isinstance(result, str) else result
    return run
