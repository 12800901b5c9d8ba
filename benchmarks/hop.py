"""Overhead per hop: one streampipe edge (source -> sink) against raw mpi4py, same payload.

Per payload (8 B int, 1 KB bytes, a dict, NumPy arrays 1 KB ... 64 MB): the streaming rate of a
2-rank streampipe job and of a raw mpi4py stream (pickled ``send``/``recv``, and for arrays
``Send``/``Recv`` into a preallocated buffer), all in the same run. Ratios > 1 mean streampipe
costs more per item. Idle latency per hop: ``benchmarks/waits.py``.
"""

from __future__ import annotations

from benchmarks.common import machine, parser, run_job, run_raw, stage, table, verdict

KB, MB = 1 << 10, 1 << 20
# label, payload kind, bytes, items
PAYLOADS = [
    ("int 8 B", "int", 8, 20000),
    ("bytes 1 KB", "bytes", KB, 20000),
    ("dict", "dict", 0, 20000),
    ("array 1 KB", "array", KB, 20000),
    ("array 64 KB", "array", 64 * KB, 5000),
    ("array 1 MB", "array", MB, 1000),
    ("array 8 MB", "array", 8 * MB, 200),
    ("array 64 MB", "array", 64 * MB, 30),
]
QUICK = [0, 2, 5, 6]
TUNED = {"capacity": 256, "batch": 256}


def rates(kind: str, nbytes: int, n: int) -> list:
    sp = run_job([stage("src", "Gen", n=n, payload=kind, bytes=nbytes), stage("snk", "Tally")])
    assert sp.result["n"] == n, sp.result
    lower, _ = run_raw(2, "stream", "--payload", kind, "--bytes", nbytes, "--n", n)
    upper = (run_raw(2, "stream", "--payload", kind, "--bytes", nbytes, "--n", n,
                     "--style", "upper")[0] if kind == "array" else None)
    best_raw = max(lower["rate"], upper["rate"] if upper else 0)
    # small records: the credit window (capacity) also caps the batch; TUNED widens both
    tuned = (run_job([stage("src", "Gen", n=n, payload=kind, bytes=nbytes), stage("snk", "Tally")],
                     **TUNED).rate if nbytes < 8 * KB else float("nan"))
    mbs = (lambda r: r * nbytes / MB) if kind == "array" else (lambda r: float("nan"))
    return [sp.rate, tuned, lower["rate"], upper["rate"] if upper else float("nan"),
            best_raw / sp.rate, best_raw / tuned, mbs(sp.rate), mbs(best_raw), sp.rate / best_raw]


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    sel = [PAYLOADS[i] for i in QUICK] if a.quick else PAYLOADS
    print(f"## Overhead per hop, 2 ranks ({machine()})\n")
    rows = []
    for label, kind, nbytes, n in sel:
        n = max(20, n // 4) if a.quick else n
        rows.append([label, n, *rates(kind, nbytes, n)])
    print(table(["payload", "N", "sp items/s (cap 8)", "sp cap/batch 256", "raw send items/s",
                 "raw Send items/s", "time/item sp/raw", "tuned sp/raw", "sp MB/s", "raw MB/s",
                 "sp/raw rate"], rows))
    small = [r for r in rows if not r[0].startswith("array") or r[0] == "array 1 KB"]
    for col, what in ((6, "default capacity 8"), (7, "capacity = batch = 256")):
        worst = max(r[col] for r in small)
        print(f"\ntarget per-hop time for small items <= 1.5 x raw mpi4py stream ({what}, worst "
              f"small payload): {verdict(worst, 1.5, higher=False)}")
    big = [r for r in rows if r[0] == "array 8 MB"]
    if big:
        print(f"target 8 MB array bandwidth >= 0.8 x raw Send: "
              f"{verdict(big[0][2] / big[0][5], 0.8)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
