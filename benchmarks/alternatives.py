"""Large items against the alternatives: the same 4-stage workload (source -> +1 -> +1 -> sink)
on 1 MiB NumPy arrays as a sequential loop, multiprocessing ``Process`` + ``Queue(maxsize=8)``,
Ray actors, hand-written mpi4py (pickled ``send``/``recv`` and raw ``Send``/``Recv``) and
streampipe with its defaults. Reported: steady-state rate (middle 80 % of completions at the
sink), min and median of ``--reps`` alternating repeats, and the wall time of the whole command
(start-up included). Tiny items: ``benchmarks/tiny.py``.

    PYTHONPATH=. python -m benchmarks.alternatives [--quick] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
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
from benchmarks.stages import make_payload

MB = 1 << 20


# ----------------------------------------------------------------------------- workers
def _seq(kind: str, nbytes: int, n: int) -> list[float]:
    item = make_payload(kind, nbytes)
    done = []
    for _ in range(n):
        y = (item + 1) + 1
        del y
        done.append(time.perf_counter())
    return done


def _mp_stage(qin, qout) -> None:
    while (x := qin.get()) is not None:
        qout.put(x + 1)
    qout.put(None)


def _mp_source(q, kind: str, nbytes: int, n: int) -> None:
    item = make_payload(kind, nbytes)
    for _ in range(n):
        q.put(item)
    q.put(None)


def _mp(kind: str, nbytes: int, n: int) -> list[float]:
    import multiprocessing as mp

    qs = [mp.Queue(maxsize=8) for _ in range(3)]
    procs = [mp.Process(target=_mp_source, args=(qs[0], kind, nbytes, n)),
             mp.Process(target=_mp_stage, args=(qs[0], qs[1])),
             mp.Process(target=_mp_stage, args=(qs[1], qs[2]))]
    for p in procs:
        p.start()
    done = []
    while qs[2].get() is not None:
        done.append(time.perf_counter())
    for p in procs:
        p.join()
    return done


def _ray(kind: str, nbytes: int, n: int) -> list[float]:
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Add:
        def f(self, x):
            return x + 1

    a, b = Add.remote(), Add.remote()
    item = make_payload(kind, nbytes)
    done, pending = [], []
    for _ in range(n):
        pending.append(b.f.remote(a.f.remote(item)))
        if len(pending) >= 8:
            ray.get(pending.pop(0))
            done.append(time.perf_counter())
    for p in pending:
        ray.get(p)
        done.append(time.perf_counter())
    return done


def worker(name: str, kind: str, nbytes: int, n: int) -> None:
    done = {"seq": _seq, "mp": _mp, "ray": _ray}[name](kind, nbytes, n)
    print("RESULT " + json.dumps({"n": len(done), "rate": steady_rate(done)}), flush=True)


def _python_baseline(name: str, kind: str, nbytes: int, n: int) -> tuple[float, float]:
    done = launch([PY, "-m", "benchmarks.alternatives", "--worker", name, kind, str(nbytes),
                   str(n)], timeout=300)
    res = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert res["n"] == n, res
    return res["rate"], done.wall


def _have_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


# ----------------------------------------------------------------------------- benchmark
def runners(kind: str, nbytes: int, n: int) -> dict:
    out = {"sequential loop": lambda: _python_baseline("seq", kind, nbytes, n),
           "multiprocessing Queue(8)": lambda: _python_baseline("mp", kind, nbytes, n)}
    if _have_ray():
        out["Ray actors"] = lambda: _python_baseline("ray", kind, nbytes, n)
    for st, label in (("lower", "raw mpi4py send/recv (pickle)"),
                      ("upper", "raw mpi4py Send/Recv (buffers)")):
        out[label] = lambda st=st: _raw(kind, nbytes, n, st)
    out["streampipe (defaults)"] = lambda: _sp(kind, nbytes, n)
    return out


def _raw(kind: str, nbytes: int, n: int, style: str) -> tuple[float, float]:
    res, wall = run_raw(4, "pipeline", "--payload", kind, "--bytes", nbytes, "--n", n,
                        "--op", "add", "--style", style)
    assert res["n"] == n, res
    return res["rate"], wall


def _sp(kind: str, nbytes: int, n: int) -> tuple[float, float]:
    jr = run_job([stage("src", "Gen", n=n, payload=kind, bytes=nbytes),
                  stage("a", op="add"), stage("b", op="add"), stage("snk", "Tally")])
    assert jr.result["n"] == n, jr.result
    return jr.rate, jr.wall


def workload(kind: str, nbytes: int, n: int, reps: int) -> list[list]:
    rs = runners(kind, nbytes, n)
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in rs}
    names = list(rs)
    for i in range(reps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            got[name].append(rs[name]())
    mp = med(r for r, _ in got["multiprocessing Queue(8)"])
    return [[name, min(r for r, _ in v), med(r for r, _ in v), med(w for _, w in v),
             med(r for r, _ in v) / mp] for name, v in got.items()]


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        name, kind, nbytes, n = a.worker
        worker(name, kind, int(nbytes), int(n))
        return 0
    n = 100 if a.quick else 300
    reps = 1 if a.quick else a.reps
    print(f"## 1 MiB arrays, 4 stages ({machine()}, N = {n}, {reps} repeats)\n")
    rows = workload("array", MB, n, reps)
    print(table(["runner", "items/s min", "items/s median", "whole command s",
                 "rate / multiprocessing"], rows))
    sp = next(r for r in rows if r[0].startswith("streampipe"))[4]
    print(f"\nno regression: streampipe >= 9 x multiprocessing.Queue(8) on 1 MiB arrays "
          f"(the figure before the engine rewrite): {verdict(sp, 9.0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
