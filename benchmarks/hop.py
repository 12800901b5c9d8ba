"""Overhead per hop: one streampipe edge (source -> sink) against raw mpi4py, same payload.

Per payload (8 B int, 1 KB bytes, a dict, NumPy arrays 1 KB ... 64 MB): the streaming rate of a
2-rank streampipe job and of a raw mpi4py stream (pickled ``send``/``recv``, and for arrays
``Send``/``Recv`` into a preallocated buffer), all in the same run; and the one-way latency of
an idle streampipe edge (source sleeping 2 ms between items) against raw ping-pong half round
trips. Ratios > 1 mean streampipe costs more per item.
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


def latency(kind: str, nbytes: int, n: int = 200) -> tuple[float, float]:
    """(streampipe idle one-way latency, raw ping-pong half round trip) in microseconds."""
    sp = run_job([stage("src", "Gen", n=n, payload=kind, bytes=nbytes, ms=2.0),
                  stage("snk", "Tally")])
    src, snk = sp.run["ranks"][0], sp.run["ranks"][1]
    ev = src["events"]
    sent = dict(zip(ev[:, 0].astype(int), src["wall0"] + ev[:, 3], strict=True))
    lat = sorted(snk["wall0"] + e[1] - sent[int(e[0])] for e in snk["events"])
    style = "upper" if kind == "array" else "lower"
    pp, _ = run_raw(2, "pingpong", "--payload", kind, "--bytes", nbytes, "--n", 2000,
                    "--style", style)
    return lat[len(lat) // 2] * 1e6, pp["half_rtt"] * 1e6


def main(argv=None) -> int:
    a = parser(__doc__).parse_args(argv)
    sel = [PAYLOADS[i] for i in QUICK] if a.quick else PAYLOADS
    print(f"## Overhead per hop, 2 ranks ({machine()})\n")
    rows, lat_rows = [], []
    for label, kind, nbytes, n in sel:
        n = max(20, n // 4) if a.quick else n
        rows.append([label, n, *rates(kind, nbytes, n)])
        if nbytes <= MB:
            sp_us, raw_us = latency(kind, nbytes, 100 if a.quick else 200)
            lat_rows.append([label, sp_us, raw_us, sp_us / raw_us])
    print(table(["payload", "N", "sp items/s (cap 8)", "sp cap/batch 256", "raw send items/s",
                 "raw Send items/s", "time/item sp/raw", "tuned sp/raw", "sp MB/s", "raw MB/s",
                 "sp/raw rate"], rows))
    print("\nIdle one-way latency (median; streampipe: source t_end -> sink t_recv, the sink "
          "polls with a sleeping back-off; raw: blocking ping-pong that spins):\n")
    print(table(["payload", "streampipe us", "raw half-RTT us", "ratio"], lat_rows))
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
