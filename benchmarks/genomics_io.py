"""Where the read-mapping pipeline spends its time: reading, mapping, sorting, writing, on
compressed (FASTQ.gz -> BAM) and plain (FASTQ -> SAM) files, from the run files' time split
(``ctx.io`` accounts reads, decompression, spills and writes as I/O), with the report's
bottleneck and advice and the simulator's replica advice.

    PYTHONPATH=. python benchmarks/genomics_io.py [--reads 100000] [--repeats 3]
        [--replicas 1,2] [--advise 8] [--json out.json]

Runs alternate over the configurations and repeat; figures are medians (min in brackets).
The sort stage is a barrier: it emits nothing before its input ends, so the run has a map
phase (read, map, spill) and a write phase (merge, write); both are shown.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from streampipe.runfile import read

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs" / "genomics.toml"
STAGES = ("reads", "map", "sort", "write")


def streampipe(*args: str, cwd: Path, timeout: float = 600) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-m", "streampipe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"streampipe {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


FILES_JOB = """# jobs/genomics.toml's stages on files that exist (no generate)
[pipeline]
name = "genomics-files"
capacity = 8
ordered = false

[[stages]]
name = "reads"
uses = "pipelines.genomics:FastqReads"
params = {{ path = "{fastq}", chunk_rows = 2048 }}

[[stages]]
name = "map"
uses = "pipelines.genomics:Mapper"
replicas = {replicas}
params = {{ reference = "{fasta}", k = 15, band = 8 }}

[[stages]]
name = "sort"
uses = "pipelines.genomics:CoordinateSorter"
params = {{ max_rows_in_memory = 30_000, chunk_rows = 2048 }}

[[stages]]
name = "write"
uses = "pipelines.genomics:AlignmentWriter"
params = {{ path = "out/out.bam", reference = "{fasta}" }}
"""


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def in_process(data: Path, plain: Path, out: Path) -> dict[str, float]:
    """CPU seconds of each step in this one process (no ranks, no contention between stages)."""
    from pysam.libcbgzf import BGZFile

    from pipelines.genomics import (
        AlignmentWriter,
        CoordinateSorter,
        DeviceReference,
        MapParams,
        load_reference,
        map_reads,
        read_fastq,
    )
    from pipelines.genomics.bamcodec import encode_records
    from streampipe.stage import Context

    t: dict[str, float] = {}

    def clock(name: str, fn):
        c0 = cpu_s()
        r = fn()
        t[name] = cpu_s() - c0
        return r

    def inflate() -> None:
        with gzip.open(data / "reads.fastq.gz", "rb") as f:
            while f.read(1 << 20):
                pass

    clock("inflate FASTQ.gz", inflate)
    chunks = clock("read + inflate + parse FASTQ.gz",
                   lambda: list(read_fastq([data / "reads.fastq.gz"], 2048)))
    clock("read + parse FASTQ", lambda: list(read_fastq([plain], 2048)))
    dref = clock("build k-mer index", lambda: DeviceReference(
        load_reference(data / "reference.fa"), MapParams().k))
    mapped = clock("map", lambda: [{**c, **map_reads(dref, c["reads"], c["read_len"],
                                                      MapParams())} for c in chunks])

    def sort() -> list[dict]:
        s = CoordinateSorter()
        s.setup(Context(params={"max_rows_in_memory": 30_000, "chunk_rows": 2048}, stage="s"))
        for m in mapped:
            s.process(m)
        return list(s.finish())

    ordered = clock("sort (spill + merge)", sort)

    def write(path: Path) -> None:
        w = AlignmentWriter()
        w.setup(Context(params={"path": str(path), "reference": str(data / "reference.fa")},
                        stage="w"))
        for c in ordered:
            w.consume(c)
        w.finish()

    clock("write BAM (encode + deflate + index)", lambda: write(out / "p.bam"))
    blobs = clock("  of which: encode records", lambda: [encode_records(
        c["name"], c["flag"].astype("int64"), c["tid"], c["pos"], c["mapq"], c["cigar"],
        c["reads"], c["read_len"], c["qual"], []) for c in ordered])

    def deflate() -> None:
        f = BGZFile(str(out / "raw.bgzf"), "wb")
        for b in blobs:
            f.write(b)
        f.close()

    clock("  of which: BGZF deflate", deflate)
    clock("write SAM (pysam records)", lambda: write(out / "p.sam"))
    return t


def split(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Seconds per stage (summed over replicas) in each state, and I/O bytes."""
    out: dict[str, dict[str, float]] = {}
    for r in run["ranks"]:
        if r is None:
            continue
        s = out.setdefault(r["stage"], {"busy": 0.0, "io": 0.0, "other": 0.0, "starved": 0.0,
                                        "blocked": 0.0, "io_bytes": 0.0, "replicas": 0})
        for k in ("busy", "io", "other", "starved", "blocked"):
            s[k] += float(r["time"].get(k, 0.0))
        s["io_bytes"] += float(r.get("io_bytes", 0))
        s["replicas"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--replicas", default="1,2", help="map replicas to try")
    ap.add_argument("--advise", type=int, default=8, help="rank budget for simulate --advise")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sp-genomics-io-"))
    gen = [f"--set=stages.reads.params.generate.n_reads={args.reads}"]
    streampipe("run", str(JOB), *gen, "--quiet", "--out", "gen.h5", cwd=work)  # simulate once
    data = work / "out/genomics/data"
    with gzip.open(data / "reads.fastq.gz", "rb") as src, open(work / "reads.fastq", "wb") as f:
        shutil.copyfileobj(src, f)
    sizes = {"reads.fastq.gz": (data / "reads.fastq.gz").stat().st_size,
             "reads.fastq": (work / "reads.fastq").stat().st_size}
    fasta = data / "reference.fa"
    configs = []
    for reps in [int(x) for x in args.replicas.split(",")]:
        for kind, fq, out in (("gz->BAM", data / "reads.fastq.gz", "out.bam"),
                              ("plain->SAM", work / "reads.fastq", "out.sam")):
            job = f"{kind[:2]}-{reps}.toml"  # the replicas in the file: simulate reads them
            (work / job).write_text(FILES_JOB.format(fastq=fq, fasta=fasta, replicas=reps))
            configs.append((f"{kind}, map x{reps}", reps, job, out))
    results: dict[str, list[dict]] = {c[0]: [] for c in configs}
    last_run: dict[str, str] = {}
    for rep in range(args.repeats):
        for name, _, job, out in configs:
            run_path = f"run-{name.replace(' ', '').replace(',', '-')}-{rep}.h5"
            streampipe("run", job, f"--set=stages.write.params.path=out/{out}", "--quiet",
                       "--out", run_path, cwd=work)
            run = read(str(work / run_path))
            t = split(run)
            t["_wall"] = {"s": float(run["meta"].get("wall_time", 0.0))}
            t["_out"] = {"bytes": float((work / "out" / out).stat().st_size)}
            results[name].append(t)
            last_run[name] = run_path

    cpu = [in_process(data, work / "reads.fastq", work) for _ in range(args.repeats)]
    print("## Genomics pipeline time split (FASTQ -> map -> sort -> write)\n")
    print(f"### CPU seconds per step in one process ({args.reads:,} reads; median (min) of "
          f"{args.repeats}; getrusage)\n")
    print("| step | CPU s | reads/CPU-s |\n|---|---|---|")
    for k in cpu[0]:
        xs = [c[k] for c in cpu]
        m = statistics.median(xs)
        print(f"| {k} | {m:.2f} ({min(xs):.2f}) | {args.reads / m:,.0f} |")
    print("\n### In the pipeline\n")
    print(f"{args.reads:,} reads x 100 bp, 1 Mbp genome (jobs/genomics.toml), 5 ranks on a "
          f"shared 2-core VM; median (min) of {args.repeats} alternating runs.  Input "
          f"{sizes['reads.fastq.gz'] / 1e6:.1f} MB gzip / {sizes['reads.fastq'] / 1e6:.1f} MB "
          f"plain.  Seconds of rank time per stage, summed over its replicas: work (busy; the "
          f"sort's merge runs in finish() and is counted by the runtime as 'other'), I/O "
          f"(ctx.io: read + inflate, spill + merge reads, BAM/SAM write + deflate + index).\n")
    head = ("| config | wall s | read: io / parse | map: work | sort: io / merge+other | "
            "write: io / build records | output MB |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")

    def med(name: str, stage: str, key: str) -> str:
        xs = [r[stage][key] for r in results[name]]
        return f"{statistics.median(xs):.2f} ({min(xs):.2f})"

    table = {}
    for name, *_ in configs:
        rs = results[name]
        table[name] = {st: {k: statistics.median(r[st][k] for r in rs)
                            for k in ("busy", "io", "other", "io_bytes")} for st in STAGES}
        table[name]["wall"] = statistics.median(r["_wall"]["s"] for r in rs)
        print(f"| {name} | {statistics.median(r['_wall']['s'] for r in rs):.2f} | "
              f"{med(name, 'reads', 'io')} / {med(name, 'reads', 'busy')} | "
              f"{med(name, 'map', 'busy')} | {med(name, 'sort', 'io')} / "
              f"{med(name, 'sort', 'other')} | {med(name, 'write', 'io')} / "
              f"{med(name, 'write', 'busy')} | {rs[0]['_out']['bytes'] / 1e6:.1f} |")
    for name in (configs[0][0], configs[-2][0]):
        print(f"\n### `streampipe report` on the last '{name}' run\n")
        rep = streampipe("report", last_run[name], cwd=work)
        kept: list[str] = []
        for line in rep.splitlines():
            if line.startswith(("bottleneck", "advice", "throughput", "stage", "reads", "map",
                                "sort", "write", "---")):
                kept.append(line)
            elif kept and kept[-1].startswith("advice") and line and line[0].islower():
                kept[-1] += line  # the report wraps long advice lines
        print("```\n" + "\n".join(kept) + "\n```")
        print(f"\n`streampipe simulate JOB --from RUN --advise {args.advise}`:\n")
        job = next(c[2] for c in configs if c[0] == name)
        sim = streampipe("simulate", job, "--from", last_run[name], "--advise",
                         str(args.advise), cwd=work)
        print("```\n" + sim.strip() + "\n```")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
