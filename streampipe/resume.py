"""Sink checkpoints and ``streampipe run --resume``: exactly-once output for deterministic sources.

With ``pipeline.checkpoint = true`` the sink periodically calls ``Sink.checkpoint()`` (which makes
its output durable and returns a state) and stores ``(high-water mark, state)`` in
``RUN.h5.ckpt``: every item with seq below the mark has been consumed and is in the durable
output, no item at or above it is. ``--resume RUN.h5`` restarts the source at the mark
(``Source.seek``) and the sink from the state (``Sink.restore``), so every item reaches the final
output exactly once. See docs/reliability.md.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["Checkpointer", "resume_point", "checkpoint_path"]


def checkpoint_path(run_file: str) -> str:
    return f"{run_file}.ckpt"


class Checkpointer:
    """Tracks the sink's high-water mark; writes checkpoints atomically (write, fsync, rename)."""

    def __init__(self, run_file: str | None, start_seq: int, every: float) -> None:
        if not run_file:
            raise ValueError("pipeline.checkpoint needs a run file (--out)")
        self.path = checkpoint_path(run_file)
        self.hwm = start_seq
        self.every = every
        self.t_last = 0.0

    def consumed_upto(self, hwm: int, sink: Any, now: float) -> None:
        """``sink`` has consumed every item of every source item before seq ``hwm``, and none
        after: checkpoint if it is time."""
        self.hwm = hwm
        if now - self.t_last >= self.every:
            self.t_last = now
            self.save(sink)

    def save(self, sink: Any) -> None:
        state = sink.checkpoint()
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump({"hwm": self.hwm, "state": state}, f, protocol=5)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def resume_point(run_file: str) -> tuple[int, Any]:
    """(start seq, sink state) to resume the run that wrote ``run_file``."""
    path = Path(checkpoint_path(run_file))
    if not path.exists():
        raise ValueError(f"--resume {run_file}: no checkpoint {path} (was the job run with "
                         "pipeline.checkpoint = true and --out?)")
    try:
        # our own file, written by the sink of the same job: trusted like the job's code
        data = pickle.loads(path.read_bytes())
        return int(data["hwm"]), data["state"]
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"--resume {run_file}: unreadable checkpoint {path}: {exc}") from None
