"""Run a JobSpec in one process, without MPI: the single-process oracle for tests and debugging.

Every stage sees its items in the order an ordered pipeline delivers them: by position (key), a
join's inputs re-keyed ``(seq, input, *rest)`` and merged, a zip's matched by source item;
``finish()`` outputs follow the stream. Stages run one after another over whole streams, in graph
order (a stage is a function of the ordered stream it reads). Feedback edges and group stages
need the MPI runtime and are not supported here.
"""

from __future__ import annotations

from types import GeneratorType
from typing import Any

from .job import JobError, JobSpec, instantiate
from .plan import make_plan
from .records import FINAL
from .stage import Context, Sink
from .zipper import Zipper

__all__ = ["run_serial"]

Stream = list[tuple[tuple, Any]]


def run_serial(spec: JobSpec) -> Any:
    """Run ``spec`` in this process; the sink's result, or ``{sink: result}`` with several."""
    if any(s.feedback_to or s.group > 1 for s in spec.stages):
        raise JobError("run_serial: feedback edges and group stages need the MPI runtime")
    plan = make_plan(spec)
    k = plan.n_sources
    streams: dict[int, Stream] = {}
    results: dict[str, Any] = {}
    order = sorted(range(len(plan.stages)), key=lambda i: _depth(plan, i))
    for i in order:
        sp, sspec = plan.stages[i], spec.stages[i]
        st = instantiate(sspec, f"stages[{i}]")
        st.ctx = ctx = Context(params=dict(sspec.params), stage=sp.name,
                               replicas=sp.replicas)
        st.setup(ctx)
        if sp.kind == "source":
            stream: Stream = [((n * k + sp.source,), v) for n, v in enumerate(st.generate())]
        else:
            stream = _process(st, ctx, _inputs(plan, i, streams), plan, i)
        fin = st.finish()
        if fin is not None and sp.kind != "sink":
            stream += [((FINAL, i, 0, n), v) for n, v in enumerate(fin)]
        streams[i] = stream
        if isinstance(st, Sink):
            results[sp.name] = st.result()
    if len(results) == 1:
        return next(iter(results.values()))
    return {s.name: results[s.name] for s in plan.sinks}


def _depth(plan: Any, i: int) -> int:
    ins = plan.stages[i].inputs
    return 0 if not ins else 1 + max(_depth(plan, j) for j in ins)


def _inputs(plan: Any, i: int, streams: dict[int, Stream]) -> Stream:
    sp = plan.stages[i]
    if len(sp.inputs) == 1:
        return streams[sp.inputs[0]]
    merged = sorted(((key[0], j) + key[1:], v) for j, src in enumerate(sp.inputs)
                    for key, v in streams[src])
    if sp.join != "zip":
        return merged
    out: list[tuple[tuple, Any]] = []
    z = Zipper(len(sp.inputs))
    z.add([key for key, _ in merged], [v for _, v in merged], out)
    z.complete((FINAL,), out)
    return out


def _process(st: Any, ctx: Context, stream: Stream, plan: Any, i: int) -> Stream:
    names = [plan.stages[j].name for j in plan.stages[i].inputs]
    merge = plan.stages[i].join == "merge"
    out: Stream = []
    for key, v in stream:
        ctx.seq = key[0] if key[0] != FINAL else None
        if merge:
            ctx.input = names[key[1]]
        r = st.process(v)
        if isinstance(r, GeneratorType):
            out += [(key + (n,), c) for n, c in enumerate(r)]
        elif r is not None:
            out.append((key, r))
    ctx.seq = ctx.input = None
    return out
