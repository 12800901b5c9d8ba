"""Against the alternatives: the same 4-stage workload (source -> +1 -> +1 -> sink) as a
sequential loop, multiprocessing ``Process`` + ``Queue(maxsize=8)``, Ray actors (skipped when
ray is not installed), a hand-written mpi4py pipeline and streampipe.

Two workloads: small items (Python ints) and 1 MB NumPy arrays. Reported: steady-state rate
(middle 80 % of completions at the sink) and the wall time of the whole command, start-up
included. Also the small-item rate of the trivial 4-stage pipeline on 4 ranks (1,1,1,1) and on
8 ranks (replicas 1,3,3,1) against raw mpi4py send/recv with the same layout.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.common import (
    PY,
    launch,
    machine,
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
TUNED = {"capacity": 256, "batch": 256}


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
def workload(kind: str, nbytes: int, n: int) -> list[list]:
    rows = []
    for name, label in (("seq", "sequential loop"), ("mp", "multiprocessing Queue(8)"),
                        ("ray", "Ray actors")):
        if name == "ray" and not _have_ray():
            rows.append([label, "skipped (ray not installed)", "", ""])
            continue
        rate, wall = _python_baseline(name, kind, nbytes, n)
        rows.append([label, rate, wall, 0.0])
    for st in (["lower", "upper"] if kind == "array" else ["lower"]):
        res, wall = run_raw(4, "pipeline", "--payload", kind, "--bytes", nbytes, "--n", n,
                            "--op", "add", "--style", st)
        assert res["n"] == n, res
        rows.append([f"raw mpi4py {'send/recv' if st == 'lower' else 'Send/Recv'}",
                     res["rate"], wall, 0.0])
    for label, knobs in (("streampipe (capacity 8)", {}), ("streampipe (capacity/batch 256)",
                                                          TUNED)):
        if kind == "array" and knobs:
            continue
        jr = run_job([stage("src", "Gen", n=n, payload=kind, bytes=nbytes),
                      stage("a", op="add"), stage("b", op="add"), stage("snk", "Tally")],
                     **knobs)
        assert jr.result["n"] == n, jr.result
        rows.append([label, jr.rate, jr.wall, 0.0])
    mp_rate = rows[1][1]
    for r in rows:
        if isinstance(r[1], float):
            r[3] = r[1] / mp_rate
    return rows


def ranks_4_and_8(n: int) -> list[list]:
    rows = []
    for reps in ("1,1,1,1", "1,3,3,1"):
        res, _ = run_raw(sum(map(int, reps.split(","))), "pipeline", "--n", n, "--replicas",
                         reps, "--op", "add")
        sts = [stage("src", "Gen", n=n), stage("a", replicas=int(reps[2]), op="add"),
               stage("b", replicas=int(reps[4]), op="add"), stage("snk", "Tally")]
        # ordered = true (the default): the sink gets items in source order, raw does not
        sp8 = run_job(sts)
        spt = run_job(sts, **TUNED)
        rows.append([sum(map(int, reps.split(","))), reps, res["rate"], sp8.rate,
                     sp8.rate / res["rate"], spt.rate, spt.rate / res["rate"]])
    return rows


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--worker", nargs=4, help=argparse_hidden())
    a = ap.parse_args(argv)
    if a.worker:
        name, kind, nbytes, n = a.worker
        worker(name, kind, int(nbytes), int(n))
        return 0
    n_small, n_big = (5000, 100) if a.quick else (20000, 300)
    print(f"## Against the alternatives, 4 stages ({machine()})\n")
    heads = ["runner", "steady items/s", "whole command s", "rate / multiprocessing"]
    small = workload("int", 8, n_small)
    print(f"Small items (int), N = {n_small}:\n\n{table(heads, small)}\n")
    big = workload("array", MB, n_big)
    print(f"1 MB arrays, N = {n_big}:\n\n{table(heads, big)}\n")
    print(f"Trivial 4-stage pipeline, small items, N = {n_small}, vs raw mpi4py send/recv with "
          "the same layout (rank per replica, round-robin):\n")
    r48 = ranks_4_and_8(n_small)
    print(table(["ranks", "replicas", "raw items/s", "sp cap 8", "sp/raw", "sp cap/batch 256",
                 "sp/raw"], r48))
    sp_small = next(r for r in small if r[0] == "streampipe (capacity 8)")[3]
    sp_tuned = next(r for r in small if r[0].startswith("streampipe (capacity/"))[3]
    print(f"\ntarget >= 3 x multiprocessing.Queue on small items: default "
          f"{verdict(sp_small, 3.0)}; capacity/batch 256 {verdict(sp_tuned, 3.0)}")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
