"""What happens with the collected ranks at the end of a run (rank 0): summarise them, write the
run file, print the short report.

The collection itself (every rank's records reaching rank 0, also after a failure) belongs to
the runtime; this module only turns the collected records into the run file and the text.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import runfile
from .report import summarize
from .textreport import short_text

__all__ = ["finish_run", "run_meta"]


def run_meta(spec: Any, plan: Any, ranks: list[dict | None], status: str, error: str | None,
             result: Any) -> dict[str, Any]:
    """The run file's root attributes for a stream run."""
    present = [d for d in ranks if d is not None]
    return {
        "status": status, "error": error or "", "job_name": spec.name, "job_text": spec.text,
        "plan": plan.to_dict(), **runfile.versions(), "ranks": len(ranks),
        "hosts": [d["host"] if d else None for d in ranks],
        "start_time": min((d["wall0"] for d in present), default=time.time()),
        "wall_time": max((d["elapsed"] for d in present), default=0.0),
        "result": result,
    }


def finish_run(spec: Any, plan: Any, opts: Any, ranks: list[dict | None], status: str,
               error: str | None, result: Any) -> None:
    """Summarise, write the run file (if asked for) and print the short report (rank 0)."""
    summary = summarize(plan, ranks)
    if opts.out:
        meta = run_meta(spec, plan, ranks, status, error, result)
        runfile.write(opts.out, meta, ranks, {k: r.to_dict() for k, r in summary.items()})
    if status == "ok" and opts.report and not opts.quiet:
        print(short_text(plan, summary, ranks), flush=True)
        if opts.out:
            print(f"run file: {opts.out}  (streampipe report {opts.out})", flush=True)
    elif status != "ok" and opts.out:
        print(f"streampipe: run failed; partial run file: {opts.out}", file=sys.stderr, flush=True)
