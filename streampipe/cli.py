"""``streampipe run | report | plan | simulate`` — the command line.

MPI, h5py and the report libraries are imported only by the commands that need them, so
``--help``, ``plan`` and ``simulate`` work on a machine without MPI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .job import JobError, load_job


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

    rep = sub.add_parser("report", help="bottleneck report of a run file")
    rep.add_argument("runfile")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace")
    rep.add_argument("--plot", metavar="OUT.png", help="write time-split bars and a timeline")

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
                "simulate": cmd_simulate}[args.cmd](args)
    except (JobError, ValueError, FileNotFoundError) as exc:
        print(f"streampipe {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


def cmd_run(args: argparse.Namespace) -> int:
    from . import launch
    from .faults import parse_inject
    from .runfile import default_path

    faults = [parse_inject(s) for s in args.inject]
    start_seq, state = 0, None
    if args.resume:
        from .resume import resume_point

        start_seq, state = resume_point(args.resume)
    if args.no_launch or launch.under_mpi():
        return _run_here(args, faults, start_seq, state)
    # validate everything (fields, imports) before any rank starts work
    spec = load_job(args.job, args.overrides)
    out = args.out or default_path(spec.name)
    argv = ["run", args.job, "--no-launch", "--out", out]
    for o in args.overrides:
        argv += ["--set", o]
    for s in args.inject:
        argv += ["--inject", s]
    if args.resume:
        argv += ["--resume", args.resume]
    if args.quiet:
        argv.append("--quiet")
    if spec.train is not None:
        from .train import train_ranks

        n_ranks = train_ranks(spec)
    else:
        n_ranks = spec.ranks
    if sys.stderr.isatty() and not args.quiet:
        os.environ["STREAMPIPE_PROGRESS"] = "1"  # inherited by the ranks, whose stderr is a pipe
    rc = launch.launch(n_ranks, argv, args.mpiexec_arg)
    if rc == 0 and not _run_ok(out):
        # mpiexec can return 0 when a rank vanished without finalizing (MPI-NOTES.md)
        print(f"streampipe run: mpiexec returned 0 but the run file {out} does not say the run "
              "finished; treating the run as failed", file=sys.stderr)
        return 1
    return rc


def _run_ok(path: str) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return f.attrs.get("status") == "ok"
    except OSError:
        return False


def _run_here(args: argparse.Namespace, faults: list, start_seq: int, state: object) -> int:
    from mpi4py import MPI

    from .runfile import default_path
    from .runtime import RunOptions, run_rank

    comm = MPI.COMM_WORLD
    err = None
    try:
        spec = load_job(args.job, args.overrides)
    except JobError as exc:
        err = str(exc)
    # every rank must agree before any collective call, or a lone failure would hang the rest
    errors = comm.allgather(err)
    first = next((e for e in errors if e), None)
    if first:
        if comm.Get_rank() == 0:
            print(f"streampipe run: error: {first}", file=sys.stderr, flush=True)
        return 2
    out = args.out or (comm.bcast(default_path(spec.name) if comm.Get_rank() == 0 else None))
    opts = RunOptions(out=out, faults=faults, start_seq=start_seq, resume_state=state,
                      quiet=args.quiet, progress=os.environ.get("STREAMPIPE_PROGRESS") == "1")
    if spec.train is not None:
        from .train import run_train

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
    import pprint

    text = pprint.pformat(result, width=100, compact=True)
    return "result: " + (text if len(text) < 2000 else text[:2000] + " ...")


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    if not Path(args.runfile).exists():
        raise FileNotFoundError(f"run file {args.runfile!r} not found")
    return report.main(args)


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import make_plan

    spec = load_job(args.job, args.overrides)
    if spec.train is not None:
        from .train import plan_text

        print(plan_text(spec))
        return 0
    print(make_plan(spec).format())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from . import sim

    return sim.main(args)
