"""Run a JobSpec in one process, without MPI: the single-process oracle for tests and debugging.

Items flow depth-first through the stages in stream order, exactly as an ordered pipeline
delivers them; ``finish()`` outputs follow the stream, stage by stage. Feedback edges and group
stages need the MPI runtime and are not supported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import GeneratorType
from typing import Any

from .job import JobError, JobSpec, instantiate
from .stage import Context, Sink, Source

__all__ = ["run_serial"]


def run_serial(spec: JobSpec) -> Any:
    """Run ``spec`` sequentially in this process and return the sink's result."""
    if any(s.feedback_to or s.group > 1 for s in spec.stages):
        raise JobError("run_serial: feedback edges and group stages need the MPI runtime")
    stages = []
    for i, s in enumerate(spec.stages):
        st = instantiate(s, f"stages[{i}]")
        st.ctx = Context(params=dict(s.params), stage=s.name)
        st.setup(st.ctx)
        stages.append(st)
    source, rest = stages[0], stages[1:]
    assert isinstance(source, Source)

    def push(i: int, items: Iterable[Any]) -> None:
        if i == len(rest):
            return
        for item in items:
            out = rest[i].process(item)
            if isinstance(out, GeneratorType):
                push(i + 1, out)
            elif out is not None:
                push(i + 1, (out,))

    push(0, source.generate())
    for i, st in enumerate(stages[:-1]):
        fin = st.finish()
        if fin is not None:
            push(i, fin)  # stage i's outputs go to rest[i], the stage after it
    sink = stages[-1]
    assert isinstance(sink, Sink)
    sink.finish()
    return sink.result()
