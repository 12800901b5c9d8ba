"""GPipe vs 1F1B vs interleaved 1F1B vs ZB-H1 (and 1F1B with recomputation) on one model:
step time, peak activation memory, measured bubble against the formula.

    python benchmarks/train_schedules.py [--stages 2] [--virtual 2] [--micro 8]
        [--minibatch 256] [--epochs 1] [--width 512] [--reps 3] [--kind layers|torch]

One MLP of ``stages * virtual`` linear blocks (width ``--width``, float64) on ``stages`` ranks
(the plain pipeline layout, data on rank 0, labels sent to the last stage), run once per
schedule and repetition, schedules alternating: GPipe, 1F1B, ZB-H1 and 1F1B + ``recompute`` cut
it into ``stages`` stages of ``virtual`` blocks, interleaved 1F1B into ``stages * virtual``
one-block chunks, ``virtual`` per rank. Same ranks, data, weights and work. ``--kind torch``
runs the same MLP as a ``torch.nn.Sequential`` through the PyTorch adapter.

Reported per schedule (min / median over ``--reps`` runs): step time (training wall time /
steps, slowest rank), busy time per step (sum over ranks of the wall time in F/B/I/W/S
actions), CPU time per step (sum over ranks of the training loop's process CPU time, which a
busy machine inflates least; it includes the wire's polling), peak
activation memory (bytes held for pending backwards, the largest rank and the sum over ranks),
and the bubble: the mean over ranks of the training loop's idle fraction (waiting for input or
credit), next to the unit-time formula and the dry run of the same per-rank schedule with the
measured per-stage busy times.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streampipe.runfile import read  # noqa: E402
from streampipe.schedule import bubble_formula, simulate  # noqa: E402
from streampipe.train.config import parse_train  # noqa: E402

CONFIGS = ("gpipe", "1f1b", "interleaved", "zb-h1", "1f1b+recompute")

TORCH_MODEL = '''from torch import nn


def build(blocks, width):
    layers = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(blocks - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))
'''

DATA = '''import numpy as np


def load(n={n}):
    rng = np.random.default_rng(0)
    return rng.random((n, 64)), rng.integers(0, 10, n)
'''


def train_table(args: argparse.Namespace, config: str, tmp: Path) -> dict:
    P, V = args.stages, args.virtual
    blocks = P * V
    schedule, _, extra = config.partition("+")
    per = 1 if schedule == "interleaved" else V  # blocks per stage
    cuts = [2 * per * i for i in range(1, blocks // per)]
    table = {"schedule": schedule, "microbatches": args.micro, "minibatch": args.minibatch,
             "epochs": args.epochs, "cuts": cuts, "dtype": "float64",
             "optimizer": {"name": "sgd", "lr": 0.01},
             "data": {"source": "data.py:load", "shuffle": False}}
    if schedule == "interleaved":
        table["virtual"] = V
    if extra == "recompute":
        table["recompute"] = True
    if args.kind == "torch":
        table["model"] = "net.py:build"
        table["model_args"] = {"blocks": blocks, "width": args.width}
    else:
        sizes = [(64, args.width)] + [(args.width, args.width)] * (blocks - 2) + \
            [(args.width, 10)]
        model = []
        for i, (a, b) in enumerate(sizes):
            model.append({"type": "linear", "in": a, "out": b})
            if i < len(sizes) - 1:
                model.append({"type": "relu"})
        table["model"] = model
    return table


def run_once(table: dict, tmp: Path, name: str) -> dict:
    from tests.train_jobs import train_toml

    job = tmp / f"{name}.toml"
    job.write_text(train_toml(table, name=f"bench-{name}"))
    out = tmp / f"{name}.h5"
    done = subprocess.run([sys.executable, "-m", "streampipe", "run", str(job), "--out",
                           str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return read(str(out))


def measure(run: dict) -> dict:
    ranks = run["ranks"]
    steps = run["meta"]["result"]["steps"]
    idle = [(r["train_split"]["starved"] + r["train_split"]["blocked"]) / r["train_time"]
            for r in ranks]
    return {"step": max(r["step_time"] for r in ranks),
            "busy": sum(r["train_split"]["busy"] for r in ranks) / steps,
            "cpu": sum(r["train_cpu"] for r in ranks) / steps,
            "busy_rank": [r["train_split"]["busy"] / steps for r in ranks],
            "peak_max": max(r["peak_live_bytes"] for r in ranks),
            "peak_sum": sum(r["peak_live_bytes"] for r in ranks),
            "live": [r["peak_live"] for r in ranks],
            "bubble": sum(idle) / len(idle)}


def predicted(layout: Any, busy_rank: list[float]) -> float:
    """Dry run of the job's own schedule with each rank's measured busy time per step spread
    over its stages (a backward taken as twice a forward)."""
    phys = layout.physical(0)
    per_stage = {}
    for r, acts in phys.items():
        stages = sorted({a.stage for a in acts})
        for s in stages:
            per_stage[s] = busy_rank[r] / len(stages) / layout.microbatches
    n = layout.n_stages
    t = [per_stage[s] for s in range(n)]
    return simulate(phys, t_f=[x / 3 for x in t], t_b=[2 * x / 3 for x in t]).bubble


def fmt(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{min(xs) * scale:.{digits}f} / {statistics.median(xs) * scale:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=2, help="ranks P")
    ap.add_argument("--virtual", type=int, default=2, help="chunks per rank (interleaved)")
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--minibatch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kind", choices=("layers", "torch"), default="layers")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    configs = args.configs.split(",")
    P, V, m = args.stages, args.virtual, args.micro
    rows: dict[str, list[dict]] = {c: [] for c in configs}
    tables: dict[str, dict] = {}
    layouts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "net.py").write_text(TORCH_MODEL)
        (tmp / "data.py").write_text(DATA.format(n=args.samples))
        for rep in range(args.reps):
            for c in configs:  # alternate the schedules within each repetition
                tables[c] = train_table(args, c, tmp)
                layouts[c] = parse_train(tables[c], base=str(tmp / "job.toml")).layout()
                rows[c].append(measure(run_once(tables[c], tmp, f"{c.replace('+', '-')}-{rep}")))
    steps = args.samples // args.minibatch * args.epochs
    print(f"P = {P} ranks, {P * V} linear blocks of width {args.width} ({args.kind}, float64), "
          f"V = {V} chunks per rank when interleaved, m = {m} microbatches of "
          f"{args.minibatch // m} samples, {steps} steps per run, {args.reps} runs each "
          "(min / median)")
    head = ("| schedule | step ms | busy ms/step (sum of ranks) | CPU ms/step (sum of ranks) | "
            "peak act. KiB (max rank) | peak act. KiB (sum) | peak live per rank | "
            "bubble measured % | bubble dry run % | bubble formula % |")
    print(head)
    print("|" + "---|" * 10)
    for c in configs:
        rs = rows[c]
        sched = c.partition("+")[0]
        formula = bubble_formula(sched, P, m, V)
        pred = [predicted(layouts[c], r["busy_rank"]) for r in rs]
        print(f"| {c} | {fmt([r['step'] for r in rs], 1e3, 2)} | "
              f"{fmt([r['busy'] for r in rs], 1e3, 2)} | {fmt([r['cpu'] for r in rs], 1e3, 2)} | "
              f"{fmt([r['peak_max'] for r in rs], 1 / 1024, 0)} | "
              f"{fmt([r['peak_sum'] for r in rs], 1 / 1024, 0)} | {rs[0]['live']} | "
              f"{fmt([r['bubble'] for r in rs], 100)} | {fmt(pred, 100)} | "
              f"{100 * formula:.1f} |")
    if "1f1b" in rows:
        base_t = statistics.median(r["step"] for r in rows["1f1b"])
        base_m = statistics.median(r["peak_max"] for r in rows["1f1b"])
        print()
        for c in configs:
            if c == "1f1b":
                continue
            t = statistics.median(r["step"] for r in rows[c])
            mem = statistics.median(r["peak_max"] for r in rows[c])
            print(f"{c} / 1F1B (medians): step time {t / base_t:.2f}x, peak activation memory "
                  f"(max rank) {mem / base_m:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
