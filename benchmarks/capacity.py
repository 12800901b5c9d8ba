"""Capacity sweep: throughput and mean latency against the channel capacity (1 ... 64).

Source 3 ms (faster than the rest), middle stage exponential 5 ms, sink exponential 4 ms, same
seeds for every capacity. Small capacities starve the bottleneck whenever the jitter lets the
sink or source fall behind; past the knee, more capacity buys no throughput and only queueing:
by Little's law the items in flight L = rate x latency grow with the capacity, and so does the
latency.
"""

from __future__ import annotations

from benchmarks.common import machine, parser, run_job, stage, table


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    n = 200 if a.quick else 400
    caps = [1, 4, 16, 64] if a.quick else [1, 2, 4, 8, 16, 32, 64]
    bound = 1e3 / 5.0
    print(f"## Capacity sweep, N = {n}, bound {bound:.0f}/s ({machine()})\n")
    rows = []
    for c in caps:
        jr = run_job([stage("src", "Gen", n=n, ms=3), stage("mid", ms=5, jitter="exp", seed=1),
                      stage("snk", "Tally", ms=4, jitter="exp", seed=2)], capacity=c)
        assert jr.result["n"] == n, jr.result
        lat = float(jr.latencies().mean())
        rows.append([c, jr.rate, jr.rate / bound, lat * 1e3, jr.rate * lat])
    print(table(["capacity", "items/s", "/bound", "mean latency ms", "L = rate x latency"],
                rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
