"""VaR throughput (scenarios/s) across batch sizes and Valuation replicas, by running
jobs/var.toml under ``streampipe run --set ...`` and reading the run files.

    python benchmarks/var_batch.py [--scenarios 524288] [--batches 1024,4096,16384,65536]
                                   [--replicas 1,2] [--repeat 3]

Throughput is scenarios / makespan (first source item started -> last sink item finished, from
the run file), so MPI start-up is excluded.  Small batches pay the per-item cost (messages,
Python calls); large ones leave too few items to overlap stages and fill replicas.  With CuPy
and a GPU the sweep also runs with ``device = "gpu"`` and reports, per batch size, the device
working set against free GPU memory: past it the Valuation stage sub-batches
(``gpu_memory_budget``), which is where GPU memory limits the batch size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PY, ROOT, TMP, JobRun, launch  # noqa: E402

JOB = str(ROOT / "jobs" / "var.toml")


def run_var(n: int, batch: int, replicas: int, device: str) -> JobRun:
    """One run of jobs/var.toml; the JobRun of its run file."""
    from streampipe import runfile

    out = TMP / f"var-{batch}-{replicas}-{device}.h5"
    sets = [f"stages.scenarios.params.n_scenarios={n}",
            f"stages.scenarios.params.batch_size={batch}",
            f"stages.value.replicas={replicas}", f"stages.value.device=\"{device}\""]
    cmd = [PY, "-m", "streampipe", "run", JOB, "--out", str(out), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    done = launch(cmd, timeout=120)
    run = runfile.read(str(out))
    if run["meta"].get("status") != "ok":
        raise RuntimeError(f"{out}: status {run['meta'].get('status')}: {done.stderr[-2000:]}")
    return JobRun(done.wall, run, run["meta"].get("result"))


def gpu_free_bytes() -> int | None:
    """Free memory of GPU 0, or None without CuPy or a device."""
    try:
        import cupy as cp

        return int(cp.cuda.runtime.memGetInfo()[0])
    except Exception:  # no cupy, no driver, no device: the GPU part is skipped
        return None


def sweep(n: int, batches: list[int], replicas: list[int], device: str, repeat: int
          ) -> dict[tuple[int, int], float]:
    rates: dict[tuple[int, int], float] = {}
    for b in batches:
        for r in replicas:
            runs = [run_var(n, b, r, device) for _ in range(repeat)]
            rates[b, r] = sorted(n / jr.makespan for jr in runs)[len(runs) // 2]
            print(f"  {device} batch {b:>7,} replicas {r}: {rates[b, r]:>12,.0f} scenarios/s",
                  flush=True)
    return rates


def table(rates: dict[tuple[int, int], float], batches: list[int], replicas: list[int],
          device: str) -> str:
    head = f"| batch ({device}) | " + " | ".join(f"{r} replica(s) scen/s" for r in replicas) + " |"
    lines = [head, "|" + "---|" * (len(replicas) + 1)]
    for b in batches:
        lines.append(f"| {b:,} | " + " | ".join(f"{rates[b, r]:,.0f}" for r in replicas) + " |")
    best = max(rates, key=rates.get)
    lines.append(f"\nsweet spot ({device}): batch {best[0]:,} with {best[1]} replica(s), "
                 f"{rates[best]:,.0f} scenarios/s")
    for r in replicas:
        col = {b: rates[b, r] for b in batches}
        top = max(col.values())
        ok = [b for b in batches if col[b] >= 0.9 * top]
        lines.append(f"  {r} replica(s): within 10% of its best for batch "
                     f"{min(ok):,}..{max(ok):,}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=524_288)
    ap.add_argument("--batches", default="1024,4096,16384,65536")
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point (median)")
    a = ap.parse_args()
    batches = [int(x) for x in a.batches.split(",")]
    replicas = [int(x) for x in a.replicas.split(",")]
    print(f"VaR throughput, {a.scenarios:,} scenarios per run (jobs/var.toml)", flush=True)
    rates = sweep(a.scenarios, batches, replicas, "cpu", a.repeat)
    print("\n" + table(rates, batches, replicas, "cpu"))

    free = gpu_free_bytes()
    if free is None:
        print("\nGPU: skipped (no CuPy or no device)")
        return
    from pipelines.var import load_portfolio
    from pipelines.var.valuation import bytes_per_scenario

    need = bytes_per_scenario(load_portfolio("pipelines/var/data/portfolio.toml"))
    gpu = sweep(a.scenarios, batches, replicas, "gpu", a.repeat)
    print("\n" + table(gpu, batches, replicas, "gpu"))
    print(f"\nGPU memory: {need} bytes per scenario, {free / 2**30:.1f} GiB free -> one replica "
          f"values at most {free // need:,} scenarios per pass; shared by R replicas on one "
          "device, a batch above free / (R * bytes) must be sub-batched (gpu_memory_budget)")
    for b in batches:
        for r in replicas:
            fits = b * need * r <= free
            print(f"  batch {b:>7,} x {r} replica(s): {b * need * r / 2**20:>9.1f} MiB "
                  f"{'fits' if fits else 'EXCEEDS free memory'}")


if __name__ == "__main__":
    main()
