"""Projection: where a VaR pipeline stops scaling on 1,000 ranks, simulated (Amdahl made visible).

Stage times come from a real run file (``--from runs/var.h5``: mean per-item service time of
each stage) or, by default, from constants measured on the 2-core development machine with
``streampipe run jobs/var.toml`` (10k-scenario batches): scenarios 1.9 ms, value 9.4 ms per
replica, aggregate 1.6 ms. The valuation stage is given 1..998 replicas (1 source + replicas +
1 aggregator <= 1,000 ranks) and the simulator reports throughput, the speed-up over one
replica, parallel efficiency and which stage is busiest. Throughput stops growing at
min(1/t_source, 1/t_aggregate): the serial source and the serial aggregation are the Amdahl
fraction; past that knee more ranks only add starved replicas.

    python benchmarks/projection_var.py [--from RUN.h5] [--items 20000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streampipe.job import load_job  # noqa: E402
from streampipe.plan import make_plan  # noqa: E402
from streampipe.sim import Dist, simulate, times_from_run  # noqa: E402

MEASURED = {"scenarios": 1.9e-3, "value": 9.4e-3, "aggregate": 1.6e-3}
REPLICAS = (1, 2, 4, 5, 6, 8, 16, 32, 64, 128, 256, 512, 998)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="from_run", help="take mean stage times from a run file")
    ap.add_argument("--items", type=int, default=20_000)
    args = ap.parse_args()
    means = dict(MEASURED)
    if args.from_run:
        means.update({k: d.mean for k, d in times_from_run(args.from_run).items()})
    # exponential around the mean: batches vary (GC, cache, other ranks on the node)
    times = {k: Dist("exp", v) for k, v in means.items()}
    job = Path(__file__).resolve().parent.parent / "jobs" / "var.toml"
    print("stage means: " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in means.items()))
    print(f"{'ranks':>6}{'value reps':>11}{'items/s':>10}{'speed-up':>10}{'efficiency':>11}"
          f"{'busiest':>12}{'busy':>6}  limit")
    base = None
    for r in REPLICAS:
        spec = load_job(str(job), [f"stages.value.replicas={r}"])
        plan = make_plan(spec)
        res = simulate(plan, times, args.items, seed=1, keep_events=False)
        rate = res.throughput
        base = base or rate
        busiest = max(res.summary, key=lambda n: res.summary[n].busy)
        limit = ("valuation (parallel part)" if busiest == "value"
                 else f"serial {busiest}: 1/t = {1 / means[busiest]:.0f}/s")
        print(f"{plan.size:>6}{r:>11}{rate:>10.1f}{rate / base:>10.2f}"
              f"{rate / base / r:>11.2f}{busiest:>12}{100 * res.summary[busiest].busy:>5.0f}%"
              f"  {limit}")
    serial = max(means["scenarios"], means["aggregate"])
    print(f"ceiling: 1 / max(t_source, t_aggregate) = {1 / serial:.0f} items/s, reached at "
          f"~{means['value'] / serial:.1f} valuation replicas; Amdahl: the serial stages cap the "
          f"speed-up over one replica at {means['value'] / serial:.1f}x")


if __name__ == "__main__":
    main()
