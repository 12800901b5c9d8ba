"""Run files and start-up at 8-128 ranks: one source, k replicas of a sleeping stage, one sink.

For each rank count: the whole command's wall time, start-up (command start to the source's
first item), the makespan (source's first item to the sink's last), finish (sink's last item to
the command's end), rank 0's peak RSS (VmHWM, polled from /proc while the job runs), the run
file's size (with its shards), and where start-up went (median over ranks of the stamps in the
run file: process start -> streampipe imported -> MPI initialised -> job validated -> node
discovery and ports -> stage set up).
Sleeping stages do not spin, so 128 ranks fit on 2 cores.

    PYTHONPATH=. python -m benchmarks.scaling [--ranks 8,32,64,128] [--reps 3] [--per 100]
        [--ms 20] [--code DIR]

``--code DIR`` runs another checkout's streampipe (e.g. main before shards) for comparison;
``--per N --ms 0`` makes every replica keep N events (N x replicas items in all).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = """
[pipeline]
name = "scale"
capacity = 4
[[stages]]
name = "src"
uses = "tests.stages:Numbers"
params = {{ n = {n} }}
[[stages]]
name = "sleep"
uses = "tests.stages:Sleep"
replicas = {k}
params = {{ ms = {ms} }}
[[stages]]
name = "sink"
uses = "tests.stages:Checksum"
"""


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        for key in (b"PMI_RANK=", b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK="):
            if kv.startswith(key):
                return int(kv[len(key):])
    return None


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Rank0Peak(threading.Thread):
    """Polls every 50 ms for the process that is MPI rank 0 of a job running under
    ``marker`` (a string in its command line) and keeps the largest VmHWM seen."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.peak, self.stop = marker, 0, threading.Event()
        self.pid: int | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            if self.pid is None:
                for p in Path("/proc").iterdir():
                    if p.name.isdigit():
                        try:
                            cmd = (p / "cmdline").read_bytes()
                        except OSError:
                            continue
                        if self.marker.encode() in cmd and b"--no-launch" in cmd \
                                and _rank_of(int(p.name)) == 0:
                            self.pid = int(p.name)
                            break
            if self.pid is not None:
                self.peak = max(self.peak, _hwm_kb(self.pid))
            time.sleep(0.05)


def _size(path: Path) -> int:
    total = path.stat().st_size if path.exists() else 0
    shards = path.with_name(path.name + ".ranks")
    if shards.is_dir():
        total += sum(f.stat().st_size for f in shards.iterdir())
    return total


def one(ranks: int, per: int, ms: float, code: Path, workdir: Path, tag: str) -> dict:
    k = ranks - 2
    n = per * k
    job = workdir / f"{tag}.toml"
    job.write_text(JOB.format(n=n, k=k, ms=ms))
    out = workdir / f"{tag}.h5"
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{ROOT}")
    mon = Rank0Peak(str(job))
    mon.start()
    help_text = subprocess.run([sys.executable, "-m", "streampipe", "run", "--help"], env=env,
                               cwd=workdir, capture_output=True, text=True).stdout
    limit = ["--max-ranks", str(ranks)] if "--max-ranks" in help_text else []  # older code
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "streampipe", "run", str(job), "--out", str(out),
                           "--quiet", *limit], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=900)
    t1 = time.time()
    mon.stop.set()
    mon.join()
    if done.returncode:
        raise RuntimeError(f"{ranks} ranks failed:\n{done.stderr[-3000:]}")
    # read with *this* checkout's reader (it reads old single-file runs too)
    sys.path.insert(0, str(ROOT))
    from streampipe.events import T_RECV, T_SENT, on_wall
    from streampipe.runfile import read

    run = read(str(out))
    ranks_ = run["ranks"]
    src, sink = on_wall(ranks_[0]), on_wall(ranks_[-1])
    first, last = float(src[:, T_RECV].min()), float(sink[:, T_SENT].max())
    row = {"ranks": ranks, "items": n, "wall": t1 - t0, "startup": first - t0,
           "makespan": last - first, "finish": t1 - last, "rss0_mb": mon.peak / 1024,
           "file_mb": _size(out) / 1e6}
    stamps = [d.get("startup") for d in ranks_ if d and d.get("startup")]
    if stamps:
        def span(a: str, b: str) -> float | None:
            xs = [s[b] - s[a] for s in stamps if a in s and b in s]
            return statistics.median(xs) if xs else None
        row.update(imports=span("process", "imported"), mpi=span("imported", "mpi_init"),
                   validate=span("mpi_init", "validated"), node=span("validated", "node"),
                   setup=span("node", "ready"), last_ready=max(
                       (s["ready"] for s in stamps if "ready" in s), default=t0) - t0,
                   first_process=min((s["process"] for s in stamps if "process" in s),
                                     default=t0) - t0)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="8,32,64,128")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--per", type=int, default=100, help="items per sleeping replica")
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--code", default=str(ROOT), help="checkout whose streampipe runs")
    args = ap.parse_args()
    counts = [int(x) for x in args.ranks.split(",")]
    rows: dict[int, list[dict]] = {r: [] for r in counts}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(args.reps):
            order = counts if rep % 2 == 0 else counts[::-1]  # alternate, as load drifts
            for r in order:
                rows[r].append(one(r, args.per, args.ms, Path(args.code), Path(d), f"r{r}_{rep}"))
                print(f"# rep {rep} ranks {r}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in rows[r][-1].items() if isinstance(v, float)),
                    flush=True)
    keys = ["wall", "startup", "makespan", "finish", "rss0_mb", "file_mb", "first_process",
            "imports", "mpi", "validate", "node", "setup", "last_ready"]
    print(f"\ncode: {args.code}; {args.reps} reps, min / median; load {os.getloadavg()[0]:.1f}")
    print("| ranks | items | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for r in counts:
        cells = []
        for k in keys:
            xs = [x[k] for x in rows[r] if x.get(k) is not None]
            cells.append(f"{min(xs):.2f} / {statistics.median(xs):.2f}" if xs else "-")
        print(f"| {r} | {rows[r][0]['items']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
