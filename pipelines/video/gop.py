"""Group-of-pictures structure: frame types and the encode order.

Display frame ``d`` is an anchor when ``d % gop == 0`` (an I frame) or when its offset in the
GOP is a multiple of ``bframes + 1`` (a P frame); the last frame is always an anchor so that
every B frame has a future reference.  GOPs are *open*: B frames at the end of a GOP predict from
the next GOP's I frame.  Anchors are coded before the B frames that precede them in display
order, e.g. display ``I0 B1 B2 P3 B4 B5 P6`` is coded ``I0 P3 B1 B2 P6 B4 B5``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FrameSlot", "MAX_LOOKAHEAD", "encode_order", "anchors_held", "feedback_plan",
]


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


MAX_LOOKAHEAD = 8


def encode_order(n_frames: int, gop: int, bframes: int, lookahead: int = 0) -> list[FrameSlot]:
    """The frames of an ``n_frames`` clip in encode order, with types and references; the B
    frames before anchor ``a[i]`` come after anchor ``a[i + lookahead]``."""
    _check("n_frames", n_frames, 1)
    _check("gop", gop, 1)
    _check("bframes", bframes, 0)
    _check("lookahead", lookahead, 0)
    if lookahead > MAX_LOOKAHEAD:
        raise ValueError(f"lookahead: must be an integer in 0..{MAX_LOOKAHEAD}, got {lookahead}")
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

    def add_group(i: int) -> None:  # the B frames between anchors i-1 and i
        for b in range(anchors[i - 1] + 1, anchors[i]):
            add(b, "B", (anchors[i - 1], anchors[i]))

    for j, a in enumerate(anchors):
        add(a, "I" if a % gop == 0 else "P", () if a % gop == 0 else (anchors[j - 1],))
        if j - lookahead >= 1:
            add_group(j - lookahead)
    for i in range(max(1, len(anchors) - lookahead), len(anchors)):
        add_group(i)
    return slots


def anchors_held(lookahead: int) -> int:
    """How many reconstructed anchors a decoder (or a motion-estimation replica) must hold with
    this lookahead: the two references of the B frames coded next, and the ``lookahead``
    anchors coded ahead of them."""
    return lookahead + 2


def feedback_plan(n_frames: int, gop: int, bframes: int,
                  lookahead: int = 0) -> tuple[frozenset[int], list[int]]:
    """What the closed loop needs: ``(referenced, live_from)``.

    ``referenced`` holds the seqs of the anchors that some frame predicts from (only their
    reconstructions go back along the feedback edge); ``live_from[k]`` is the oldest seq that
    item ``k`` or any later item references, so anchors below it can be forgotten at item ``k``.
    """
    slots = encode_order(n_frames, gop, bframes, lookahead)
    referenced = frozenset(r for s in slots for r in s.ref_seqs)
    live = len(slots)
    live_from = [0] * len(slots)
    for s in reversed(slots):
        live = min(live, s.seq, *s.ref_seqs)
        live_from[s.seq] = live
    return referenced, live_from
