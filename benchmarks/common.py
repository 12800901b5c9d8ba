"""Shared helpers of the benchmarks: launch a command with a timeout, run a job under streampipe
and read its run file, run a raw mpi4py script, medians, and Markdown tables.

Every launch goes through :func:`launch` (own process group, killed on timeout), so a hung
configuration costs its timeout and never the whole benchmark run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RAW = str(Path(__file__).resolve().parent / "raw_mpi.py")
TMP = Path(tempfile.mkdtemp(prefix="spbench-"))


@dataclass
class Launched:
    rc: int
    stdout: str
    stderr: str
    wall: float  # seconds, whole command including start-up


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def launch(cmd: Sequence[str], timeout: float = 120.0,
           env: dict[str, str] | None = None) -> Launched:
    """Run ``cmd`` from the repo root in its own process group (``env``: extra environment);
    kill the group on timeout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(env), cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout} s: {' '.join(cmd)}\n{err[-2000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = Launched(proc.returncode, out, err, time.perf_counter() - t0)
    if done.rc != 0:
        raise RuntimeError(f"exit {done.rc}: {' '.join(cmd)}\n{out[-2000:]}\n{err[-3000:]}")
    return done


# ----------------------------------------------------------------------------- job files
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_toml_value(x.item() if hasattr(x, "item") else x)
                               for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def stage(name: str, uses: str = "Work", replicas: int = 1, fields: dict[str, Any] | None = None,
          **params: Any) -> dict[str, Any]:
    """One ``[[stages]]`` entry; ``uses`` without a module means ``benchmarks.stages``;
    ``fields``: more stage fields (``route``, ``key``, ...)."""
    if ":" not in uses:
        uses = f"benchmarks.stages:{uses}"
    return {"name": name, "uses": uses, "replicas": replicas, "params": params,
            "fields": dict(fields or {})}


def job_toml(stages: list[dict[str, Any]], name: str = "bench", **pipeline: Any) -> str:
    """The TOML text of a job with ``[pipeline]`` fields ``pipeline`` and the given stages."""
    lines = ["[pipeline]", f"name = {json.dumps(name)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in pipeline.items()]
    for st in stages:
        lines += ["", "[[stages]]", f"name = {json.dumps(st['name'])}",
                  f"uses = {json.dumps(st['uses'])}", f"replicas = {st['replicas']}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in st.get("fields", {}).items()]
        if st["params"]:
            lines.append("[stages.params]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in st["params"].items()]
    return "\n".join(lines) + "\n"


@dataclass
class JobRun:
    """A finished streampipe run, measured from its run file."""

    wall: float  # whole `streampipe run` command
    run: dict[str, Any]  # runfile.read() output
    result: Any = None
    cpu: list[dict[str, Any]] = field(default_factory=list)  # per rank, from stages' cpu_dir

    def _events(self, kind: str) -> tuple[np.ndarray, float]:
        for d in self.run["ranks"]:
            if d is not None and self.run["summary"][d["stage"]]["kind"] == kind:
                return d["events"], d["wall0"]
        raise ValueError(f"run has no {kind} rank")

    @property
    def n(self) -> int:
        return len(self._events("sink")[0])

    def completions(self) -> np.ndarray:
        """Absolute times at which the sink finished each item, sorted."""
        ev, w0 = self._events("sink")
        return np.sort(w0 + ev[:, 3])

    @property
    def rate(self) -> float:
        """Steady-state items/s at the sink (middle 80 % of the stream)."""
        return steady_rate(self.completions())

    @property
    def makespan(self) -> float:
        """First source item started -> last sink item finished."""
        src, w_src = self._events("source")
        return float(self.completions()[-1] - (w_src + src[:, 2].min()))

    def latencies(self) -> np.ndarray:
        """Per item: sink finished - source started (same seq)."""
        src, w_src = self._events("source")
        snk, w_snk = self._events("sink")
        start = dict(zip(src[:, 0].astype(int), w_src + src[:, 2], strict=False))
        return np.array([w_snk + e[3] - start[int(e[0])] for e in snk if int(e[0]) in start])

    def service(self, stage_name: str) -> np.ndarray:
        """Measured per-item service times of one stage's first rank, by seq order."""
        for d in self.run["ranks"]:
            if d is not None and d["stage"] == stage_name:
                ev = d["events"][np.argsort(d["events"][:, 0])]
                return ev[:, 3] - ev[:, 2]
        raise ValueError(f"no stage {stage_name!r}")


def run_job(stages: list[dict[str, Any]], timeout: float = 120.0, cpu: bool = False,
            overrides: Iterable[str] = (), env: dict[str, str] | None = None,
            **pipeline: Any) -> JobRun:
    """Write a job into a temp dir, ``streampipe run`` it, read the run file back."""
    from streampipe import runfile

    d = Path(tempfile.mkdtemp(dir=TMP))
    if cpu:
        for st in stages:
            st["params"]["cpu_dir"] = str(d)
    job = d / "job.toml"
    job.write_text(job_toml(stages, **pipeline))
    out = d / "run.h5"
    cmd = [PY, "-m", "streampipe", "run", str(job), "--out", str(out), "--quiet"]
    for o in overrides:
        cmd += ["--set", o]
    done = launch(cmd, timeout, env)
    run = runfile.read(str(out))
    if run["meta"].get("status") != "ok":
        raise RuntimeError(f"run {out} status {run['meta'].get('status')}: {done.stderr[-2000:]}")
    cpus = [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    return JobRun(done.wall, run, run["meta"].get("result"), cpus)


def run_raw(n_ranks: int, *args: Any, timeout: float = 120.0,
            env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Run ``benchmarks/raw_mpi.py ARGS`` on ``n_ranks`` ranks; (its RESULT json, wall s)."""
    from streampipe.launch import find_mpiexec

    done = launch([find_mpiexec(), "-n", str(n_ranks), PY, "-m", "mpi4py", RAW,
                   *map(str, args)], timeout, env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:]), done.wall
    raise RuntimeError(f"raw_mpi.py {args} printed no RESULT:\n{done.stdout[-2000:]}")


# ----------------------------------------------------------------------------- numbers
def steady_rate(times: np.ndarray, lo: float = 0.1, hi: float = 0.9) -> float:
    """Items/s between the ``lo`` and ``hi`` quantiles of sorted completion times."""
    t = np.sort(np.asarray(times, dtype=float))
    if len(t) < 10:
        return (len(t) - 1) / max(t[-1] - t[0], 1e-12)
    i, j = int(lo * (len(t) - 1)), int(hi * (len(t) - 1))
    return (j - i) / max(t[j] - t[i], 1e-12)


def median_of(k: int, fn: Callable[[], Any], key: Callable[[Any], float]) -> Any:
    """Run ``fn`` ``k`` times; the run whose ``key`` is the median (odd ``k``)."""
    runs = sorted((fn() for _ in range(k)), key=key)
    return runs[len(runs) // 2]


def med(values: Iterable[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------- output
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return f"{v:.2e}"
    return str(v)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    rows = [[_fmt(v) for v in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
         for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|",
                      *map(line, rows)])


def verdict(value: float, goal: float, higher: bool = True) -> str:
    ok = value >= goal if higher else value <= goal
    return f"{'reached' if ok else 'MISSED'} ({value:.2f} vs {'>=' if higher else '<='} {goal})"


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer items and configurations")
    return ap


def machine() -> str:
    """One line on where the numbers come from."""
    import platform

    import mpi4py

    load = os.getloadavg()[0]
    return (f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"mpi4py {mpi4py.__version__}, load {load:.1f} at start")
