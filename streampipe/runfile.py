"""The HDF5 run file every run leaves behind: job, versions, per-rank events, per-stage summary.

Layout (attributes in brackets)::

    /                 [format, status, error, job_name, job_text, plan_json, streampipe,
                       mpi4py, mpi, ranks, hosts_json, start_time, wall_time, result_json]
    /ranks/{r}        events (n x 5: seq, t_recv, t_start, t_end, t_sent; seconds from the rank's
                      start) [stage, stage_index, replica, group_rank, host, wall0, elapsed,
                      time_<state>, items_in, items_out, held_area, held_peak, edges_json, ...]
    /summary/{stage}  [items, throughput, busy, starved, blocked, transfer, io, other, L, lam, W,
                       little_residual, ...]   (see streampipe.report.summarize)

A failed run writes the ranks it could collect; missing ranks have no group.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                     else repr(o)))
    except (TypeError, ValueError):
        return repr(obj)


def default_path(job_name: str) -> str:
    """``runs/<job>-<timestamp>.h5`` under the current directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{job_name}-{stamp}.h5")


def write(path: str, meta: dict[str, Any], ranks: list[dict | None],
          summary: dict[str, dict]) -> None:
    """Write a run file atomically (a reader never sees half a file)."""
    import h5py

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        for k, v in meta.items():
            if isinstance(v, (int, float, str, bool, np.generic)):
                f.attrs[k] = v
            else:
                f.attrs[f"{k}_json"] = json.dumps(_jsonable(v))
        g = f.create_group("ranks")
        for r, d in enumerate(ranks):
            if d is None:
                continue
            rg = g.create_group(str(r))
            rg.create_dataset("events", data=np.asarray(d["events"], dtype=np.float64))
            for k, v in d.items():
                if k == "events":
                    continue
                if k == "time":
                    for state, secs in v.items():
                        rg.attrs[f"time_{state}"] = secs
                elif isinstance(v, (int, float, str, bool, np.generic)):
                    rg.attrs[k] = v
                else:
                    rg.attrs[f"{k}_json"] = json.dumps(_jsonable(v))
        sg = f.create_group("summary")
        for stage, row in summary.items():
            st = sg.create_group(stage)
            for k, v in row.items():
                if isinstance(v, (int, float, str, bool, np.generic)):
                    st.attrs[k] = v
                else:
                    st.attrs[f"{k}_json"] = json.dumps(_jsonable(v))
    os.replace(tmp, p)


def _attrs(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if k.endswith("_json"):
            out[k[:-5]] = json.loads(v)
        else:
            out[k] = v
    return out


def read(path: str) -> dict[str, Any]:
    """Read a run file back into plain data: ``{"meta", "ranks", "summary"}``."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"run file {path!r}: cannot open as HDF5 ({exc})") from None
    with f:
        if "format" not in f.attrs or "ranks" not in f:
            raise ValueError(f"run file {path!r}: not a streampipe run file")
        meta = _attrs(f)
        n = int(meta.get("ranks", 0))
        ranks: list[dict | None] = [None] * n
        for key, rg in f["ranks"].items():
            d = _attrs(rg)
            d["time"] = {k[5:]: d.pop(k) for k in list(d) if k.startswith("time_")}
            d["events"] = rg["events"][()]
            ranks[int(key)] = d
        summary = {k: _attrs(v) for k, v in f["summary"].items()}
    return {"meta": meta, "ranks": ranks, "summary": summary}


def versions() -> dict[str, str]:
    from . import __version__

    out = {"streampipe": __version__, "python": sys.version.split()[0]}
    try:
        import mpi4py
        from mpi4py import MPI

        out["mpi4py"] = mpi4py.__version__
        out["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    except Exception:  # noqa: BLE001
        pass
    return out


def finish_run(spec: Any, plan: Any, opts: Any, ranks: list[dict | None], status: str,
               error: str | None, result: Any) -> None:
    """Summarise, write the run file (if asked for) and print the short report (rank 0)."""
    from .report import short_text, summarize

    summary = summarize(plan, ranks)
    if opts.out:
        present = [d for d in ranks if d is not None]
        meta = {
            "status": status, "error": error or "", "job_name": spec.name, "job_text": spec.text,
            "plan": {"stages": [asdict(s) for s in plan.stages], "ordered": plan.ordered,
                     "batch": plan.batch, "start_seq": plan.start_seq},
            **versions(), "ranks": len(ranks),
            "hosts": [d["host"] if d else None for d in ranks],
            "start_time": min((d["wall0"] for d in present), default=time.time()),
            "wall_time": max((d["elapsed"] for d in present), default=0.0),
            "result": _jsonable(result),
        }
        write(opts.out, meta, ranks, summary)
    if status == "ok" and opts.report and not opts.quiet:
        print(short_text(plan, summary, ranks), flush=True)
        if opts.out:
            print(f"run file: {opts.out}  (streampipe report {opts.out})", flush=True)
    elif status != "ok" and opts.out:
        print(f"streampipe: run failed; partial run file: {opts.out}", file=sys.stderr, flush=True)
