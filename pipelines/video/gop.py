"""Group-of-pictures structure: frame types and the encode order.

Display frame ``d`` is an anchor when ``d % gop == 0`` (an I frame) or when its offset in the
GOP is a multiple of ``bframes + 1`` (a P frame); the last frame is always an anchor so that
every B frame has a future reference.  GOPs are *open*: B frames at the end of a GOP predict from
the next GOP's I frame.  Anchors are coded before the B frames that precede them in display
order, e.g. display ``I0 B1 B2 P3 B4 B5 P6`` is coded ``I0 P3 B1 B2 P6 B4 B5``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameSlot", "encode_order", "feedback_plan"]


@dataclass(frozen=True)
class FrameSlot:
    """One frame's place in the stream.

    Attributes:
        seq: position in encode order (the stream's item sequence number).
        display: position in display order.
        type: ``"I"``, ``"P"`` or ``"B"``.
        ref_seqs: encode-order seqs of the reference anchors: ``()`` for I, ``(past,)`` for P,
            ``(past, future)`` for B.
        ref_displays: display indices of the same anchors.
    """

    seq: int
    display: int
    type: str
    ref_seqs: tuple[int, ...]
    ref_displays: tuple[int, ...]


def _check(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    return value


def encode_order(n_frames: int, gop: int, bframes: int) -> list[FrameSlot]:
    """The frames of an ``n_frames`` clip in encode order, with types and references."""
    _check("n_frames", n_frames, 1)
    _check("gop", gop, 1)
    _check("bframes", bframes, 0)
    step = bframes + 1
    anchors = [d for d in range(n_frames) if d % gop == 0 or (d % gop) % step == 0]
    if anchors[-1] != n_frames - 1:
        anchors.append(n_frames - 1)
    slots: list[FrameSlot] = []
    seq_of: dict[int, int] = {}  # anchor display index -> its seq

    def add(display: int, ftype: str, refs: tuple[int, ...]) -> None:
        if ftype != "B":  # only anchors are ever referenced
            seq_of[display] = len(slots)
        slots.append(FrameSlot(len(slots), display, ftype, tuple(seq_of[r] for r in refs), refs))

    prev = None
    for a in anchors:
        if a % gop == 0:
            add(a, "I", ())
        else:
            add(a, "P", (prev,))
        if prev is not None:
            for b in range(prev + 1, a):
                add(b, "B", (prev, a))
        prev = a
    return slots


def feedback_plan(n_frames: int, gop: int, bframes: int) -> tuple[frozenset[int], list[int]]:
    """What the closed loop needs: ``(referenced, live_from)``.

    ``referenced`` holds the seqs of the anchors that some frame predicts from (only their
    reconstructions go back along the feedback edge); ``live_from[k]`` is the oldest seq that
    item ``k`` or any later item references, so anchors below it can be forgotten at item ``k``.
    """
    slots = encode_order(n_frames, gop, bframes)
    referenced = frozenset(r for s in slots for r in s.ref_seqs)
    live = len(slots)
    live_from = [0] * len(slots)
    for s in reversed(slots):
        live = min(live, s.seq, *s.ref_seqs)
        live_from[s.seq] = live
    return referenced, live_from
