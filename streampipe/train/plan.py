"""``streampipe plan`` for a training job: ranks, schedule grid, cuts, stage times, bubble.

Works for any model (streampipe layers or a torch ``Sequential``): the layer times come from
``[train] layer_times`` or are measured here on the first microbatch of the job's training data,
forward plus backward per layer (:func:`streampipe.train.partition.balance_by_time` then gives
the time-balanced cuts). The predicted bubble is the dry run of the job's own per-rank schedule
with those stage times, a backward taken as twice its forward (the usual ratio; ``I`` and ``W``
each half of it), next to the textbook formula at unit times.
"""

from __future__ import annotations

from typing import Any

from ..schedule import bubble_formula, format_grid, simulate
from .config import parse_train
from .data import load_source
from .model import check_cuts, load_model
from .partition import balance_by_time, stage_times
from .session import share_cores

__all__ = ["plan_text"]


def _us(times: list[float]) -> str:
    return ", ".join(f"{1e6 * t:.0f}" for t in times) + " us"


def plan_text(spec: Any) -> str:
    """The text ``streampipe plan JOB`` prints for a ``[train]`` job."""
    cfg = parse_train(spec.train, base=spec.path)
    layout = cfg.layout()
    phys = layout.physical(0)
    lines = [layout.describe(), "", f"schedule ({cfg.schedule}) of one minibatch step on "
             f"{layout.path_name(0)}'s path, unit-time dry run (F = I = W = 1, B = 2; "
             "<stage><F|B|I|W|S><microbatch>, S takes no time):"]
    sim = simulate(phys, t_f=1, t_b=2, t_w=1)
    lines.append(format_grid(sim))
    formula = bubble_formula(cfg.schedule, len(layout.template), cfg.microbatches, cfg.virtual)
    lines.append(f"unit-time dry run: makespan {sim.makespan:g}, bubble {100 * sim.bubble:.1f}% "
                 f"(formula {100 * formula:.1f}%), "
                 f"peak live activations per stage {sim.peak_activations}, per rank "
                 f"{sim.rank_peak_activations}")
    share_cores(layout.size)  # measure with the threads each rank will have
    model = load_model(cfg)
    if model.kind == "torch":
        from .torch_adapter import limit_threads

        limit_threads(layout.size)
    if cfg.layer_times:
        times, how = [float(t) for t in cfg.layer_times], "train.layer_times"
    else:
        shards, _ = layout.load_data(
            cfg, load_source(cfg.data.get("source", ""), cfg.base, cfg.loss)
            if layout.uses_source(cfg) else None)
        n = max(1, cfg.minibatch // cfg.microbatches)
        times = model.layer_times(shards[0].X[:n], repeats=3)
        how = f"measured, forward + backward on one microbatch of {n}"
    if len(times) != model.n_layers:
        raise ValueError(f"train.layer_times: needs one time per layer ({model.n_layers}), "
                         f"got {len(times)}")
    best = balance_by_time(times, cfg.n_stages)
    cuts = best if cfg.auto_cuts else list(cfg.cuts)
    check_cuts(model, cuts)
    per = stage_times(times, cuts)
    names = model.layer_names()
    lines += ["", f"model: {model.kind}, {model.n_layers} layers: " + ", ".join(names),
              f"layer times ({how}): " + _us(times),
              f"cuts {cuts}{' (auto)' if cfg.auto_cuts else ''}: stage times " + _us(per)]
    if not cfg.auto_cuts:
        lines.append(f"balance_by_time: cuts {best}: stage times " + _us(stage_times(times, best)))
    timed = simulate(phys, t_f=[t / 3 for t in per], t_b=[2 * t / 3 for t in per])
    lines.append(f"predicted step {1e3 * timed.makespan:.3f} ms, bubble "
                 f"{100 * timed.bubble:.1f}% (idle per rank: " + ", ".join(
                     f"{100 * v:.0f}%" for v in timed.idle_fraction.values()) + ")")
    return "\n".join(lines)
