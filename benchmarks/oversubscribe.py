"""Oversubscription: 8 and 16 ranks on this machine's cores must still reach the bound.

Sleep pipelines (no stage needs a core while it works), so every CPU-second a rank burns is
waiting cost: 8 stages of 2 ms with a 4 ms stage (bound 250/s), and 16 ranks as 4 stages with
replicas 1,7,7,1 (8 ms middle stages, bound 875/s). CPU time per rank comes from
``getrusage`` in each stage's ``close``; the raw mpi4py chain with blocking ``recv`` (same sleep
per middle stage) shows what spinning waits cost instead.
"""

from __future__ import annotations

import os

from benchmarks.common import machine, med, parser, run_job, run_raw, stage, table, verdict

CORES = os.cpu_count() or 2


def chain8(n: int):
    mss = [2, 2, 2, 4, 2, 2, 2, 2]
    sts = [stage(f"s{i}", "Gen" if i == 0 else "Tally" if i == 7 else "Work", ms=ms,
                 **({"n": n} if i == 0 else {})) for i, ms in enumerate(mss)]
    return sts, 1e3 / 4


def wide16(n: int):
    sts = [stage("src", "Gen", n=n, ms=0.5), stage("a", replicas=7, ms=8),
           stage("b", replicas=7, ms=8), stage("snk", "Tally", ms=0.5)]
    return sts, 7e3 / 8


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    reps = 1 if a.quick else 3
    print(f"## Oversubscription ({machine()}, median of {reps})\n")
    rows = []
    for label, make, n, ranks in (("8 stages, 4 ms bottleneck", chain8, 400, 8),
                                  ("16 ranks, replicas 1,7,7,1", wide16, 1200, 16)):
        n = n // 2 if a.quick else n
        runs = []
        for _ in range(reps):
            sts, bound = make(n)
            runs.append(run_job(sts, cpu=True))
        jr = sorted(runs, key=lambda j: j.rate)[len(runs) // 2]
        assert jr.result["n"] == n, jr.result
        cpu = [c["cpu"] / c["wall"] for c in jr.cpu]
        rows.append([label, ranks, ranks / CORES, bound, jr.rate, jr.rate / bound,
                     med(cpu), max(cpu), sum(c["cpu"] for c in jr.cpu)])
    raw, _ = run_raw(8, "pipeline", "--n", 200 if a.quick else 400, "--ms", 2.0,
                     "--replicas", "1,1,1,1,1,1,1,1")
    rcpu = [c["cpu"] / c["wall"] for c in raw["cpu"]]
    rows.append(["raw mpi4py, 8 ranks, blocking recv, 2 ms", 8, 8 / CORES, 500.0, raw["rate"],
                 raw["rate"] / 500.0, med(rcpu), max(rcpu), sum(c["cpu"] for c in raw["cpu"])])
    print(table(["pipeline", "ranks", "ranks/core", "bound/s", "items/s", "/bound",
                 "median CPU-s per wall-s per rank", "max", "total CPU-s"], rows))
    for r in rows[:2]:
        print(f"\ntarget >= 0.9 x bound with {r[2]:.0f}x oversubscription ({r[0]}): "
              f"{verdict(r[5], 0.9)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
