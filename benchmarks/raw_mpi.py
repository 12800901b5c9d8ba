"""Hand-written mpi4py baselines, run under ``mpiexec -n N python -m mpi4py benchmarks/raw_mpi.py``.

Modes (the rank that measures prints one ``RESULT {json}`` line):

* ``stream``   rank 0 sends ``n`` items to rank 1 (``lower``: pickled send/recv; ``upper``:
  ``Send``/``Recv`` of a preallocated array), rank 1 times them.
* ``pingpong`` ``n`` round trips of the payload between ranks 0 and 1; half the round trip.
* ``pipeline`` a chain of stages with ``--replicas 1,3,3,1`` (round-robin to replicas,
  end-of-stream sentinels), optional ``--ms`` sleep per item in every middle stage. ``--wait
  block`` receives with a blocking ``recv`` (run it with MPICH's throttle variables, see
  :data:`THROTTLE`, for the "blocking + throttle" loop); ``--wait backoff`` posts an ``irecv``
  from any source and polls it with ``test()`` and a back-off (16 polls, 16 ``sched_yield``,
  then sleeps doubling from 10 us to 200 us): the hand-written polling loop.
* ``chain`` idle latency per hop (``--ms`` between items, ``--wait block|backoff``).
* ``lockstep`` one item per step on every rank, then a barrier; per-item sleep times come from
  ``--times FILE.npy`` (ranks x items). The barrier is an ``Ibarrier`` polled with a short
  sleep so waiting does not burn the cores the sleeping ranks need.

Blocking calls are used where the hand-written code would use them (``stream``, ``pingpong``,
``pipeline``): that is the baseline a user would write.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from mpi4py import MPI

from benchmarks.common import steady_rate
from benchmarks.stages import _cpu, make_payload

EOS_TAG = 1
# MPICH settings that make its blocking waits yield more often (MPI-NOTES.md)
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1",
            "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "64"}


def _backoff_recv(comm: MPI.Comm):
    """Receive the next pickled item from any source: irecv + test with a sleeping back-off."""
    req = comm.irecv(source=MPI.ANY_SOURCE)
    n = 0
    while True:
        done, x = req.test()
        if done:
            return x
        n += 1
        if n < 16:
            continue
        if n < 32:
            os.sched_yield()
            continue
        time.sleep(min(200e-6, 10e-6 * (1 << min(n - 32, 10))))


def stream(comm: MPI.Comm, a: argparse.Namespace) -> dict | None:
    item = make_payload(a.payload, a.bytes)
    upper = a.style == "upper"
    if comm.rank == 0:
        for _ in range(a.n):
            comm.Send(item, dest=1) if upper else comm.send(item, dest=1)
        return None
    buf = np.empty_like(item) if upper else None
    times = np.empty(a.n)
    for i in range(a.n):
        comm.Recv(buf, source=0) if upper else comm.recv(source=0)
        times[i] = time.perf_counter()
    return {"rate": steady_rate(times), "total": times[-1] - times[0]}


def pingpong(comm: MPI.Comm, a: argparse.Namespace) -> dict | None:
    item = make_payload(a.payload, a.bytes)
    upper = a.style == "upper"
    buf = np.empty_like(item) if upper else None
    peer = 1 - comm.rank
    rtt = np.empty(a.n)
    for i in range(a.n):
        t0 = time.perf_counter()
        if comm.rank == 0:
            comm.Send(item, dest=peer) if upper else comm.send(item, dest=peer)
            comm.Recv(buf, source=peer) if upper else comm.recv(source=peer)
        else:
            comm.Recv(buf, source=peer) if upper else comm.recv(source=peer)
            comm.Send(item, dest=peer) if upper else comm.send(item, dest=peer)
        rtt[i] = time.perf_counter() - t0
    return {"half_rtt": float(np.median(rtt[len(rtt) // 10:])) / 2} if comm.rank == 0 else None


def pipeline(comm: MPI.Comm, a: argparse.Namespace) -> dict | None:
    reps = [int(x) for x in a.replicas.split(",")]
    firsts = np.cumsum([0] + reps)
    if comm.size != firsts[-1]:
        raise SystemExit(f"pipeline needs {firsts[-1]} ranks, got {comm.size}")
    s = int(np.searchsorted(firsts, comm.rank, side="right") - 1)
    ups = list(range(firsts[s - 1], firsts[s])) if s > 0 else []
    downs = list(range(firsts[s + 1], firsts[s + 2])) if s + 1 < len(reps) else []
    item = make_payload(a.payload, a.bytes)
    upper = a.style == "upper"
    buf = np.empty_like(item) if upper else None
    status = MPI.Status()
    rr = 0
    times = []
    t_start = time.perf_counter()
    cpu0 = _cpu()

    def emit(x):
        nonlocal rr
        d = downs[rr % len(downs)]
        rr += 1
        comm.Send(x, dest=d) if upper else comm.send(x, dest=d)

    if not ups:
        for _ in range(a.n):
            emit(item)
    else:
        open_ups = len(ups)
        while open_ups:
            if upper:
                comm.Recv(buf, source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
                x = None if status.Get_tag() == EOS_TAG else buf
            elif a.wait == "backoff":
                x = _backoff_recv(comm)
            else:
                x = comm.recv(source=MPI.ANY_SOURCE)
            if x is None:
                open_ups -= 1
                continue
            if downs:
                if a.ms:
                    time.sleep(a.ms / 1e3)
                emit(x + 1 if a.op == "add" else x)
            else:
                times.append(time.perf_counter())
    for d in downs:
        if upper:
            comm.Send(item[:0], dest=d, tag=EOS_TAG)
        else:
            comm.send(None, dest=d)
    cpu = comm.gather({"cpu": _cpu() - cpu0, "wall": time.perf_counter() - t_start}, root=0)
    if downs:
        if comm.rank == 0:
            comm.send(cpu, dest=comm.size - 1, tag=5)
        return None
    cpu = comm.recv(source=0, tag=5) if comm.rank else cpu
    t = np.array(times)
    return {"n": len(t), "rate": steady_rate(t), "total": float(t[-1] - t_start), "cpu": cpu}


def chain(comm: MPI.Comm, a: argparse.Namespace) -> dict | None:
    """Idle latency per hop: rank 0 sends an item every ``--ms`` ms down a chain of ranks; each
    rank forwards it at once, stamped; per-hop latency = receive time - the sender's stamp
    (same host: one clock). Also each receiving rank's CPU per wall second."""
    n, r, p = a.n, comm.rank, comm.size
    buf = np.zeros(1)
    lat = []
    req = None
    comm.Barrier()
    t0, cpu0 = time.perf_counter(), _cpu()
    for _ in range(n):
        if r == 0:
            time.sleep(a.ms / 1e3)
        else:
            if a.wait == "block":
                comm.Recv(buf, source=r - 1)
            else:
                req = comm.Irecv(buf, source=r - 1)
                k = 0
                while not req.Test():
                    k += 1
                    if 16 <= k < 32:
                        os.sched_yield()
                    elif k >= 32:
                        time.sleep(min(200e-6, 10e-6 * (1 << min(k - 32, 10))))
            lat.append(time.perf_counter() - buf[0])
        if r < p - 1:
            buf[0] = time.perf_counter()
            comm.Send(buf, dest=r + 1)
    cpu = (_cpu() - cpu0) / (time.perf_counter() - t0)
    got = comm.gather((lat[n // 10:], cpu), root=0)
    if r:
        return None
    hops = [x for lt, _ in got[1:] for x in lt]
    return {"hop_median": float(np.median(hops)), "cpu_per_s": [c for _, c in got[1:]]}


def lockstep(comm: MPI.Comm, a: argparse.Namespace) -> dict | None:
    times = np.load(a.times)
    p, n = times.shape
    i = comm.rank
    actual = np.zeros(n)
    comm.Barrier()
    t0 = time.perf_counter()
    for step in range(n + p - 1):
        k = step - i
        if 0 <= k < n:
            if i > 0:
                comm.recv(source=i - 1)
            s = time.perf_counter()
            time.sleep(times[i, k])
            actual[k] = time.perf_counter() - s
            if i < p - 1:
                comm.send(k, dest=i + 1)  # small: eager, returns at once
        req = comm.Ibarrier()
        while not req.Test():
            time.sleep(20e-6)
    makespan = time.perf_counter() - t0
    allt = comm.gather(actual, root=0)
    if comm.rank:
        return None
    return {"makespan": makespan, "times": np.array(allt).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stream", "pingpong", "pipeline", "lockstep", "chain"])
    ap.add_argument("--payload", default="int")
    ap.add_argument("--bytes", type=int, default=8)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--style", choices=["lower", "upper"], default="lower")
    ap.add_argument("--replicas", default="1,1,1,1")
    ap.add_argument("--ms", type=float, default=0.0)
    ap.add_argument("--op", default="pass")
    ap.add_argument("--times")
    ap.add_argument("--wait", choices=["block", "backoff"], default="block")
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    res = {"stream": stream, "pingpong": pingpong, "pipeline": pipeline,
           "lockstep": lockstep, "chain": chain}[a.mode](comm, a)
    if res is not None:
        print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
