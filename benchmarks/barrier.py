"""Queues against a barrier per step (the convoy effect), on the same random stage times.

Three stages with exponential per-item times (pre-generated with a seed, passed to both
runners): balanced 5/5/5 ms and unbalanced 2/8/3 ms means. Lock-step: hand-written mpi4py, at
step k stage i works on item k - i, then all ranks synchronise. Queued: streampipe with
``capacity`` credits per edge. The ideal of each comes from the times each run recorded:
lock-step = sum over steps of max_i t_i(k - i); queued = the tandem-queue recurrence with
blocking after service and ``capacity`` places downstream. Reported: measured gain against the
ideal gain, where gain = lock-step makespan / queued makespan - 1.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import TMP, machine, parser, run_job, run_raw, stage, table, verdict


def lockstep_ideal(t: np.ndarray) -> float:
    """Sum over steps of the slowest stage at that step (stage i holds item step - i)."""
    p, n = t.shape
    return float(sum(max(t[i, s - i] for i in range(p) if 0 <= s - i < n)
                     for s in range(n + p - 1)))


def tandem_ideal(t: np.ndarray, capacity: int) -> float:
    """Makespan of a tandem queue: stage i starts item k when it arrived and stage i is free,
    and hands it on once stage i + 1 has started item k - capacity (a credit came back)."""
    p, n = t.shape
    start = np.zeros((p, n))
    leave = np.zeros((p, n))
    for k in range(n):
        for i in range(p):
            ready = leave[i - 1, k] if i else 0.0
            free = leave[i, k - 1] if k else 0.0
            start[i, k] = max(ready, free)
            done = start[i, k] + t[i, k]
            credit = start[i + 1, k - capacity] if i + 1 < p and k >= capacity else 0.0
            leave[i, k] = max(done, credit)
    return float(leave[-1, -1])


def compare(label: str, means_ms: list[float], n: int, capacity: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    times = np.array([rng.exponential(m / 1e3, n) for m in means_ms])
    path = TMP / f"times-{label.replace('/', '_')}-{capacity}.npy"
    np.save(path, times)
    ls, _ = run_raw(len(means_ms), "lockstep", "--times", path, timeout=300)
    kinds = ["Gen", "Work", "Tally"]
    jr = run_job([stage(f"s{i}", kinds[i], times=times[i].tolist(), **({"n": n} if i == 0 else {}))
                  for i in range(3)], capacity=capacity, timeout=300)
    assert jr.result["n"] == n, jr.result
    ls_ideal = lockstep_ideal(np.array(ls["times"]))
    q_ideal = tandem_ideal(np.array([jr.service(f"s{i}") for i in range(3)]), capacity)
    gain = ls["makespan"] / jr.makespan - 1
    ideal_gain = ls_ideal / q_ideal - 1
    return [label, capacity, ls["makespan"], ls_ideal, jr.makespan, q_ideal, gain, ideal_gain,
            gain / ideal_gain]


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    n = 150 if a.quick else 300
    caps = [8] if a.quick else [4, 8, 32]
    print(f"## Queues vs barrier, N = {n} exponential items ({machine()})\n")
    rows = [compare(label, means, n, c, seed=1) for label, means in
            (("balanced 5/5/5", [5, 5, 5]), ("unbalanced 2/8/3", [2, 8, 3])) for c in caps]
    print(table(["stage means ms", "capacity", "lock-step s", "lock-step ideal s", "queued s",
                 "queued ideal s", "gain", "ideal gain", "gain / ideal"], rows))
    worst = min(r[-1] for r in rows if r[1] == 8)
    print(f"\ntarget queue vs barrier >= 0.9 x ideal gain (capacity 8, worst): "
          f"{verdict(worst, 0.9)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
