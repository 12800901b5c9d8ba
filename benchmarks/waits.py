"""Waiting: idle latency per hop and what an idle rank costs, streampipe against raw loops.

* Idle one-way latency per hop: a chain whose source sends one small item every 2 ms (every
  receiver is asleep in its back-off when the item comes), 4 ranks on this machine's cores and
  2 ranks (every rank has a core); streampipe (per hop: receiver ``t_recv`` - sender ``t_sent``,
  joined by seq) with each receive strategy and with a 5 ms poll window (``STREAMPIPE_SPIN_US``,
  for nodes whose cores are really free), against a raw ``Irecv`` + ``Test`` loop with the same
  back-off and a raw blocking ``Recv`` (which spins).
* CPU of a waiting rank: a 2-rank and a 4-rank job whose source sleeps 0.5 s per item; the
  waiting ranks' CPU-s per wall-second (getrusage in the stage's close).

    PYTHONPATH=. python -m benchmarks.waits [--quick] [--reps 3]
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.common import machine, med, parser, run_job, run_raw, stage, table, verdict


def sp_hops(ranks: int, n: int, recv: str, spin_us: int | None = None) -> dict:
    sts = ([stage("src", "Gen", n=n, ms=2.0)] + [stage(f"s{i}") for i in range(ranks - 2)]
           + [stage("snk", "Tally")])
    env = {"STREAMPIPE_RECV": recv}
    if spin_us is not None:
        env["STREAMPIPE_SPIN_US"] = str(spin_us)
    jr = run_job(sts, cpu=True, env=env)
    ranks_ = jr.run["ranks"]
    hops = []
    for a, b in zip(ranks_[:-1], ranks_[1:], strict=True):
        # perf_counter is one clock for every process of a host (wall0 pairs two clock reads,
        # which a loaded machine can separate by a preemption)
        sent = dict(zip(a["events"][:, 0].astype(int), a["perf0"] + a["events"][:, 4],
                        strict=True))
        hops += [b["perf0"] + e[1] - sent[int(e[0])] for e in b["events"][n // 10:]]
    waiting = [c["cpu"] / c["wall"] for c in jr.cpu if c["stage"] != "src"]
    return {"hop": float(np.median(hops)), "cpu": max(waiting), "recv": ranks_[1]["wait_recv"]}


def raw_hops(ranks: int, n: int, wait: str) -> dict:
    res, _ = run_raw(ranks, "chain", "--n", n, "--ms", 2.0, "--wait", wait)
    return {"hop": res["hop_median"], "cpu": max(res["cpu_per_s"])}


def idle_cpu(ranks: int, n: int) -> float:
    sts = ([stage("src", "Gen", n=n, ms=500.0)] + [stage(f"s{i}") for i in range(ranks - 2)]
           + [stage("snk", "Tally")])
    jr = run_job(sts, cpu=True, timeout=60)
    return max(c["cpu"] / c["wall"] for c in jr.cpu if c["stage"] != "src")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    n = 200 if a.quick else 500
    print(f"## Idle latency per hop ({machine()}, {a.reps} repeats, median of medians)\n")
    runners = {
        "streampipe (improbe, the default)": lambda r: sp_hops(r, n, "probe"),
        "streampipe (posted irecv)": lambda r: sp_hops(r, n, "irecv"),
        "streampipe, STREAMPIPE_SPIN_US=5000": lambda r: sp_hops(r, n, "probe", 5000),
        "raw Irecv + Test, same back-off": lambda r: raw_hops(r, n, "backoff"),
        "raw blocking Recv (spins)": lambda r: raw_hops(r, n, "block"),
    }
    rows, by = [], {}
    for ranks in (4, 2):
        got: dict[str, list[dict]] = {k: [] for k in runners}
        for i in range(a.reps):
            names = list(runners)
            for name in names[i % len(names):] + names[:i % len(names)]:
                got[name].append(runners[name](ranks))
        for name, runs in got.items():
            hop = med(r["hop"] for r in runs)
            by[(ranks, name)] = hop
            rows.append([ranks, name, 1e6 * min(r["hop"] for r in runs), 1e6 * hop,
                         med(r["cpu"] for r in runs)])
    print(table(["ranks", "runner", "hop us (min)", "hop us (median)",
                 "CPU-s/s of the busiest waiting rank"], rows))
    sp4, sp2 = by[(4, "streampipe (improbe, the default)")], by[(2, "streampipe (improbe, "
                                                                   "the default)")]
    print(f"\ntarget idle hop at 4 ranks <= raw back-off loop: "
          f"{verdict(sp4 / by[(4, 'raw Irecv + Test, same back-off')], 1.0, higher=False)}")
    print(f"target idle hop at 2 ranks (ranks <= cores) <= 3 x raw blocking: "
          f"{verdict(sp2 / by[(2, 'raw blocking Recv (spins)')], 3.0, higher=False)}")
    print(f"\n## An idle rank: source sleeping 0.5 s per item ({a.reps} repeats)\n")
    rows = []
    for ranks in (2, 4):
        cpu = [idle_cpu(ranks, 4 if a.quick else 6) for _ in range(a.reps)]
        rows.append([ranks, min(cpu), med(cpu), max(cpu)])
    print(table(["ranks", "CPU-s/s min", "median", "max (busiest waiting rank)"], rows))
    worst = max(r[2] for r in rows)
    print(f"\ntarget an idle rank costs <= 0.15 CPU-s per second: "
          f"{verdict(worst, 0.15, higher=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
