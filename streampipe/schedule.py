"""Pipeline training schedules as plain data: build, validate, dry-run, print.

A schedule says, for every rank, the order in which it runs its pipeline *actions*:

* ``F`` forward of one microbatch through one stage,
* ``B`` backward of one microbatch through one stage (input and weight gradients together),
* ``I`` and ``W``, the two halves of a split backward (zero-bubble schedules, Qi et al. 2023):
  ``I`` computes the gradient with respect to the stage input (what the previous stage waits
  for), ``W`` the weight gradients, later, in a slot that would otherwise be a bubble,
* ``S`` the optimizer step of one stage, after all its backwards.

It is a ``dict[int, list[Action | None]]`` (rank -> ordered actions). ``None`` is a bubble: the
executor skips it and :func:`simulate` ignores it (the dry run recomputes the timing itself), so a
unit-time grid written by hand is a schedule too. Stage ``s`` lives on exactly one rank; GPipe,
1F1B and ZB-H1 put stage ``s`` on rank ``s``, the interleaved schedule puts stage ``s`` on rank
``s % P``. A *replicated* schedule (data parallel inside the pipeline, ``replicated=True`` in
:func:`validate`) may run one stage on several ranks, each microbatch of it on one of them; every
such rank then has its own ``S`` for the stage, after all backwards of the stage on every rank
(the gradients are all-reduced before the step).

Communication is implicit, which is all an MPI executor needs to derive it: after ``F`` on stage
``s`` whose stage ``s + 1`` lives on another rank, post a non-blocking send of the activation;
before ``F`` on stage ``s > 0`` fed from another rank, receive it (and mirror that for ``B``
with gradients towards stage ``s - 1``). Sends are buffered (non-blocking), receives block: that
is exactly the dependency model of :func:`simulate`, so a schedule that simulates without
:class:`DeadlockError` runs without deadlock under that executor.

This module is pure Python (no numpy, no MPI) so that planning and tests never need either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Action",
    "Schedule",
    "ScheduleError",
    "DeadlockError",
    "SimResult",
    "gpipe",
    "one_f_one_b",
    "interleaved_1f1b",
    "zb_h1",
    "GENERATORS",
    "stage_ranks",
    "validate",
    "simulate",
    "bubble_formula",
    "format_grid",
]

KINDS = ("F", "B", "I", "W", "S")
_ACTION_RE = re.compile(r"^(\d+)(F|B|I|W|S)(\d*)$")


class ScheduleError(ValueError):
    """A schedule that breaks the pipeline-training rules; the message names rank and step."""


class DeadlockError(ScheduleError):
    """Some rank waits for an action that never runs.

    Attributes:
        stuck: rank -> (step index in the rank's list, the action, the action it waits for).
    """

    def __init__(self, message: str, stuck: dict[int, tuple[int, Action, Action]]):
        super().__init__(message)
        self.stuck = stuck


class Action(NamedTuple):
    """One unit of pipeline work: ``kind`` on ``stage`` for ``microbatch`` (None for ``S``).

    The string form is ``"<stage><kind><microbatch>"``, e.g. ``"2F0"``, ``"1B3"``, ``"0S"``.
    """

    stage: int
    kind: str
    microbatch: int | None = None

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{'' if self.microbatch is None else self.microbatch}"

    @classmethod
    def parse(cls, text: str) -> Action:
        """Parse the string form back into an Action (``Action.parse(str(a)) == a``)."""
        m = _ACTION_RE.match(text.strip())
        if m is None:
            raise ScheduleError(
                f"action {text!r}: expected <stage><F|B|I|W|S><microbatch>, e.g. '2F0', '1B3', "
                "'0S'"
            )
        stage, kind, mb = int(m.group(1)), m.group(2), m.group(3)
        if kind == "S":
            if mb:
                raise ScheduleError(f"action {text!r}: a step (S) takes no microbatch")
            return cls(stage, kind, None)
        if not mb:
            raise ScheduleError(f"action {text!r}: {kind} needs a microbatch number")
        return cls(stage, kind, int(mb))


Schedule = dict[int, list["Action | None"]]


def F(stage: int, mb: int) -> Action:  # noqa: N802 - reads like the schedule notation
    return Action(stage, "F", mb)


def B(stage: int, mb: int) -> Action:  # noqa: N802
    return Action(stage, "B", mb)


def S(stage: int) -> Action:  # noqa: N802
    return Action(stage, "S", None)


def I(stage: int, mb: int) -> Action:  # noqa: E743, N802 - the zero-bubble paper's letter
    return Action(stage, "I", mb)


def W(stage: int, mb: int) -> Action:  # noqa: N802
    return Action(stage, "W", mb)


def _check_sizes(n_stages: int, n_microbatches: int) -> None:
    if not isinstance(n_stages, int) or n_stages < 1:
        raise ScheduleError(f"n_stages: must be an integer >= 1, got {n_stages!r}")
    if not isinstance(n_microbatches, int) or n_microbatches < 1:
        raise ScheduleError(f"n_microbatches: must be an integer >= 1, got {n_microbatches!r}")


# ----------------------------------------------------------------------------- generators


def gpipe(n_stages: int, n_microbatches: int) -> Schedule:
    """GPipe: all forwards, then all backwards (ascending microbatch order), then the step.

    Backwards run in ascending order so that each stage adds its microbatch gradients in the
    same order as the serial trainer (bitwise-equal gradient sums).
    """
    _check_sizes(n_stages, n_microbatches)
    mbs = range(n_microbatches)
    return {r: [F(r, m) for m in mbs] + [B(r, m) for m in mbs] + [S(r)] for r in range(n_stages)}


def one_f_one_b(n_stages: int, n_microbatches: int) -> Schedule:
    """1F1B (PipeDream-flush): ``P - s - 1`` warm-up forwards, alternate F/B, drain backwards.

    Stage ``s`` holds at most ``min(m, P - s)`` live activations (GPipe holds ``m``) for the
    same bubble fraction.
    """
    _check_sizes(n_stages, n_microbatches)
    out: Schedule = {}
    for r in range(n_stages):
        warm = min(n_stages - r - 1, n_microbatches)
        acts: list[Action | None] = [F(r, m) for m in range(warm)]
        for i in range(n_microbatches - warm):
            acts += [F(r, warm + i), B(r, i)]
        acts += [B(r, m) for m in range(n_microbatches - warm, n_microbatches)]
        out[r] = acts + [S(r)]
    return out


def interleaved_1f1b(n_stages: int, n_microbatches: int, n_virtual: int) -> Schedule:
    """Interleaved 1F1B (Megatron-LM): ``n_virtual`` model chunks per rank.

    ``n_stages`` is the number of ranks P; the model has ``P * n_virtual`` stages and stage ``s``
    runs on rank ``s % P``. Needs ``n_microbatches % P == 0`` (Megatron's rule: microbatches go
    round in groups of P). The bubble shrinks about ``n_virtual``-fold for the same work.
    """
    _check_sizes(n_stages, n_microbatches)
    if not isinstance(n_virtual, int) or n_virtual < 1:
        raise ScheduleError(f"n_virtual: must be an integer >= 1, got {n_virtual!r}")
    p, m, v = n_stages, n_microbatches, n_virtual
    if m % p:
        raise ScheduleError(
            f"n_microbatches: interleaved 1F1B needs a multiple of n_stages={p}, got {m}"
        )
    total = m * v

    def unit(k: int, forward: bool) -> Action:
        chunk = (k % (p * v)) // p
        if not forward:
            chunk = v - 1 - chunk
        mb = (k // (p * v)) * p + k % p
        return Action(chunk * p + r, "F" if forward else "B", mb)

    out: Schedule = {}
    for r in range(p):
        if m == p:
            warm = total  # Megatron: with one group every forward is warm-up
        else:
            warm = min((p - r - 1) * 2 + (v - 1) * p, total)
        acts: list[Action | None] = [unit(k, True) for k in range(warm)]
        for k in range(total - warm):
            acts += [unit(warm + k, True), unit(k, False)]
        acts += [unit(k, False) for k in range(total - warm, total)]
        out[r] = acts + [S(c * p + r) for c in range(v)]
    return out


def zb_h1(n_stages: int, n_microbatches: int) -> Schedule:
    """ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"; torch's ZB1P with one stage
    per rank): 1F1B with each backward split into ``I`` (input gradient) and ``W`` (weights).

    Rank ``r`` runs 1F1B's ``P - r - 1`` warm-up forwards, then pairs ``F``, ``I``; from its
    ``r + 1``-th pair on, each pair is followed by the oldest pending ``W``, and the ``r`` ``W``
    left over fill the drain at the end. Only ``I`` lies on the cross-rank critical path, so with
    ``t_F = t_I = t_W`` the bubble is about a third of 1F1B's while no rank holds more
    microbatches than 1F1B's first rank (``P``). ``W`` runs in microbatch order, so weight
    gradients are added in the serial trainer's order.
    """
    _check_sizes(n_stages, n_microbatches)
    p, m = n_stages, n_microbatches
    out: Schedule = {}
    for r in range(p):
        warm = min(p - r - 1, m)
        acts: list[Action | None] = [F(r, k) for k in range(warm)]
        w_next = 0
        for k in range(m):  # k-th input backward; forwards run ahead by `warm`
            if warm + k < m:
                acts.append(F(r, warm + k))
            acts.append(I(r, k))
            if k >= r:
                acts.append(W(r, w_next))
                w_next += 1
        acts += [W(r, k) for k in range(w_next, m)]
        out[r] = acts + [S(r)]
    return out


GENERATORS = {"gpipe": gpipe, "1f1b": one_f_one_b, "zb-h1": zb_h1}
"""Schedules with one stage per rank, by the name ``[train] schedule`` uses (interleaved 1F1B
takes a third argument, ``virtual``)."""


# ----------------------------------------------------------------------------- validation


def _where(rank: int, step: int, a: Action) -> str:
    return f"rank {rank} step {step} ({a})"


def _stage_homes(schedule: Schedule, replicated: bool) -> dict[int, list[int]]:
    """Stage -> the ranks that run it (one, unless ``replicated``); checks the schedule's shape."""
    if not isinstance(schedule, dict) or not schedule:
        raise ScheduleError("schedule: must be a non-empty dict rank -> list of actions")
    homes: dict[int, list[tuple[int, int]]] = {}
    for rank, acts in schedule.items():
        if not isinstance(rank, int) or rank < 0:
            raise ScheduleError(f"schedule: rank keys must be integers >= 0, got {rank!r}")
        if not isinstance(acts, (list, tuple)):
            raise ScheduleError(f"rank {rank}: actions must be a list, got {type(acts).__name__}")
        for i, a in enumerate(acts):
            if a is None:
                continue
            if not isinstance(a, Action) or a.kind not in KINDS:
                raise ScheduleError(f"rank {rank} step {i}: not an Action: {a!r}")
            seen = homes.setdefault(a.stage, [])
            if all(r != rank for r, _ in seen):
                if seen and not replicated:
                    r0, i0 = seen[0]
                    raise ScheduleError(
                        f"stage {a.stage} appears on rank {r0} (step {i0}) and on "
                        f"{_where(rank, i, a)}; a stage lives on one rank"
                    )
                seen.append((rank, i))
    return {s: [r for r, _ in v] for s, v in sorted(homes.items())}


def stage_ranks(schedule: Schedule) -> dict[int, int]:
    """Map each stage to the one rank that runs it; error if a stage appears on two ranks."""
    return {s: rs[0] for s, rs in _stage_homes(schedule, False).items()}


def _grad_action(pos: dict[Action, tuple[int, int]], s: int, m: int) -> Action:
    """The action that produces stage ``s``'s input gradient for ``m``: ``B`` or, split, ``I``."""
    return I(s, m) if I(s, m) in pos else B(s, m)


def validate(schedule: Schedule, *, timed: bool = False, replicated: bool = False) -> None:
    """Check a schedule; raise :class:`ScheduleError` naming the rank and step of the first fault.

    Rules: stages are ``0..S-1`` each on one rank; every stage runs ``F`` exactly once for the
    same microbatches ``0..m-1`` and, for each, either one ``B`` or one ``I`` and one ``W`` (the
    split backward), on the rank of its ``F`` and after it (``W`` after ``I``); each stage ends
    with exactly one ``S`` after its last backward. Cross-rank order (forward on ``s`` before
    ``s + 1``, input gradient of ``s + 1`` before ``s``'s) is checked by a unit-time dry run,
    which raises :class:`DeadlockError` if some rank would wait forever. With ``timed=True`` the
    list index is read as the time slot (a hand-written grid with ``None`` bubbles) and the
    cross-rank order must hold slot by slot as well. ``replicated=True`` lets a stage run on
    several ranks (data parallel): each microbatch of it still on one, and an ``S`` on each.
    """
    homes = _stage_homes(schedule, replicated)
    n_stages = len(homes)
    if sorted(homes) != list(range(n_stages)):
        raise ScheduleError(f"stages must be numbered 0..{n_stages - 1}, got {sorted(homes)}")

    pos: dict[Action, tuple[int, int]] = {}
    steps: dict[tuple[int, int], int] = {}  # (rank, stage) -> index of its S
    for rank, acts in schedule.items():
        for i, a in enumerate(acts):
            if a is None:
                continue
            if a.kind == "S":
                if (rank, a.stage) in steps:
                    raise ScheduleError(f"{_where(rank, i, a)}: {a} runs twice on rank {rank}")
                steps[(rank, a.stage)] = i
                for j in range(i + 1, len(acts)):
                    later = acts[j]
                    if later is not None and later.stage == a.stage:
                        raise ScheduleError(
                            f"{_where(rank, j, later)}: comes after the step {a} at step {i}; "
                            "a stage must end with its optimizer step"
                        )
                continue
            if a in pos:
                r0, i0 = pos[a]
                raise ScheduleError(
                    f"{_where(rank, i, a)}: {a} runs twice (first at rank {r0} step {i0})"
                )
            pos[a] = (rank, i)

    mbs = sorted({a.microbatch for a in pos if a.stage == 0 and a.kind == "F"})
    if mbs != list(range(len(mbs))) or not mbs:
        raise ScheduleError(f"stage 0: forward microbatches must be 0..m-1, got {mbs}")
    for s in range(n_stages):
        for m in mbs:
            if F(s, m) not in pos:
                rank = homes[s][0]
                raise ScheduleError(f"rank {rank}: {F(s, m)} is missing (stage {s}, "
                                    f"microbatch {m})")
            rank, i_f = pos[F(s, m)]
            split = I(s, m) in pos or W(s, m) in pos
            need = (I(s, m), W(s, m)) if split else (B(s, m),)
            if split and B(s, m) in pos:
                raise ScheduleError(f"{_where(*pos[B(s, m)], B(s, m))}: microbatch {m} of stage "
                                    f"{s} has both a full backward and a split one (I/W)")
            prev = (F(s, m), i_f)
            for a in need:
                if a not in pos:
                    raise ScheduleError(f"rank {rank}: {a} is missing (stage {s}, microbatch {m})")
                r_a, i_a = pos[a]
                if r_a != rank:
                    raise ScheduleError(f"{_where(r_a, i_a, a)}: runs on another rank than "
                                        f"{F(s, m)} (rank {rank}), whose saved inputs it needs")
                if i_a < prev[1]:
                    what = "backward before its forward" if prev[0].kind == "F" else \
                        "weight gradient before its input gradient"
                    raise ScheduleError(f"{_where(rank, i_a, a)}: {what} {prev[0]} at step "
                                        f"{prev[1]}")
                prev = (a, i_a)
        for rank in homes[s]:
            if (rank, s) not in steps:
                raise ScheduleError(f"rank {rank}: stage {s} has no optimizer step {S(s)}")
    extra = [a for a in pos if a.microbatch not in mbs]
    if extra:
        a = extra[0]
        raise ScheduleError(
            f"{_where(*pos[a], a)}: microbatch {a.microbatch} is not among stage 0's {mbs}"
        )

    if timed:
        for s in range(n_stages - 1):
            for m in mbs:
                pairs = ((F(s, m), F(s + 1, m)),
                         (_grad_action(pos, s + 1, m), _grad_action(pos, s, m)))
                for before, after in pairs:
                    if pos[after][1] <= pos[before][1]:
                        raise ScheduleError(
                            f"{_where(*pos[after], after)}: runs in slot {pos[after][1]}, not "
                            f"after {before} (rank {pos[before][0]} slot {pos[before][1]})"
                        )
    simulate(schedule)  # raises DeadlockError on a cross-rank order that can never run


# ----------------------------------------------------------------------------- dry run


@dataclass
class SimResult:
    """Outcome of a dry run.

    Attributes:
        events: per rank, (action, start, end) in execution order.
        makespan: time from the first start to the last end.
        busy: per rank, total time spent in actions.
        idle_fraction: per rank, ``1 - busy / makespan``.
        peak_activations: per stage, the most microbatches whose forward has started and
            whose backward (``B``, or ``W`` when split) has not yet ended.
        rank_peak_activations: per rank, the same count summed over the rank's stages at each
            instant (what one rank's memory holds; differs from the per-stage peaks when a
            rank runs several stages, as in interleaved 1F1B).
        grid: per rank, one entry per unit time slot (the action running, or None); only when
            every duration is a whole number, else None. Zero-time actions take no slot.
    """

    events: dict[int, list[tuple[Action, float, float]]]
    makespan: float
    busy: dict[int, float]
    idle_fraction: dict[int, float]
    peak_activations: dict[int, int]
    grid: dict[int, list[Action | None]] | None = field(default=None)
    rank_peak_activations: dict[int, int] = field(default_factory=dict)

    @property
    def bubble(self) -> float:
        """Mean idle fraction over the ranks: the pipeline bubble of this dry run."""
        return sum(self.idle_fraction.values()) / max(len(self.idle_fraction), 1)


def _per_stage(value: float | Sequence[float], n_stages: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        vals = [float(value)] * n_stages
    else:
        vals = [float(v) for v in value]
        if len(vals) != n_stages:
            raise ScheduleError(f"{name}: needs one time per stage ({n_stages}), got {len(vals)}")
    for s, v in enumerate(vals):
        if not (v >= 0 and math.isfinite(v)):
            raise ScheduleError(f"{name}[{s}]: must be a finite time >= 0, got {v}")
    return vals


def _deps(a: Action, n_stages: int, mbs: Iterable[int], grad: dict[tuple[int, int], Action]
          ) -> list[Action]:
    """Actions whose results ``a`` consumes (same-rank order is the rank's own list order)."""
    if a.kind == "F":
        return [F(a.stage - 1, a.microbatch)] if a.stage > 0 else []
    if a.kind in ("B", "I"):
        up = [grad[(a.stage + 1, a.microbatch)]] if a.stage < n_stages - 1 else []
        return up + [F(a.stage, a.microbatch)]
    if a.kind == "W":
        return [I(a.stage, a.microbatch)]
    # the step waits for every backward of its stage, on every rank (the all-reduce)
    return [W(a.stage, m) if grad[(a.stage, m)].kind == "I" else B(a.stage, m) for m in mbs]


def simulate(
    schedule: Schedule,
    t_f: float | Sequence[float] = 1,
    t_b: float | Sequence[float] = 1,
    t_s: float | Sequence[float] = 0,
    t_comm: float = 0,
    t_w: float | Sequence[float] | None = None,
) -> SimResult:
    """Dry-run a schedule: each rank runs its actions in order, each as soon as its inputs exist.

    Times are per action (a number, or one per stage): ``t_f`` forward, ``t_b`` full backward,
    ``t_s`` optimizer step; a split backward takes ``t_b - t_w`` for ``I`` and ``t_w`` for ``W``
    (default ``t_w = t_b / 2``). ``t_comm`` is added to a dependency that crosses ranks. Sends
    never block. A stage may run on several ranks (replicated schedules). Raises
    :class:`DeadlockError` naming every stuck rank, its step and what it waits for.
    """
    homes = _stage_homes(schedule, True)
    n_stages = max(homes) + 1
    tb = _per_stage(t_b, n_stages, "t_b")
    tw = [b / 2 for b in tb] if t_w is None else _per_stage(t_w, n_stages, "t_w")
    for s, (b, w) in enumerate(zip(tb, tw, strict=True)):
        if w > b:
            raise ScheduleError(f"t_w[{s}]: the weight half ({w}) exceeds the backward ({b})")
    dur = {
        "F": _per_stage(t_f, n_stages, "t_f"),
        "B": tb,
        "I": [b - w for b, w in zip(tb, tw, strict=True)],
        "W": tw,
        "S": _per_stage(t_s, n_stages, "t_s"),
    }
    if not (t_comm >= 0 and math.isfinite(t_comm)):
        raise ScheduleError(f"t_comm: must be a finite time >= 0, got {t_comm}")
    mbs = sorted({a.microbatch for acts in schedule.values() for a in acts
                  if a is not None and a.kind == "F"})
    scheduled = {a for acts in schedule.values() for a in acts if a is not None}
    where = {a: r for r, acts in schedule.items() for a in acts if a is not None}
    grad = {(s, m): I(s, m) if I(s, m) in scheduled else B(s, m)
            for s in range(n_stages) for m in mbs}

    ranks = sorted(schedule)
    todo = {r: [(i, a) for i, a in enumerate(schedule[r]) if a is not None] for r in ranks}
    ptr = dict.fromkeys(ranks, 0)
    free = dict.fromkeys(ranks, 0.0)
    end: dict[Action, float] = {}
    events: dict[int, list[tuple[Action, float, float]]] = {r: [] for r in ranks}

    progress = True
    while progress:
        progress = False
        for r in ranks:
            while ptr[r] < len(todo[r]):
                _, a = todo[r][ptr[r]]
                deps = _deps(a, n_stages, mbs, grad)
                if any(d not in end for d in deps):
                    break
                ready = max(
                    [end[d] + (t_comm if where.get(d) != r else 0) for d in deps],
                    default=0.0,
                )
                start = max(free[r], ready)
                free[r] = start + dur[a.kind][a.stage]
                if a.kind != "S":  # S may run on several ranks; nothing waits for it
                    end[a] = free[r]
                events[r].append((a, start, free[r]))
                ptr[r] += 1
                progress = True

    stuck: dict[int, tuple[int, Action, Action]] = {}
    for r in ranks:
        if ptr[r] < len(todo[r]):
            i, a = todo[r][ptr[r]]
            waits = next(d for d in _deps(a, n_stages, mbs, grad) if d not in end)
            stuck[r] = (i, a, waits)
    if stuck:
        lines = []
        for r, (i, a, w) in stuck.items():
            if w not in scheduled:
                why = "which no rank's schedule contains"
            else:
                wr = where[w]
                wi, wa, _ = stuck[wr]
                why = f"which rank {wr} never reaches (it is stuck at step {wi}: {wa})"
            lines.append(f"  rank {r} step {i}: {a} waits for {w}, {why}")
        grid = _format_rows(schedule, mark={r: v[0] for r, v in stuck.items()})
        raise DeadlockError("schedule deadlocks:\n" + "\n".join(lines) + "\n" + grid, stuck)

    makespan = max((e for ev in events.values() for _, _, e in ev), default=0.0)
    busy = {r: sum(e - s for _, s, e in events[r]) for r in ranks}
    idle = {r: (1 - busy[r] / makespan) if makespan > 0 else 0.0 for r in ranks}
    return SimResult(
        events=events,
        makespan=makespan,
        busy=busy,
        idle_fraction=idle,
        peak_activations=_peak_activations(events, n_stages),
        grid=_grid(events, makespan),
        rank_peak_activations=_peak_activations(events, n_stages, by_rank=True),
    )


def bubble_formula(schedule: str, n_ranks: int, n_microbatches: int, virtual: int = 1) -> float:
    """The textbook bubble fraction at unit times (``t_F = t_I = t_W``, ``t_B = t_I + t_W``).

    GPipe and 1F1B: ``(P - 1) / (m + P - 1)``; interleaved 1F1B: ``(P - 1) / (v m + P - 1)``
    (Narayanan et al. 2021); ZB-H1: ``(P - 1) / (3 m + P - 1)``, its drain costs ``(P - 1)
    (t_F + t_I - t_W)`` instead of ``(P - 1)(t_F + t_B)`` (Qi et al. 2023).
    """
    p, m = n_ranks, n_microbatches
    if schedule in ("gpipe", "1f1b"):
        return (p - 1) / (m + p - 1)
    if schedule == "interleaved":
        return (p - 1) / (virtual * m + p - 1)
    if schedule == "zb-h1":
        return (p - 1) / (3 * m + p - 1)
    raise ScheduleError(f"bubble_formula: unknown schedule {schedule!r}")


Events = dict[int, list[tuple[Action, float, float]]]


def _peak_activations(events: Events, n: int, by_rank: bool = False) -> dict[int, int]:
    # +1 when a forward starts, -1 when its backward ends; a release at time t frees memory
    # for an acquisition at the same t, hence releases sort first.
    marks: dict[int, list[tuple[float, int]]] = (
        {r: [] for r in events} if by_rank else {s: [] for s in range(n)})
    for r, ev in events.items():
        for a, start, end in ev:
            key = r if by_rank else a.stage
            if a.kind == "F":
                marks[key].append((start, 1))
            elif a.kind in ("B", "W"):
                marks[key].append((end, -1))
    peak = {}
    for s, ms in marks.items():
        live = best = 0
        for _, d in sorted(ms):
            live += d
            best = max(best, live)
        peak[s] = best
    return peak


def _grid(events: dict[int, list[tuple[Action, float, float]]], makespan: float):
    times = [t for ev in events.values() for _, s, e in ev for t in (s, e)]
    if any(t != int(t) for t in times):
        return None
    grid: dict[int, list[Action | None]] = {r: [None] * int(makespan) for r in events}
    for r, ev in events.items():
        for a, s, e in ev:
            for t in range(int(s), int(e)):
                grid[r][t] = a
    return grid


# ----------------------------------------------------------------------------- printing


def _format_rows(rows: dict[int, list[Action | None]], mark: dict[int, int] | None = None) -> str:
    mark = mark or {}
    ranks = sorted(rows)
    n = max((len(v) for v in rows.values()), default=0)
    cells = {
        r: [
            ("" if i >= len(rows[r]) or rows[r][i] is None else str(rows[r][i]))
            + ("<<" if mark.get(r) == i else "")
            for i in range(n)
        ]
        for r in ranks
    }
    width = max([len(f"Rank {r}") for r in ranks] + [len(c) for v in cells.values() for c in v])
    step_w = len(str(max(n - 1, 0)))
    head = " " * (step_w + 7) + " ".join(f"{f'Rank {r}':<{width}}" for r in ranks)
    lines = [head.rstrip()]
    for i in range(n):
        row = " ".join(f"{cells[r][i]:<{width}}" for r in ranks)
        lines.append(f"Step {i:0{step_w}d}: {row}".rstrip())
    return "\n".join(lines)


def format_grid(what: Schedule | SimResult) -> str:
    """Print a schedule or a dry run's unit-time grid as a step x rank table.

    Like ``torch.distributed.pipelining``'s ``_format_pipeline_order``: one row per step, one
    column per rank, bubbles blank. For a :class:`SimResult` the rows are time slots (an action
    that lasts k units fills k rows).
    """
    if isinstance(what, SimResult):
        if what.grid is None:
            raise ScheduleError("format_grid: the dry run used fractional times; no unit grid")
        return _format_rows(what.grid)
    stage_ranks(what)
    return _format_rows(what)
