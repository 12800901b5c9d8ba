"""What recording costs: a 4-stage pipeline of 100 us busy-wait stages with per-item events on and
off (STREAMPIPE_EVENT_LIMIT=0), and the per-item cost of the Recorder calls measured in-process.

    PYTHONPATH=. python -m benchmarks.recording_overhead [--items 3000] [--repeat 3]

The time split and the occupancy integrals cannot be switched off (the report needs them), so
their cost is measured on the exact sequence of Recorder calls one batch of items makes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streampipe as sp  # noqa: E402
from streampipe import metrics as M  # noqa: E402

JOB = """
[pipeline]
name = "overhead"
capacity = 16
[[stages]]
name = "src"
uses = "benchmarks.recording_overhead:Count"
[stages.params]
n = {n}
[[stages]]
name = "a"
uses = "benchmarks.recording_overhead:Spin"
[[stages]]
name = "b"
uses = "benchmarks.recording_overhead:Spin"
[[stages]]
name = "sink"
uses = "benchmarks.recording_overhead:Drain"
"""


def spin(dt: float) -> None:
    end = time.perf_counter() + dt
    while time.perf_counter() < end:
        pass


class Count(sp.Source):
    def setup(self, ctx):
        self.n = int(ctx.params["n"])

    def generate(self):
        for i in range(self.n):
            spin(100e-6)
            yield i


class Spin(sp.Stage):
    def process(self, x):
        spin(100e-6)
        return x


class Drain(sp.Sink):
    def setup(self, ctx):
        self.n = 0

    def consume(self, item):
        spin(100e-6)
        self.n += 1

    def result(self):
        return self.n


def one_batch(rec: M.Recorder, k: int) -> None:
    """The Recorder calls the runtime makes for one batch of ``k`` items of a middle stage."""
    now = time.perf_counter()
    stamps = [now] * k
    rec.arrived(k, now)
    rec.enter(M.BUSY)
    rec.enter(M.OTHER)
    rows = rec.items(list(range(k)), stamps, stamps, [(k, now)])
    rec.edge("next").add(k, now)
    rec.sent([rows], now)
    rec.settle()


def per_item_cost(events: bool, k: int = 64) -> float:
    """CPU seconds per item (thread time: a loaded machine inflates it less than wall time)."""
    rec = M.Recorder(event_limit=10**9 if events else 0)
    n = 200_000 // k
    best = float("inf")
    for _ in range(3):
        c0 = time.thread_time()
        for _ in range(n):
            one_batch(rec, k)
        best = min(best, (time.thread_time() - c0) / (n * k))
    return best


def run_pipeline(job: Path, limit: str, out: Path) -> float:
    env = dict(os.environ, STREAMPIPE_EVENT_LIMIT=limit,
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streampipe", "run", str(job), "--out", str(out),
                    "--quiet"], check=True, env=env, cwd=ROOT, timeout=300)
    wall = time.perf_counter() - t0
    from streampipe.runfile import read

    run = read(str(out))
    return run["meta"]["wall_time"] if run["meta"].get("wall_time") else wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for k in (64, 1):
        on, off = per_item_cost(True, k), per_item_cost(False, k)
        print(f"Recorder calls per item, batches of {k} (in-process, CPU time): {1e6 * on:.3f} "
              f"us with events, {1e6 * off:.3f} us without -> {100 * on / 100e-6:.2f}% of a "
              f"100 us stage")
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.toml"
        job.write_text(JOB.format(n=args.items))
        rows = {"on": [], "off": []}
        for _ in range(args.repeat):  # interleaved so drifting load hits both alike
            for mode, limit in (("on", "200000"), ("off", "0")):
                rows[mode].append(run_pipeline(job, limit, Path(tmp) / f"{mode}.h5"))
    best = {k: min(v) for k, v in rows.items()}
    print(f"4-stage pipeline, 100 us busy-wait stages, {args.items} items, best of "
          f"{args.repeat}: events on {best['on']:.3f} s, off {best['off']:.3f} s, "
          f"ratio {best['on'] / best['off']:.3f}; ideal {args.items * 100e-6:.3f} s")


if __name__ == "__main__":
    main()
