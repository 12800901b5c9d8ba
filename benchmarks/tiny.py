"""Tiny items at the default settings: streampipe against the loops a user would write by hand.

The same 4-stage pipeline (source -> +1 -> +1 -> sink, Python ints) as hand-written mpi4py
(blocking ``recv`` with MPICH's throttle variables; ``irecv`` + ``test`` with a sleeping
back-off), ``multiprocessing`` with ``Queue(maxsize=8)``, Ray actors (one item per call, and 100
per call) and streampipe with its defaults (capacity 8, batch 64); then 8 ranks with replicas
1,3,3,1 (any-source raw loops; streampipe ordered and unordered). Runners alternate within each
repeat. Reported: steady items/s (middle 80% of sink completions), min and median over the
repeats, and CPU per item summed over all processes (getrusage), which load disturbs less.

    PYTHONPATH=. python -m benchmarks.tiny [--quick] [--reps 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import time

from benchmarks.common import (
    PY,
    launch,
    machine,
    med,
    parser,
    run_job,
    run_raw,
    stage,
    steady_rate,
    table,
    verdict,
)
from benchmarks.raw_mpi import THROTTLE


# ----------------------------------------------------------------------------- python runners
def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime


def _mp_stage(qin, qout) -> None:
    while (x := qin.get()) is not None:
        qout.put(x + 1)
    qout.put(None)


def _mp_source(q, n: int) -> None:
    for i in range(n):
        q.put(i)
    q.put(None)


def mp_run(n: int) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    cpu0 = _children_cpu()
    qs = [ctx.Queue(maxsize=8) for _ in range(3)]
    procs = [ctx.Process(target=_mp_source, args=(qs[0], n)),
             ctx.Process(target=_mp_stage, args=(qs[0], qs[1])),
             ctx.Process(target=_mp_stage, args=(qs[1], qs[2]))]
    for p in procs:
        p.start()
    done = []
    while qs[2].get() is not None:
        done.append(time.perf_counter())
    for p in procs:
        p.join()
    return {"n": len(done), "rate": steady_rate(done), "cpu": _children_cpu() - cpu0}


def ray_run(n: int, per_call: int) -> dict:
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Add:
        def f(self, xs):
            return [x + 1 for x in xs]

    a, b = Add.remote(), Add.remote()
    ray.get([a.f.remote([0]), b.f.remote([0])])  # actors up before the clock starts
    done, pending = [], []
    for i in range(0, n, per_call):
        pending.append(b.f.remote(a.f.remote(list(range(i, min(n, i + per_call))))))
        if len(pending) >= 8:
            k = len(ray.get(pending.pop(0)))
            done += [time.perf_counter()] * k
    for p in pending:
        k = len(ray.get(p))
        done += [time.perf_counter()] * k
    ray.shutdown()
    return {"n": len(done), "rate": steady_rate(done), "cpu": float("nan")}


def _python(name: str, n: int, per_call: int = 1) -> dict:
    done = launch([PY, "-m", "benchmarks.tiny", "--worker", name, str(n), str(per_call)],
                  timeout=300)
    res = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert res["n"] == n, res
    return res


# ----------------------------------------------------------------------------- MPI runners
def _raw(n: int, reps: str, wait: str) -> dict:
    env = THROTTLE if wait == "block" else None
    res, _ = run_raw(sum(map(int, reps.split(","))), "pipeline", "--n", n, "--replicas", reps,
                     "--op", "add", "--wait", wait, env=env)
    assert res["n"] == n, res
    return {"n": n, "rate": res["rate"], "cpu": sum(c["cpu"] for c in res["cpu"])}


def _sp(n: int, reps: str, **pipeline) -> dict:
    r = [int(x) for x in reps.split(",")]
    jr = run_job([stage("src", "Gen", n=n), stage("a", replicas=r[1], op="add"),
                  stage("b", replicas=r[2], op="add"), stage("snk", "Tally")], cpu=True,
                 **pipeline)
    assert jr.result["n"] == n, jr.result
    return {"n": n, "rate": jr.rate, "cpu": sum(c["cpu"] for c in jr.cpu)}


def runners(quick: bool) -> dict[str, tuple]:
    n = 30_000 if quick else 80_000
    rs = {
        "raw blocking recv + throttle": (lambda: _raw(n, "1,1,1,1", "block"), n),
        "raw irecv + test, back-off": (lambda: _raw(n, "1,1,1,1", "backoff"), n),
        "multiprocessing Queue(8)": (lambda: _python("mp", n // 2), n // 2),
        "Ray actors, 1 item per call": (lambda: _python("ray", 500, 1), 500),
        "Ray actors, 100 items per call": (lambda: _python("ray", n // 4, 100), n // 4),
        "streampipe (defaults)": (lambda: _sp(n, "1,1,1,1"), n),
        "streampipe, live view off": (lambda: _sp(n, "1,1,1,1", live=False), n),
    }
    if importlib.util.find_spec("ray") is None:  # optional: pip install ray
        print("# Ray is not installed: its rows are left out", flush=True)
        rs = {k: v for k, v in rs.items() if not k.startswith("Ray")}
    return rs


def runners8(quick: bool) -> dict[str, tuple]:
    n = 30_000 if quick else 80_000
    return {
        "raw blocking recv + throttle, any source": (lambda: _raw(n, "1,3,3,1", "block"), n),
        "raw irecv + test back-off, any source": (lambda: _raw(n, "1,3,3,1", "backoff"), n),
        "streampipe unordered": (lambda: _sp(n, "1,3,3,1", ordered=False), n),
        "streampipe ordered (default)": (lambda: _sp(n, "1,3,3,1"), n),
    }


def measure(rs: dict[str, tuple], reps: int) -> dict[str, list[dict]]:
    got: dict[str, list[dict]] = {k: [] for k in rs}
    names = list(rs)
    for i in range(reps):
        order = names[i % len(names):] + names[:i % len(names)]  # alternate who goes first
        for name in order:
            got[name].append(rs[name][0]())
    return got


def rows(got: dict[str, list[dict]]) -> list[list]:
    out = []
    for name, runs in got.items():
        rates = [r["rate"] for r in runs]
        cpu = [r["cpu"] / r["n"] * 1e6 for r in runs]
        out.append([name, min(rates), med(rates), med(cpu)])
    return out


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        name, n, per_call = a.worker
        res = mp_run(int(n)) if name == "mp" else ray_run(int(n), int(per_call))
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    print(f"## Tiny items, 4 stages on 4 processes ({machine()}, {a.reps} repeats)\n")
    heads = ["runner", "items/s min", "items/s median", "CPU us/item (sum)"]
    got = measure(runners(a.quick), a.reps)
    r4 = rows(got)
    print(table(heads, r4))
    sp = next(r for r in r4 if r[0].startswith("streampipe"))[2]
    by = {r[0]: r[2] for r in r4}
    print(f"\ntarget streampipe >= 1.5 x raw irecv+test back-off: "
          f"{verdict(sp / by['raw irecv + test, back-off'], 1.5)}; moonshot >= 2x: "
          f"{verdict(sp / by['raw irecv + test, back-off'], 2.0)}")
    print(f"target streampipe >= 1.0 x raw blocking + throttle: "
          f"{verdict(sp / by['raw blocking recv + throttle'], 1.0)}")
    print(f"target streampipe >= 6 x multiprocessing.Queue(8): "
          f"{verdict(sp / by['multiprocessing Queue(8)'], 6.0)}")
    cpu = {r[0]: r[3] for r in r4}
    off = "streampipe, live view off"
    print(f"live view: items/s {sp / by[off]:.3f} x (median, on / off), CPU per item "
          f"{cpu['streampipe (defaults)'] / cpu[off]:.3f} x; target cost <= 1%")
    print(f"\n## 8 ranks, replicas 1,3,3,1 ({a.reps} repeats)\n")
    r8 = rows(measure(runners8(a.quick), a.reps))
    print(table(heads, r8))
    by8 = {r[0]: r[2] for r in r8}
    raw8 = max(by8["raw blocking recv + throttle, any source"],
               by8["raw irecv + test back-off, any source"])
    print(f"\ntarget ordered >= 0.9 x unordered: "
          f"{verdict(by8['streampipe ordered (default)'] / by8['streampipe unordered'], 0.9)}")
    print(f"target unordered >= 1.0 x the better raw any-source loop: "
          f"{verdict(by8['streampipe unordered'] / raw8, 1.0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
