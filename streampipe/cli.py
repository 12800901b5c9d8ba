"""``streampipe run | report | watch | plan | simulate`` — the command line.

The streampipe modules import MPI, h5py, rich and matplotlib only where they use them, so
``--help``, ``plan`` and ``simulate`` work on a machine without MPI.
"""

from __future__ import annotations

import argparse
import json
import os
import pprint
import sys
import threading
from pathlib import Path
from typing import Any

from . import config, keyshare, launch, live, runfile, sim
from .advisor import advise
from .faults import check_faults, parse_inject
from .job import JobError, load_job
from .plan import Plan, make_plan
from .plot import write_plot
from .report import analyze, summarize
from .resume import ResumePoint, identity, resume_point
from .runtime import RunOptions, resolve_options, run_rank
from .startup import stamp
from .summary import pipeline_rate
from .summary import rows as summary_rows
from .textreport import print_rich
from .trace import write_trace
from .train import plan_text, run_train, train_ranks


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="TOML job file (see jobs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job field, e.g. stages.value.replicas=4 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streampipe", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run a job (starts mpiexec itself when not under MPI)")
    _job_args(run)
    run.add_argument("--out", help="run file to write (default runs/<job>-<timestamp>.h5)")
    run.add_argument("--inject", action="append", default=[], metavar="SPEC",
                     help="fault injection: stage=NAME,item=SEQ,kind=raise|exit|sleep|kill"
                          "[,replica=R] (repeatable)")
    run.add_argument("--resume", metavar="RUN.h5",
                     help="continue a checkpointed run that failed (see docs/reliability.md)")
    run.add_argument("--quiet", action="store_true", help="print no report at the end")
    run.add_argument("--no-launch", action="store_true",
                     help="never start mpiexec; run as this MPI process (used under mpiexec)")
    run.add_argument("--mpiexec-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the mpiexec that streampipe starts (repeatable)")
    run.add_argument("--max-ranks", type=int, metavar="N",
                     help="start up to N ranks on this host (default 16 per core; also "
                          "STREAMPIPE_MAX_RANKS)")

    rep = sub.add_parser("report", help="bottleneck report of a run file")
    rep.add_argument("runfile")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace")
    rep.add_argument("--plot", metavar="OUT.png", help="write time-split bars and a timeline")

    watch = sub.add_parser("watch", help="follow a running job's live view (RUN.h5 or its "
                           ".live.jsonl), from any shell that sees the file")
    watch.add_argument("runfile")
    watch.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                       help="give up after this long with no live file, or no new record in "
                            "it (default 60)")

    plan = sub.add_parser("plan", help="print which rank runs what (no MPI needed)")
    _job_args(plan)

    sim = sub.add_parser("simulate", help="simulate a job with given stage times (no MPI)")
    _job_args(sim)
    sim.add_argument("--times", default="", help="per-stage time, e.g. value=8ms,scenarios=2ms")
    sim.add_argument("--from", dest="from_run", metavar="RUN.h5",
                     help="take stage-time distributions from a run file")
    sim.add_argument("--items", type=int, default=None,
                     help="items to simulate (default: the run's items with --from, else 1000)")
    sim.add_argument("--latency", metavar="TIME",
                     help="delay per hop between stages (default: the run's median with --from)")
    sim.add_argument("--advise", type=int, metavar="RANKS",
                     help="choose replicas for a budget of RANKS ranks")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "report": cmd_report, "plan": cmd_plan,
                "simulate": cmd_simulate, "watch": cmd_watch}[args.cmd](args)
    except (JobError, ValueError, FileNotFoundError) as exc:
        print(f"streampipe {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `streampipe report RUN --json | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def cmd_run(args: argparse.Namespace) -> int:
    faults = [parse_inject(s) for s in args.inject]
    resume, spec = ResumePoint(), None
    if args.resume:
        spec = load_job(args.job, args.overrides)
        if spec.train is not None:
            raise JobError("--resume: a training job resumes from its own checkpoint "
                           "(train.resume, docs/training.md)")
        if not spec.checkpoint:
            raise JobError(f"--resume: job {spec.name!r} has pipeline.checkpoint = false, so "
                           "its sinks would not restore their state (set it to true, as in the "
                           "run being resumed)")
        resume = resume_point(args.resume, [s.name for s in make_plan(spec).sinks],
                              identity(spec))
    if args.no_launch or launch.under_mpi():
        return _run_here(args, faults, resume)
    # validate everything (fields, imports, settings from the environment) before any rank
    # starts work
    spec = spec or load_job(args.job, args.overrides)
    resolve_options(RunOptions(), spec)
    _check_faults(faults, spec)
    out = args.out or runfile.default_path(spec.name)
    argv = ["run", args.job, "--no-launch", "--out", out]
    for o in args.overrides:
        argv += ["--set", o]
    for s in args.inject:
        argv += ["--inject", s]
    if args.resume:
        argv += ["--resume", args.resume]
    if args.quiet:
        argv.append("--quiet")
    n_ranks = train_ranks(spec) if spec.train is not None else spec.ranks
    launch.check_ranks(n_ranks, args.max_ranks)
    launch.check_out(out)
    live.live_path(out).unlink(missing_ok=True)  # a watcher must not show an earlier run's
    if sys.stdout.isatty() and not args.quiet and spec.train is None:
        rc = _launch_live(n_ranks, argv, args.mpiexec_arg, out)
    else:
        rc = launch.launch(n_ranks, argv, args.mpiexec_arg)
    if rc == 0 and not _run_ok(out):
        # mpiexec can return 0 when a rank vanished without finalizing (MPI-NOTES.md)
        print(f"streampipe run: mpiexec returned 0 but the run file {out} does not say the run "
              "finished; treating the run as failed", file=sys.stderr)
        return 1
    return rc


def _launch_live(n: int, argv: list[str], extra: list[str], out: str) -> int:
    """``launch`` with the live table on this terminal (``streampipe watch`` in a thread); the
    ranks' output is printed above it."""
    from rich.console import Console

    console = Console()
    done = threading.Event()
    watcher = threading.Thread(target=live.watch, args=(live.live_path(out),),
                               kwargs={"stop": done.is_set, "console": console}, daemon=True)
    watcher.start()
    try:
        return launch.launch(n, argv, extra, on_line=lambda text: console.print(
            text, end="", markup=False, highlight=False, soft_wrap=True))
    finally:
        done.set()
        watcher.join(5)


def _run_ok(path: str) -> bool:
    try:
        return runfile.status(path) == "ok"
    except ValueError:
        return False


def _check_faults(faults: list, spec: Any) -> None:
    if spec.train is None:  # a training job's faults name its ranks, which its layout decides
        check_faults(faults, {s.name: s.replicas for s in spec.stages})


def _run_here(args: argparse.Namespace, faults: list, resume: ResumePoint) -> int:
    stamp("imported")
    from mpi4py import MPI

    stamp("mpi_init")
    comm = MPI.COMM_WORLD
    err = None
    try:
        spec = load_job(args.job, args.overrides)
        resolve_options(RunOptions(), spec)
        _check_faults(faults, spec)
    except (JobError, ValueError) as exc:
        err = str(exc)
    # every rank must agree before any collective call, or a lone failure would hang the rest
    errors = comm.allgather(err)
    stamp("validated")
    first = next((e for e in errors if e), None)
    if first:
        if comm.Get_rank() == 0:
            print(f"streampipe run: error: {first}", file=sys.stderr, flush=True)
        return 2
    out = args.out or comm.bcast(runfile.default_path(spec.name) if comm.Get_rank() == 0
                                 else None)
    if comm.Get_rank() == 0:
        # no rank can finish (and write its shard) before rank 0 has taken part in the run's
        # start-up collectives, so this runs first: nothing of an earlier run gets linked
        runfile.clear_shards(out)
    opts = RunOptions(out=out, faults=faults, resume=resume,
                      quiet=args.quiet, progress=bool(config.from_env("progress")))
    if spec.train is not None:
        run_train(spec, comm, opts)  # prints its own report on rank 0
        return 0
    result = run_rank(spec, comm, opts)
    if comm.Get_rank() == 0 and result is not None and not args.quiet:
        print(_format_result(result), flush=True)
    return 0


def _format_result(result: Any) -> str:
    if isinstance(result, str) or type(result).__str__ not in (object.__str__, dict.__str__,
                                                               list.__str__, tuple.__str__):
        return f"result:\n{result}"
    text = pprint.pformat(result, width=100, compact=True)
    return "result: " + (text if len(text) < 2000 else text[:2000] + " ...")


def cmd_report(args: argparse.Namespace) -> int:
    """``streampipe report RUN.h5 [--json] [--trace OUT.json] [--plot OUT.png]``."""
    if not Path(args.runfile).exists():
        raise FileNotFoundError(f"run file {args.runfile!r} not found")
    run = runfile.read(args.runfile)
    meta, ranks = run["meta"], run["ranks"]
    plan = Plan.from_dict(meta["plan"])
    summary = summarize(plan, ranks)
    doc = analyze(plan, ranks, meta, summary)
    if args.trace:
        write_trace(args.trace, plan, ranks)
    if args.plot:
        write_plot(args.plot, plan, ranks, doc, run.get("live"))
    if args.json:
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        print_rich(doc, summary)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """``streampipe watch RUN.h5 [--wait S]``: the live table until the run ends (its status
    sets the exit code: 0 ok, 1 failed or gone silent, 2 nothing to watch)."""
    path = Path(args.runfile)
    path = path if path.suffix == ".jsonl" else live.live_path(args.runfile)
    run = live.run_path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {str(path.parent)!r}: no run writes {path} there")
    if not path.exists() and not run.exists():
        print(f"streampipe watch: waiting up to {args.wait:g} s for {path} (the run writes it "
              "as it starts; --wait to change) ...", file=sys.stderr, flush=True)
    try:
        found = live.appear(path, run, args.wait)
        if found == "none":
            raise FileNotFoundError(f"no run wrote {path} within {args.wait:g} s (--wait)")
        if found == "finished":
            status = runfile.status(str(run))
            print(f"streampipe watch: {run} is a finished run (status {status or 'unknown'}) "
                  f"with no live file: nothing to watch; `streampipe report {run}` shows it",
                  file=sys.stderr)
            return 0 if status == "ok" else 1
        status = live.watch(path, stop=live.idle_for(path, args.wait))
    except KeyboardInterrupt:
        return 130
    if not status:
        print(f"streampipe watch: {path} has had no new record for {args.wait:g} s and no end "
              "marker: the run stopped without finishing (killed?) or is stalled",
              file=sys.stderr)
        return 1
    if not live.has_records(path):
        print(f"streampipe watch: the run ended (status {status}) before its first live record "
              f"(one comes a second); `streampipe report {run}` shows it", file=sys.stderr)
    return 0 if status == "ok" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    spec = load_job(args.job, args.overrides)
    print(plan_text(spec) if spec.train is not None else make_plan(spec).format())
    return 0


def _check_same_job(plan: Plan, run: dict[str, Any], path: str) -> None:
    """``simulate --from`` replays a run of this job: another job's run file (its name, or its
    stages by name and order) is a one-line error, not a simulation of the wrong times."""
    meta = run["meta"]
    theirs = [s["name"] for s in meta.get("plan", {}).get("stages", [])]
    ours = [s.name for s in plan.stages]
    problems = []
    if meta.get("job_name") != plan.name:
        problems.append(f"it is a run of job {meta.get('job_name')!r}, not {plan.name!r}")
    if theirs != ours:
        extra = [n for n in theirs if n not in ours]
        missing = [n for n in ours if n not in theirs]
        problems.append("its stages are " + ", ".join(theirs) + (
            f" (the job's are {', '.join(ours)})" if extra or missing else
            f", in another order than the job's {', '.join(ours)}") + "".join(
            f"; {what}: {', '.join(names)}" for what, names in
            (("not in the job", extra), ("not in the run file", missing)) if names))
    if problems:
        raise ValueError(f"simulate --from {path}: " + "; ".join(problems))


def cmd_simulate(args: argparse.Namespace) -> int:
    """``streampipe simulate JOB [--times ...] [--from RUN.h5] [--items N] [--advise RANKS]``."""
    spec = load_job(args.job, args.overrides)
    plan = make_plan(spec)
    run = runfile.read(args.from_run) if args.from_run else None
    if run is not None:
        _check_same_job(plan, run, args.from_run)
    times = sim.job_times(plan, args.times, run)
    missing = [s.name for s in plan.stages if s.name not in times]
    if len(missing) == len(plan.stages):
        raise ValueError("simulate: no stage times given: pass --times STAGE=TIME,... "
                         "or --from RUN.h5")
    n = args.items
    if n is None:
        first = run["summary"].get(plan.stages[0].name, {}) if run else {}
        n = int(first.get("items", 0)) or 1000
    print("stage times: " + ", ".join(f"{s.name}={times.get(s.name, sim.Dist('const'))}"
                                      for s in plan.stages))
    if missing:
        print(f"(no time given for {', '.join(missing)}: taken as 0)")
    flow = sim.job_flows(plan, args.times, run)
    if flow:
        print("items per input: " + ", ".join(f"{k}={v}" for k, v in flow.items()))
    if args.latency:
        lat = sim.parse_time(args.latency, "--latency")
    else:
        lat = sim.latency_from_run(run) if run else 0.0
    if lat:
        print(f"latency per hop: {1e3 * lat:.3f} ms" + (" (median in the run file)"
                                                        if run and not args.latency else ""))
    keys = sim.job_keys(plan, run)
    for name, counts in keys.items():
        print(f"key distribution of {name!r} (from the run): {sum(counts.values())} items in "
              f"{len(counts)} of {keyshare.BUCKETS} buckets, the fullest holds "
              f"{100 * keyshare.hottest(counts):.1f}%")
    res = sim.simulate(plan, times, n, latency=lat, flow=flow, keys=keys)
    print(sim.format_result(res, f"simulated {plan.name!r} ({plan.size} ranks)"))
    if run:
        real = pipeline_rate(summary_rows(run["summary"]))
        print(f"measured {real:.1f} items/s, simulated {res.throughput:.1f} items/s "
              f"(ratio {res.throughput / real:.3f})" if real > 0 else
              f"measured: - (the run file has no span to measure), simulated "
              f"{res.throughput:.1f} items/s")
    if args.advise:
        print()
        print(advise(spec, times, args.advise, n_items=min(n, 2000), keys=keys).format())
    return 0
