"""Feedback edges: values a later stage sends back to an earlier one (item dependencies).

A stage with ``feedback_to`` sends ``ctx.send_feedback(value)`` keyed by the item it is
processing; the value is broadcast to every replica of the earlier stage, whose ``ctx.feedback(s)``
waits for it. Values are taken eagerly and their credits return on arrival
(:class:`~streampipe.channel.FeedbackIn`), so a loop through the feedback edge cannot deadlock.
A single-replica producer with ordered input also reports how far the stream has got (a
watermark, sent whenever it runs out of input, from its input's progress mark), so a wait for a
value that will never come fails at once instead of after ``feedback_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import metrics as M
from .channel import FeedbackIn, OutPort
from .records import FINAL, TOMB

__all__ = ["Feedback"]

Wait = Callable[[Callable[[], bool], int, str], None]  # wait(until, state, what)


class Feedback:
    """This rank's ends of feedback edges: the producer side, the consumer side, or both."""

    def __init__(self, stage: str, out: OutPort | None, inp: FeedbackIn | None,
                 watermarks: bool, timeout: float, wait: Wait) -> None:
        self.stage, self.out, self.inp = stage, out, inp
        self.watermarks = watermarks
        self.timeout = timeout
        self._wait = wait
        self.mark_sent = -1  # the last watermark sent

    # ----- producer ------------------------------------------------------------------------
    def send(self, seq: int | None, value: Any) -> None:
        out = self.out
        if out is None:
            raise RuntimeError(f"stage {self.stage!r} called ctx.send_feedback() but has no "
                               "feedback_to in the job")
        if seq is None:
            raise RuntimeError("ctx.send_feedback() may only be called inside process()")
        if not out.has_credit():
            self._wait(out.has_credit, M.BLOCKED, "waiting for feedback credit")
        out.put_batch([(seq,)], [value])
        out.flush()  # the consumer may be waiting for exactly this value

    def before_wait(self, state: int, mark: tuple | None) -> None:
        """An idle producer tells the consumers how far the stream has got: with ``mark`` (no
        input still to come sits before it), every seq below ``mark[0]`` has been handled."""
        if not self.watermarks or mark is None or state != M.STARVED or self.out is None:
            return
        done = mark[0] - 1
        if done > self.mark_sent and done != FINAL - 1 and self.out.has_credit():
            self.mark_sent = done
            self.out.put_batch([(done,)], [None], [TOMB])

    # ----- consumer ------------------------------------------------------------------------
    def wait_for(self, current: int | None, seq: int) -> Any:
        fb = self.inp
        if fb is None:
            raise RuntimeError(f"stage {self.stage!r} called ctx.feedback() but no stage has "
                               f"feedback_to = {self.stage!r}")
        if current is not None and seq >= current:
            raise RuntimeError(f"item {current} depends on feedback of item {seq}, which is not "
                               "earlier in the stream: dependencies must point backwards (a cycle)")
        if seq not in fb.values:
            # charged as blocked: like a missing credit, a later stage holds this one back
            deadline = time.perf_counter() + self.timeout
            self._wait(lambda: seq in fb.values or fb.exhausted or fb.watermark >= seq
                       or time.perf_counter() > deadline, M.BLOCKED, "waiting for feedback")
            if seq not in fb.values:
                if fb.exhausted:
                    why = "its producer finished without sending it"
                elif fb.watermark >= seq:
                    why = ("its producer has handled that item without sending feedback for it "
                           "(dropped before reaching it, or no ctx.send_feedback call)")
                else:
                    why = f"it did not come within {self.timeout:.0f} s"
                raise RuntimeError(f"item {current} waits for feedback of item {seq}, but {why}")
        return fb.values[seq]

    def release(self, seq: int) -> None:
        if self.inp is not None:
            self.inp.values.pop(seq, None)
