"""Run under mpiexec -n 2: frames of every kind between two ranks, checked bit for bit."""

from __future__ import annotations

import json

import numpy as np
from mpi4py import MPI

from streampipe.transport import CONTROL, CREDIT, DATA, EOS, PROGRESS, Transport, encode

comm = MPI.COMM_WORLD
t = Transport(comm)
t.join_node()
got: list = []
t.register(5, lambda src, kind, payload: got.append((src, kind, payload)))
try:
    t.register(5, lambda *a: None)
    dup = "accepted"
except ValueError as exc:
    dup = str(exc)
big = np.arange(200_000, dtype=np.float64)  # out of band
wide = [b"x" * 5000 for _ in range(20)]  # inline, but the pickle is larger than a posted buffer
if comm.rank == 0:
    for body in ((["k"], [big], None, None), (["w"], [wide], None, None)):
        blob, bufs = encode(body)
        t.send_data(1, 5, 3, blob, bufs)
    t.send_credit(1, 5, 2, 17, closed=True, pace=2.5e-4)
    t.send(1, PROGRESS, 5, (41, 2))
    t.send(1, CONTROL, 5, {"a": 1})
    t.send_eos(1, 5)
    t.drain_sends()
else:
    t.wait(lambda: len(got) == 6, timeout=30)
    kinds = [k for _, k, _ in got]
    (c1, b1), (c2, b2) = got[0][2], got[1][2]
    out = {"kinds": kinds, "srcs": [s for s, _, _ in got], "credits": [c1, c2],
           "big": bool(np.array_equal(b1[1][0], big)), "wide": b2[1][0] == wide,
           "credit": list(got[2][2]), "progress": list(got[3][2]), "control": got[4][2],
           "eos": got[5][2], "dup": dup, "waits": t.waits.as_dict(),
           "expect": [DATA, DATA, CREDIT, PROGRESS, CONTROL, EOS]}
    print("RESULT " + json.dumps(out), flush=True)
comm.Barrier()
t.close()
