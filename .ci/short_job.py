"""CI on another Python: a short VaR job through the *installed* streampipe (run from outside
the source tree), checked against the single-process oracle bit for bit, then its report."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.var import run_serial
from streampipe.runfile import read

N, BATCH, SEED = 40_000, 4_000, 3
script = Path(sys.executable).parent / "streampipe"  # the installed console script
CMD = [str(script)] if script.exists() else [sys.executable, "-m", "streampipe"]
job = Path(sys.argv[1]).resolve()
sets = ["stages.value.device=\"cpu\"", "stages.value.params.portfolio=\"portfolio.toml\"",
        "stages.scenarios.params.portfolio=\"portfolio.toml\"",
        f"stages.scenarios.params.n_scenarios={N}", f"stages.scenarios.params.batch_size={BATCH}",
        f"stages.scenarios.params.seed={SEED}"]
with tempfile.TemporaryDirectory() as d:
    out = Path(d) / "v.h5"
    subprocess.run([*CMD, "run", str(job), "--out", str(out), "--quiet",
                    *(a for s in sets for a in ("--set", s))], check=True, cwd=d, timeout=180)
    got = read(str(out))["meta"]["result"]
    got = json.loads(got) if isinstance(got, str) else got
    want = json.loads(json.dumps(run_serial({"portfolio": "portfolio.toml", "n_scenarios": N,
                                             "batch_size": BATCH, "seed": SEED})))
    assert got == want, "MPI result differs from the serial oracle"
    subprocess.run([*CMD, "report", str(out), "--json"], check=True, cwd=d,
                   stdout=subprocess.DEVNULL, timeout=120)
print(f"short job ok on Python {sys.version.split()[0]}: VaR over {N} scenarios equals the "
      "serial oracle; report reads it back")
