"""Fork/join jobs against their graph bound: max over stages of t_i x (items it sees per source
item) / replicas (docs/graphs.md).

A source of sleep items forks into two branches of known cost (one replicated), which meet in a
join (merge: the join and the sink see two items per source item; zip: one tuple), then a
sink. Each row is the median (and min) of ``--reps``
runs, the jobs alternating; throughput is source items per second at the sink (steady middle
80 %), against the bound from the nominal times and from the service times the run measured
(sleep overshoots). CPU per source item: getrusage in every stage's close, summed over ranks.
"sim / real": the graph simulator fed the run's own per-item times, against the run's rate.

    PYTHONPATH=. python -m benchmarks.graph [--quick] [--reps 3]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import PY, TMP, JobRun, launch, machine, med, parser, table
from streampipe._toml import tomllib
from streampipe.job import parse_job
from streampipe.plan import make_plan
from streampipe.report import graph_bound
from streampipe.sim import latency_from_run, simulate, times_from_run
from streampipe.summary import StageRow, pipeline_rate

N = 400


def stages(join: str, n: int) -> list[dict[str, Any]]:
    """src 1 ms -> a (4 ms, 2 replicas) and b (3 ms) -> j (1 ms, join) -> out (0.5 ms)."""
    a: dict[str, Any] = {"name": "a", "uses": "benchmarks.stages:Work", "replicas": 2,
                         "inputs": ["src"], "params": {"ms": 4}}
    return [
        {"name": "src", "uses": "benchmarks.stages:Gen", "params": {"ms": 1, "n": n}},
        a,
        {"name": "b", "uses": "benchmarks.stages:Work", "inputs": ["src"], "params": {"ms": 3}},
        {"name": "j", "uses": "benchmarks.stages:Work", "inputs": ["a", "b"], "join": join,
         "params": {"ms": 1}},
        {"name": "out", "uses": "benchmarks.stages:Tally", "params": {"ms": 0.5}},
    ]


def nominal_bound(st: list[dict[str, Any]], join: str) -> float:
    """Source items/s: 1 / max(t_i x items per source item / replicas)."""
    seen = {"src": 1, "a": 1, "b": 1, "j": 2 if join == "merge" else 1,
            "out": 2 if join == "merge" else 1}
    return 1e3 / max(s["params"]["ms"] * seen[s["name"]] / s.get("replicas", 1) for s in st)


def _value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def toml(st: list[dict[str, Any]]) -> str:
    lines = ["[pipeline]", 'name = "graph-bench"', "capacity = 8", "ordered = true"]
    for s in st:
        lines += ["", "[[stages]]"]
        lines += [f"{k} = {_value(v)}" for k, v in s.items() if k != "params"]
        lines.append("[stages.params]")
        lines += [f"{k} = {_value(v)}" for k, v in s["params"].items()]
    return "\n".join(lines) + "\n"


def run(st: list[dict[str, Any]]) -> JobRun:
    from streampipe import runfile

    d = Path(tempfile.mkdtemp(dir=TMP))
    for s in st:
        s["params"]["cpu_dir"] = str(d)
    (d / "job.toml").write_text(toml(st))
    out = d / "run.h5"
    done = launch([PY, "-m", "streampipe", "run", str(d / "job.toml"), "--out", str(out),
                   "--quiet"], 120)
    data = runfile.read(str(out))
    if data["meta"].get("status") != "ok":
        raise RuntimeError(f"{out}: {done.stderr[-2000:]}")
    cpus = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    return JobRun(done.wall, data, data["meta"].get("result"), cpus)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    n = N // 2 if args.quick else N
    configs = [("fork, merge join", "merge"), ("fork, zip join", "zip")]
    got: dict[str, list[tuple[float, float, float, str]]] = {c[0]: [] for c in configs}
    for _ in range(args.reps):  # alternate the jobs within each repeat
        for name, join in configs:
            st = stages(join, n)
            r = run(st)
            per_src = 2 if join == "merge" else 1
            assert r.result["n"] == n * per_src, r.result
            rate = r.rate / per_src  # source items per second
            rows = {k: StageRow.from_dict(v) for k, v in r.run["summary"].items()}
            gb = graph_bound(rows)
            cpu = sum(c["cpu"] for c in r.cpu) / n
            # the graph simulator fed this run's own per-item times (source items/s, as the
            # report's pipeline rate counts them)
            sim = simulate(make_plan(parse_job(tomllib.loads(toml(st)))), times_from_run(r.run),
                           n, latency=latency_from_run(r.run))
            got[name].append((rate, 1 / gb["period"], cpu, gb["stage"],
                              sim.throughput / pipeline_rate(rows)))
    out = []
    for name, join in configs:
        rs = got[name]
        bound = nominal_bound(stages(join, n), join)
        rates = [x[0] for x in rs]
        out.append([name, n, f"{bound:.0f}", f"{med(x[1] for x in rs):.0f}",
                    f"{med(rates):.0f}", f"{min(rates):.0f}", f"{med(rates) / bound:.2f}",
                    f"{med(x[0] / x[1] for x in rs):.2f}", rs[0][3],
                    f"{med(x[4] for x in rs):.2f}", f"{1e3 * med(x[2] for x in rs):.2f}"])
    print(f"## Fork/join throughput vs the graph bound ({machine()}; median of {args.reps}, "
          "jobs alternating)\n")
    print(table(["job", "items", "bound/s", "meas. bound/s", "median/s", "min/s",
                 "x bound", "x meas. bound", "bound stage", "sim / real", "CPU ms/item"], out))


if __name__ == "__main__":
    main()
