"""The device check: everything a short GPU window must run, in one command (< 5 min on a GPU).

    PYTHONPATH=. python benchmarks/gpu_check.py [--json OUT] [--skip-tests] [--skip-jobs]

1. every gpu-marked test (``pytest -m gpu``: the wire path, budgets, kernel timing, the
   NumPy-vs-CuPy equality tests and every built-in on ``device = "gpu"`` against its CPU run);
2. the NumPy-vs-CuPy equality checks of the benchmark kernels (``gpu_kernels.py``);
3. the GPU-heavy built-in jobs with their compute stages on ``device = "gpu"``: ``var-book``,
   ``video`` and ``split-learning``;
4. kernel speed-ups, CuPy vs NumPy on one core (``OMP_NUM_THREADS=1``), for Black–Scholes
   valuation, the video SAD search and the DCT (``gpu_kernels.py``).

On a machine without a usable GPU (or with ``STREAMPIPE_CUPY_STANDIN=strict``) it runs steps
1-3 on the strict CuPy stand-in, with smaller jobs, says so, and prints no speed-up figures
(the stand-in's times mean nothing).  Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streampipe import gpu  # noqa: E402

# (job, --set overrides on a GPU, extra overrides on the stand-in to keep it short)
JOBS = [
    ("var-book", ['stages.value.device="gpu"'],
     ["stages.scenarios.params.n_scenarios=1000", "stages.scenarios.params.batch_size=500"]),
    ("video", ['stages.me.device="gpu"', 'stages.transform.device="gpu"',
               'stages.sink.params.out="video.spv"'],
     ["stages.source.params.n_frames=6", "stages.me.replicas=1"]),
    ("split-learning", ['train.device="gpu"'], ["train.epochs=1"]),
]


def on_device() -> bool:
    return gpu.standin_mode() is None and gpu.gpu_available()


def env(standin: bool, one_core: bool = False) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if standin:
        e["STREAMPIPE_CUPY_STANDIN"] = "strict"
    if one_core:
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            e[k] = "1"
    return e


def step(name: str, cmd: list[str], timeout: float, e: dict[str, str], cwd: Path = ROOT
         ) -> dict[str, object]:
    t0 = time.perf_counter()
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    try:
        done = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True,
                              timeout=timeout)
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
    secs = time.perf_counter() - t0
    tail = [ln for ln in out.strip().splitlines() if ln.strip()][-12:]
    print("\n".join("   " + ln for ln in tail), flush=True)
    return {"step": name, "ok": rc == 0, "rc": rc, "seconds": secs, "tail": tail}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--skip-tests", action="store_true", help="skip step 1 (pytest -m gpu)")
    ap.add_argument("--skip-jobs", action="store_true", help="skip step 3 (the built-in jobs)")
    args = ap.parse_args(argv)
    device = on_device()
    standin = not device
    where = "a GPU" if device else "the strict CuPy stand-in (no usable GPU here, or asked for)"
    print(f"gpu_check: running on {where}", flush=True)
    e = env(standin)
    py = sys.executable
    results = []
    if not args.skip_tests:
        results.append(step("gpu-marked tests", [py, "-m", "pytest", "-m", "gpu", "-q",
                                                 "-p", "no:cacheprovider"], 240, e))
    results.append(step("equality checks", [py, "benchmarks/gpu_kernels.py", "--standin",
                                            "--scale", "0.05"] if standin else
                        [py, "benchmarks/gpu_kernels.py", "--only", "linear-fwd-bwd",
                         "--repeat", "1", "--scale", "0.1"], 120, e))
    if not args.skip_jobs:
        runs = ROOT / "runs" / "gpu_check"
        runs.mkdir(parents=True, exist_ok=True)
        for job, sets, small in JOBS:
            overrides = sets + (small if standin else [])
            cmd = [py, "-m", "streampipe", "run", str(ROOT / "jobs" / f"{job}.toml"), "--out",
                   str(runs / f"{job}.h5"), "--quiet"]
            cmd += [a for s in overrides for a in ("--set", s)]
            results.append(step(f"job {job}", cmd, 150, e, cwd=runs))
    if device:
        results.append(step("kernel speed-ups (NumPy on one core)",
                            [py, "benchmarks/gpu_kernels.py", "--only", "black-scholes",
                             "--only", "sad-full-search", "--only", "dct-8x8", "--repeat", "3"],
                            180, env(False, one_core=True)))
    print("\ngpu_check summary (" + ("GPU" if device else "CuPy stand-in: no speed-up figures")
          + ")")
    for r in results:
        print(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['step']:<40} {r['seconds']:7.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "results": results}, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
