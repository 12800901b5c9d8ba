"""GPipe vs 1F1B over MPI: peak live activations (count, bytes) per stage rank and step time.

    python benchmarks/train_schedules.py [--stages 4] [--micro 8] [--minibatch 256] [--epochs 2]

Runs ``streampipe run`` on a 4-stage MLP (one client, server pipelined over 3 ranks, labels sent
to the last stage), once per schedule, and prints the measured peaks next to the schedule's
unit-time dry run. Both runs use the same data and weights, and finish with identical weights.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streampipe.runfile import read  # noqa: E402
from streampipe.schedule import gpipe, one_f_one_b, simulate  # noqa: E402

WIDTH = 512


def job_text(n_stages: int, micro: int, minibatch: int, epochs: int, schedule: str) -> str:
    layers = [(64, WIDTH)] + [(WIDTH, WIDTH)] * (n_stages - 2) + [(WIDTH, 10)]
    model = []
    for i, (a, b) in enumerate(layers):
        model.append(f"[[train.model]]\ntype = \"linear\"\nin = {a}\nout = {b}\n")
        if i < len(layers) - 1:
            model.append("[[train.model]]\ntype = \"relu\"\n")
    cuts = [2 * i for i in range(1, n_stages)]  # each stage: linear + relu (last: linear)
    return (f"[pipeline]\nname = \"bench-{schedule}\"\n\n[train]\nschedule = \"{schedule}\"\n"
            f"microbatches = {micro}\nminibatch = {minibatch}\nepochs = {epochs}\n"
            f"clients = 1\nu_shape = false\ncuts = {cuts}\ndtype = \"float64\"\n"
            f"audit_samples = 50\n\n[train.optimizer]\nname = \"sgd\"\nlr = 0.01\n\n"
            f"[train.data]\nsource = \"synthetic\"\n\n" + "\n".join(model))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--minibatch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    P, m = args.stages, args.micro
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sched in ("gpipe", "1f1b"):
            job = Path(tmp) / f"{sched}.toml"
            job.write_text(job_text(P, m, args.minibatch, args.epochs, sched))
            out = Path(tmp) / f"{sched}.h5"
            done = subprocess.run([sys.executable, "-m", "streampipe", "run", str(job), "--out",
                                   str(out), "--quiet"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            rows[sched] = read(str(out))
    sims = {"gpipe": simulate(gpipe(P, m)), "1f1b": simulate(one_f_one_b(P, m))}
    print(f"P = {P} stages (ranks), m = {m} microbatches of {args.minibatch // m} samples, "
          f"width {WIDTH}, float64; {rows['gpipe']['meta']['result']['steps']} steps")
    head = (f"{'schedule':<8}{'rank':>5}{'peak live':>11}{'(dry run)':>10}{'peak KiB':>11}"
            f"{'busy %':>8}{'idle %':>8}")
    print(head)
    print("-" * len(head))
    for sched, run in rows.items():
        for r, d in enumerate(run["ranks"]):
            tt = d["train_split"]
            el = max(d["train_time"], 1e-12)
            print(f"{sched:<8}{r:>5}{d['peak_live']:>11}{sims[sched].peak_activations[r]:>10}"
                  f"{d['peak_live_bytes'] / 1024:>11.0f}{100 * tt['busy'] / el:>8.0f}"
                  f"{100 * (tt['starved'] + tt['blocked']) / el:>8.0f}")
    print()
    g, f = rows["gpipe"], rows["1f1b"]
    tg, tf = g["meta"]["result"]["step_time"], f["meta"]["result"]["step_time"]
    mg = sum(d["peak_live_bytes"] for d in g["ranks"])
    mf = sum(d["peak_live_bytes"] for d in f["ranks"])
    print(f"{'':<8}{'step ms':>10}{'sum of peak KiB':>17}{'dry-run makespan':>18}")
    print(f"{'gpipe':<8}{1e3 * tg:>10.2f}{mg / 1024:>17.0f}{sims['gpipe'].makespan:>18g}")
    print(f"{'1f1b':<8}{1e3 * tf:>10.2f}{mf / 1024:>17.0f}{sims['1f1b'].makespan:>18g}")
    print(f"1F1B / GPipe: step time {tf / tg:.2f}x, peak activation memory {mf / mg:.2f}x "
          f"(stage 0: {f['ranks'][0]['peak_live_bytes'] / g['ranks'][0]['peak_live_bytes']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
