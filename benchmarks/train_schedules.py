"""GPipe vs 1F1B vs interleaved 1F1B over MPI: peak live activations per rank and step time.

    python benchmarks/train_schedules.py [--stages 4] [--virtual 2] [--micro 8]
                                         [--minibatch 256] [--epochs 2]

Runs ``streampipe run`` on one MLP of ``stages * virtual`` linear blocks (one client, the server
pipelined over ``stages - 1`` ranks, labels sent to the last stage), once per schedule: GPipe and
1F1B cut it into ``stages`` stages of ``virtual`` blocks (one per rank), interleaved 1F1B into
``stages * virtual`` one-block chunks, ``virtual`` per rank. Same ranks, data, weights and work;
the measured per-rank peaks are printed next to the schedule's dry run (unit time per block).
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
from streampipe.schedule import gpipe, interleaved_1f1b, one_f_one_b, simulate  # noqa: E402

WIDTH = 512
SCHEDULES = ("gpipe", "1f1b", "interleaved")


def job_text(n_ranks: int, virtual: int, micro: int, minibatch: int, epochs: int,
             schedule: str) -> str:
    blocks = n_ranks * virtual
    layers = [(64, WIDTH)] + [(WIDTH, WIDTH)] * (blocks - 2) + [(WIDTH, 10)]
    model = []
    for i, (a, b) in enumerate(layers):
        model.append(f"[[train.model]]\ntype = \"linear\"\nin = {a}\nout = {b}\n")
        if i < len(layers) - 1:
            model.append("[[train.model]]\ntype = \"relu\"\n")
    # a block is linear + relu (the last: linear); a stage is `per` blocks
    per = 1 if schedule == "interleaved" else virtual
    cuts = [2 * per * i for i in range(1, blocks // per)]
    extra = f"virtual = {virtual}\n" if schedule == "interleaved" else ""
    return (f"[pipeline]\nname = \"bench-{schedule}\"\n\n[train]\nschedule = \"{schedule}\"\n"
            f"{extra}microbatches = {micro}\nminibatch = {minibatch}\nepochs = {epochs}\n"
            f"clients = 1\nu_shape = false\ncuts = {cuts}\ndtype = \"float64\"\n"
            f"audit_samples = 50\n\n[train.optimizer]\nname = \"sgd\"\nlr = 0.01\n\n"
            f"[train.data]\nsource = \"synthetic\"\n\n" + "\n".join(model))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=4, help="ranks P")
    ap.add_argument("--virtual", type=int, default=2, help="chunks per rank (interleaved)")
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--minibatch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    P, V, m = args.stages, args.virtual, args.micro
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sched in SCHEDULES:
            job = Path(tmp) / f"{sched}.toml"
            job.write_text(job_text(P, V, m, args.minibatch, args.epochs, sched))
            out = Path(tmp) / f"{sched}.h5"
            done = subprocess.run([sys.executable, "-m", "streampipe", "run", str(job), "--out",
                                   str(out), "--quiet"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            rows[sched] = read(str(out))
    # unit time = one block; a GPipe/1F1B stage is V blocks
    sims = {"gpipe": simulate(gpipe(P, m), t_f=V, t_b=V),
            "1f1b": simulate(one_f_one_b(P, m), t_f=V, t_b=V),
            "interleaved": simulate(interleaved_1f1b(P, m, V))}
    print(f"P = {P} ranks, {P * V} linear blocks (V = {V} chunks per rank when interleaved), "
          f"m = {m} microbatches of {args.minibatch // m} samples, width {WIDTH}, float64; "
          f"{rows['gpipe']['meta']['result']['steps']} steps")
    head = (f"{'schedule':<12}{'rank':>5}{'peak live':>11}{'(dry run)':>10}{'peak KiB':>11}"
            f"{'busy %':>8}{'idle %':>8}")
    print(head)
    print("-" * len(head))
    for sched, run in rows.items():
        for r, d in enumerate(run["ranks"]):
            tt = d["train_split"]
            el = max(d["train_time"], 1e-12)
            print(f"{sched:<12}{r:>5}{d['peak_live']:>11}"
                  f"{sims[sched].rank_peak_activations[r]:>10}"
                  f"{d['peak_live_bytes'] / 1024:>11.0f}{100 * tt['busy'] / el:>8.0f}"
                  f"{100 * (tt['starved'] + tt['blocked']) / el:>8.0f}")
    print()
    print(f"{'':<12}{'step ms':>10}{'sum of peak KiB':>17}{'max rank KiB':>14}"
          f"{'dry-run makespan':>18}")
    base = rows["1f1b"]
    for sched, run in rows.items():
        t = run["meta"]["result"]["step_time"]
        mem = sum(d["peak_live_bytes"] for d in run["ranks"])
        top = max(d["peak_live_bytes"] for d in run["ranks"])
        print(f"{sched:<12}{1e3 * t:>10.2f}{mem / 1024:>17.0f}{top / 1024:>14.0f}"
              f"{sims[sched].makespan:>18g}")
    tb = base["meta"]["result"]["step_time"]
    mb = sum(d["peak_live_bytes"] for d in base["ranks"])
    for sched in ("gpipe", "interleaved"):
        run = rows[sched]
        t = run["meta"]["result"]["step_time"]
        mem = sum(d["peak_live_bytes"] for d in run["ranks"])
        print(f"{sched} / 1F1B: step time {t / tb:.2f}x, peak activation memory {mem / mb:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
