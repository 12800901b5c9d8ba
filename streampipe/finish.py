"""What happens with the collected ranks at the end of a run (rank 0): summarise them, write the
run file, print the short report; and what each rank hands over for that.

The collection itself (every rank's record reaching rank 0, also after a failure) belongs to the
runtime. With a run file, each rank writes its own events to its shard first
(:func:`rank_record`) and sends rank 0 only their reduction, so rank 0's memory and the time to
finish do not grow with ranks x events; the end-of-run audit that joins events across stages
re-reads them from the shards when there are few enough (``AUDIT_EVENTS``), else the printed
report says where to get it (``streampipe report``, which always reads them all).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import keyshare, runfile
from .report import reduce_events, summarize
from .textreport import short_text

__all__ = ["finish_run", "rank_record", "run_meta", "AUDIT_EVENTS"]

AUDIT_EVENTS = 1_000_000  # rows (40 B each) rank 0 reads back for the printed audit, at most


def rank_record(stats: dict[str, Any], out: str | None, rank: int) -> dict[str, Any]:
    """The record a rank sends rank 0 at the end. With a run file: its events go to its own
    shard (``RUN.h5.ranks/``) and the record carries their reduction instead; without one, the
    whole record (events included) travels."""
    if not out:
        return stats
    runfile.write_shard(out, rank, stats)
    rec = {k: v for k, v in stats.items() if k != "events"}
    rec["reduced"] = reduce_events(stats)
    return rec


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


def _audit_ranks(opts: Any, ranks: list[dict | None]) -> tuple[list[dict | None], str]:
    """The ranks with their events for the printed audit, and a note when they are left out."""
    if not opts.out or not any(d is not None and "reduced" in d for d in ranks):
        return ranks, ""
    n = sum(reduce_events(d)["n"] for d in ranks if d is not None)
    if n > AUDIT_EVENTS:
        return ranks, (f"(end-to-end and per-edge wire times over {n:,} events: "
                       f"streampipe report {opts.out})")
    return runfile.read(opts.out)["ranks"], ""


def finish_run(spec: Any, plan: Any, opts: Any, ranks: list[dict | None], status: str,
               error: str | None, result: Any, live: Any = None) -> None:
    """Summarise, write the run file (if asked for) and print the short report (rank 0).
    ``live`` (a :class:`streampipe.live.LiveCollector`) adds its series and ends its file."""
    summary = summarize(plan, ranks)
    if live is not None and live.latest:
        live.emit(time.time())  # the last second, into the series
    if opts.out:
        meta = run_meta(spec, plan, ranks, status, error, result)
        runfile.write(opts.out, meta, ranks, {k: r.to_dict() for k, r in summary.items()},
                      series=live.series() if live is not None else None,
                      keys=keyshare.merge(ranks), modulus=keyshare.BUCKETS)
    if live is not None:
        live.end(status, time.time())
    if status == "ok" and opts.report and not opts.quiet:
        full, note = _audit_ranks(opts, ranks)
        print(short_text(plan, summary, full), flush=True)
        if note:
            print(note, flush=True)
        if opts.out:
            print(f"run file: {opts.out}  (streampipe report {opts.out})", flush=True)
    elif status != "ok" and opts.out:
        print(f"streampipe: run failed; partial run file: {opts.out}", file=sys.stderr, flush=True)
