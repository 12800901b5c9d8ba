"""Sink checkpoints and ``streampipe run --resume``: exactly-once output for deterministic sources.

With ``pipeline.checkpoint = true`` every sink calls ``Sink.checkpoint()`` once it is set up and
then periodically (which makes its output durable and returns a state), and stores
``(high-water mark, state)`` in ``RUN.h5.ckpt`` (``RUN.h5.ckpt.<sink>`` for each sink of a job
with several): every item with seq below the mark has been consumed and is in that sink's durable
output, no item at or above it is. ``--resume RUN.h5`` restarts the sources at the lowest mark
(``Source.seek``) and every sink from its state (``Sink.restore``); a sink whose mark is higher
drops the items below its mark that come again, so every item reaches every final output exactly
once. See docs/reliability.md.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Checkpointer", "ResumePoint", "resume_point", "checkpoint_path", "identity"]


def identity(spec: Any) -> dict[str, Any]:
    """What a checkpoint must match to be resumed by a job: its name and its graph (stage names
    and what each reads). Code and params may change between the runs (a fixed bug, a new
    output option); a checkpoint of another job or of another graph must not be taken."""
    g = spec.graph
    return {"job": spec.name, "graph": [[n, [g.names[j] for j in ins]]
                                        for n, ins in zip(g.names, g.inputs, strict=True)]}


def checkpoint_path(run_file: str, sink: str | None = None) -> str:
    """The checkpoint file of ``sink`` (None: the only sink of the job)."""
    return f"{run_file}.ckpt" if sink is None else f"{run_file}.ckpt.{sink}"


class Checkpointer:
    """Tracks one sink's high-water mark; writes checkpoints atomically (write, fsync, rename).
    ``hwm``: where this sink's durable output stands at the start (a resumed run's sink may be
    past the sources' start: the items below its mark are dropped, the mark never moves back)."""

    def __init__(self, run_file: str | None, sink: str | None, hwm: int, every: float,
                 job: dict[str, Any] | None = None) -> None:
        if not run_file:
            raise ValueError("pipeline.checkpoint needs a run file (--out)")
        self.path = checkpoint_path(run_file, sink)
        self.job = job
        self.hwm = hwm
        self.every = every
        self.t_last = 0.0

    def consumed_upto(self, hwm: int, sink: Any, now: float) -> None:
        """``sink`` has consumed every item of every source item before seq ``hwm``, and none
        after: checkpoint if it is time."""
        if hwm <= self.hwm:
            return
        self.hwm = hwm
        if now - self.t_last >= self.every:
            self.save(sink, now)

    def save(self, sink: Any, now: float = 0.0) -> None:
        self.t_last = now
        state = sink.checkpoint()
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump({"hwm": self.hwm, "state": state, "job": self.job}, f, protocol=5)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts: the sources at ``start`` (the lowest sink's mark), each sink
    at its own ``(hwm, state)``."""

    start: int = 0
    sinks: dict[str, tuple[int, Any]] = field(default_factory=dict)


def _load(run_file: str, path: Path) -> dict[str, Any]:
    try:
        # our own file, written by the sink of the same job: trusted like the job's code
        data = pickle.loads(path.read_bytes())
        return {"hwm": int(data["hwm"]), "state": data["state"], "job": data.get("job")}
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"--resume {run_file}: unreadable checkpoint {path}: {exc}") from None


def _check_job(run_file: str, path: Path, got: dict[str, Any] | None,
               want: dict[str, Any] | None) -> None:
    """Refuse a checkpoint that another job (or another graph of stages) wrote."""
    if got is None or want is None or got == want:
        return  # a checkpoint from before identities were saved: the user's word
    if got["job"] != want["job"]:
        raise ValueError(f"--resume {run_file}: checkpoint {path} was written by job "
                         f"{got['job']!r}, not {want['job']!r}")
    def show(g: dict[str, Any]) -> str:
        return ", ".join(f"{n}<-{'+'.join(i) or '(source)'}" for n, i in g["graph"])
    raise ValueError(f"--resume {run_file}: checkpoint {path} was written by job {got['job']!r} "
                     f"with other stages ({show(got)}); this job has {show(want)}")


def resume_point(run_file: str, sinks: Sequence[str],
                 job: dict[str, Any] | None = None) -> ResumePoint:
    """Where to resume the run that wrote ``run_file``, a run of a job whose sinks are
    ``sinks`` (every sink of a checkpointed run saves a checkpoint as soon as it is set up).
    ``job`` (:func:`identity`): refuse checkpoints that another job wrote."""
    one = len(sinks) == 1
    paths = {s: Path(checkpoint_path(run_file, None if one else s)) for s in sinks}
    missing = [s for s, p in paths.items() if not p.exists()]
    if missing:
        p = paths[missing[0]]
        if len(missing) == len(paths):
            raise ValueError(f"--resume {run_file}: no checkpoint {p} (was the job run with "
                             "pipeline.checkpoint = true and --out?)")
        raise ValueError(f"--resume {run_file}: no checkpoint {p} of sink {missing[0]!r} (the "
                         "run stopped before that sink was set up: run the job again, or resume "
                         "the run this one resumed)")
    got = {s: _load(run_file, p) for s, p in paths.items()}
    for s, d in got.items():
        _check_job(run_file, paths[s], d["job"], job)
    return ResumePoint(min(d["hwm"] for d in got.values()),
                       {s: (d["hwm"], d["state"]) for s, d in got.items()})
