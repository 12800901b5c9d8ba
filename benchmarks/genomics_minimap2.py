"""Read mapping next to minimap2: positions on simulated reads with a known truth, reads/s of
our kernel and of minimap2 single-threaded, and the BAM read back through pysam.

    PYTHONPATH=. python benchmarks/genomics_minimap2.py [--reads 100000] [--genome 2000000]
        [--repeats 3] [--json out.json]

Needs mappy (``pip install ".[bench]"``).  Both mappers see the same FASTA and FASTQ.gz.
The kernel rate counts mapping only (chunks already in memory, as the pipeline's map stage gets
them); minimap2's counts ``Aligner.map`` per read (its C code plus the Python loop over reads,
the way a mappy user runs it), index built beforehand for both.  Runs alternate (ours,
minimap2, ours, ...); rates are reads / CPU seconds of this process (getrusage), min and median
over the repeats, with wall time alongside.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.genomics import (
    AlignmentWriter,
    CoordinateSorter,
    DeviceReference,
    MapParams,
    load_reference,
    load_truth,
    make_dataset,
    map_reads,
    read_fastq,
    repeat_overlap,
)
from pipelines.genomics.data import FASTA_NAME, FASTQ_NAME
from pipelines.genomics.seqcodes import BASES
from streampipe.stage import Context


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn) -> tuple[Any, float, float]:
    c0, w0 = cpu_s(), time.perf_counter()
    out = fn()
    return out, cpu_s() - c0, time.perf_counter() - w0


def run_ours(dref: DeviceReference, chunks: list[dict], params: MapParams) -> dict:
    outs = [map_reads(dref, c["reads"], c["read_len"], params) for c in chunks]
    w = max(o["cigar"].shape[1] for o in outs)
    return {k: np.concatenate([np.pad(o[k], ((0, 0), (0, w - o[k].shape[1]))) if k == "cigar"
                               else o[k] for o in outs]) for k in outs[0]}


def run_minimap2(aligner: Any, seqs: list[str], ctg_index: dict[str, int]) -> dict:
    n = len(seqs)
    tid = np.full(n, -1)
    pos = np.full(n, -1)
    start_unclipped = np.full(n, -1)
    rev = np.zeros(n, bool)
    mapq = np.zeros(n, int)
    for i, s in enumerate(seqs):
        for h in aligner.map(s):
            if not h.is_primary:
                continue
            tid[i], pos[i], rev[i], mapq[i] = ctg_index[h.ctg], h.r_st, h.strand < 0, h.mapq
            clip = h.q_st if h.strand > 0 else len(s) - h.q_en  # soft clip at the left end
            start_unclipped[i] = h.r_st - clip
            break
    return {"tid": tid, "pos": pos, "rev": rev, "mapq": mapq, "pos_unclipped": start_unclipped}


def table(rows: list[list[Any]], head: list[str]) -> str:
    cells = [head] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
                     + [line(r) for r in cells[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--genome", type=int, default=2_000_000)
    ap.add_argument("--read-len", type=int, default=100)
    ap.add_argument("--indel-rate", type=float, default=0.2)
    ap.add_argument("--mismatch-rate", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    try:
        import mappy
    except ImportError:
        print("genomics_minimap2: mappy is not installed (pip install '.[bench]')",
              file=sys.stderr)
        return 2
    import pysam

    tmp = Path(tempfile.mkdtemp(prefix="sp-genomics-bench-"))
    data = make_dataset(tmp / "data", genome_len=args.genome, n_reads=args.reads,
                        read_len=args.read_len, n_contigs=2, mismatch_rate=args.mismatch_rate,
                        indel_rate=args.indel_rate, max_indel=3, seed=1, n_repeats=40,
                        copies=3, repeat_len=500)
    truth = load_truth(data)
    unique, inside = repeat_overlap(truth, args.read_len)
    chunks = list(read_fastq([data / FASTQ_NAME], args.chunk))
    seqs = [BASES[c["reads"][i, :c["read_len"][i]]].tobytes().decode()
            for c in chunks for i in range(len(c["read_id"]))]
    ref = load_reference(data / FASTA_NAME)
    params = MapParams()
    dref, ours_index_cpu, _ = timed(lambda: DeviceReference(ref, params.k))
    aligner, mm2_index_cpu, _ = timed(lambda: mappy.Aligner(str(data / FASTA_NAME), preset="sr",
                                                            n_threads=1))
    ctg = {n: i for i, n in enumerate(ref.names)}
    run_ours(dref, chunks[:1], params)  # warm-up: first-touch page faults of the big arrays
    ours_cpu, ours_wall, mm2_cpu, mm2_wall = [], [], [], []
    for _ in range(args.repeats):
        ours, c, w = timed(lambda: run_ours(dref, chunks, params))
        ours_cpu.append(c)
        ours_wall.append(w)
        mm2, c, w = timed(lambda: run_minimap2(aligner, seqs, ctg))
        mm2_cpu.append(c)
        mm2_wall.append(w)
    n = args.reads

    def rates(xs: list[float]) -> tuple[int, int]:
        return int(n / max(xs)), int(n / statistics.median(xs))

    right = lambda t, p, r: (t == truth["true_tid"]) & (p == truth["true_pos"]) & (
        r == truth["true_rev"])
    o_rev = (ours["flag"] & 16) != 0
    o_ok = right(ours["tid"], ours["pos"], o_rev)
    m_ok = right(mm2["tid"], mm2["pos"], mm2["rev"])
    m_ok_unclipped = right(mm2["tid"], mm2["pos_unclipped"], mm2["rev"])
    same = (ours["tid"] == mm2["tid"]) & (o_rev == mm2["rev"])
    agree = same & (ours["pos"] == mm2["pos"])
    agree_unclipped = same & (ours["pos"] == mm2["pos_unclipped"])
    both = (mm2["tid"] >= 0) & ((ours["flag"] & 4) == 0)
    classes = {"unique": unique, "unique, reverse": unique & truth["true_rev"],
               "unique, with indel": unique & (truth["true_indel"] != 0),
               "unique, no indel": unique & (truth["true_indel"] == 0),
               "inside a repeat": inside}
    rows = []
    for name, m in classes.items():
        rows.append([name, int(m.sum()), f"{o_ok[m].mean():.4f}", f"{m_ok[m].mean():.4f}",
                     f"{m_ok_unclipped[m].mean():.4f}", f"{agree[m].mean():.4f}",
                     f"{agree_unclipped[m].mean():.4f}",
                     f"{agree_unclipped[m & both].mean():.4f}",
                     int(np.count_nonzero(m & ((ours['flag'] & 4) != 0))),
                     int(np.count_nonzero(m & (mm2["tid"] < 0)))])
    amb = inside
    mapq_rows = [["ours", f"{(ours['mapq'][amb] == 0).mean():.4f}",
                  f"{(ours['mapq'][unique] >= 30).mean():.4f}",
                  int(np.count_nonzero(unique & ~o_ok & (ours['mapq'] >= 30)))],
                 ["minimap2", f"{(mm2['mapq'][amb] == 0).mean():.4f}",
                  f"{(mm2['mapq'][unique] >= 30).mean():.4f}",
                  int(np.count_nonzero(unique & ~m_ok_unclipped & (mm2['mapq'] >= 30)))]]

    # The BAM through the sort and write stages, read back with pysam (samtools' library).
    sorter = CoordinateSorter()
    sorter.setup(Context(params={"max_rows_in_memory": max(n // 4, 1)}, stage="sort"))
    for c in chunks:
        sorter.process({**c, **map_reads(dref, c["reads"], c["read_len"], params)})
    writer = AlignmentWriter()
    bam = tmp / "mapped.bam"
    writer.setup(Context(params={"path": str(bam), "reference": str(data / FASTA_NAME)},
                         stage="write"))
    (_, write_cpu, _) = timed(lambda: [writer.consume(x) for x in sorter.finish()]
                              + [writer.finish()])
    with pysam.AlignmentFile(str(bam)) as f:
        keys = [(a.reference_id if not a.is_unmapped else 1 << 30, a.reference_start)
                for a in f.fetch(until_eof=True)]
        bam_ok = {"indexed": f.has_index() and f.check_index(),
                  "sorted": keys == sorted(keys), "records": len(keys),
                  "SO": f.header["HD"]["SO"], "mapped": f.mapped, "unmapped": f.unmapped}

    print(f"## Read mapping vs minimap2 {mappy.__version__} (sr preset, 1 thread)\n")
    print(f"{n:,} reads of {args.read_len} bp from a {args.genome:,} bp genome (2 contigs, 40 "
          f"repeat families x 3 copies x 500 bp); substitutions {args.mismatch_rate}, one "
          f"1-3 bp indel in {args.indel_rate:.0%} of reads, both strands.  Machine shared with "
          f"other work; {args.repeats} alternating repeats.\n")
    print(table([["ours (NumPy kernel, 1 process)", *rates(ours_cpu),
                  int(n / statistics.median(ours_wall)), f"{ours_index_cpu:.2f}"],
                 ["minimap2 (mappy, 1 thread)", *rates(mm2_cpu),
                  int(n / statistics.median(mm2_wall)), f"{mm2_index_cpu:.2f}"]],
                ["mapper", "reads/CPU-s (min)", "reads/CPU-s (median)", "reads/s wall (median)",
                 "index CPU s"]))
    print("\nFraction at the true (contig, position, strand); minimap2 soft-clips ends, so its "
          "position is also given with the left clip added back ('unclipped'); agreement = "
          "same contig, strand and position as minimap2:\n")
    print(table(rows, ["reads", "n", "ours true", "mm2 true", "mm2 true (unclipped)",
                       "agree", "agree (unclipped)", "agree where both map", "ours unmapped",
                       "mm2 unmapped"]))
    print("\nMAPQ:\n")
    print(table(mapq_rows, ["mapper", "MAPQ 0 inside repeats", "MAPQ >= 30 on unique",
                            "wrong unique with MAPQ >= 30"]))
    print(f"\nBAM via CoordinateSorter + AlignmentWriter ({write_cpu:.2f} CPU s to merge, write "
          f"and index), read back with pysam {pysam.__version__}: {bam_ok}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "reads": n, "ours_cpu_s": ours_cpu, "ours_wall_s": ours_wall, "mm2_cpu_s": mm2_cpu,
            "mm2_wall_s": mm2_wall, "classes": rows, "mapq": mapq_rows, "bam": bam_ok},
            indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
