"""Text renderings of the analysis: the table ``streampipe run`` prints at the end, and the
rich report of ``streampipe report`` (tables for stages and edges, then the conclusions)."""

from __future__ import annotations

import math
import sys
from typing import Any

from .plan import Plan
from .report import analyze, bottleneck
from .summary import StageRow

__all__ = ["short_text", "print_rich", "table_rows"]


def _host_lines(hosts: dict[str, Any]) -> list[str]:
    lines = [f"host {h['host']}: ranks {','.join(map(str, h['ranks']))} "
             f"({', '.join(h['stages'])}), {h['items']} items, {h['throughput']:.1f} items/s"
             for h in hosts["hosts"]]
    lines += [f"hop {k['from']}->{k['to']}: {k['items']} items, median "
              f"{1e3 * k['hop_median']:.3f} ms, min {1e3 * k['hop_min']:.3f} ms"
              for k in hosts["links"] if k["items"]]
    return lines


def _num(x: float | None, spec: str, scale: float = 1.0) -> str:
    """``x * scale`` formatted, or a dash for a figure that is unknown (None in the JSON
    document, NaN in a row: a rate over a span the run did not record)."""
    return "-" if x is None or not math.isfinite(x) else format(scale * x, spec)


def table_rows(summary: dict[str, StageRow]) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "rep", "items", "items/s", "busy", "starv", "block", "xfer", "io",
            "t_i ms", "bound/s", "L", "W ms", "|L-λW|/L"]
    rows = []
    for name, r in summary.items():
        rows.append([name, str(r.replicas), str(r.items), _num(r.throughput, ".1f"),
                     *(f"{100 * getattr(r, k):.0f}%" for k in ("busy", "starved", "blocked",
                                                              "transfer", "io")),
                     f"{1e3 * r.cost:.3f}", f"{r.bound:.1f}", _num(r.L, ".2f"),
                     _num(r.W, ".2f", 1e3), _num(r.little_residual, ".3f")])
    return head, rows


def _conclusions(doc: dict) -> list[str]:
    lines = []
    bn, pipe = doc["bottleneck"], doc["pipeline"]
    if pipe:
        lines.append(f"throughput {_num(pipe['throughput'], '.1f')}/s (period "
                     f"{_num(pipe['period'], '.3f', 1e3)} ms, bound "
                     f"{_num(pipe['period_bound'], '.3f', 1e3)} ms); makespan "
                     f"{_num(pipe['makespan'], '.2f')} s vs "
                     f"{_num(pipe['makespan_predicted'], '.2f')} s = latency + (N-1)·bound")
    if bn.get("stage"):
        lines.append(f"bottleneck: stage {bn['stage']!r} ({bn['reason']})")
    e2e = doc.get("end_to_end")
    if e2e and e2e["items"] and not e2e["applicable"]:
        # one sojourn per source item does not exist: printing L, λ, W would show a residual
        # that is the shape of the pipeline, not an error of the measurement
        lines.append("end to end: Little's law not checked (items are forked, joined, dropped "
                     "or multiplied on the way; the per-stage and per-edge figures hold)")
    elif e2e and e2e["items"]:
        lines.append(f"end to end: L {_num(e2e['L'], '.2f')} in flight, λ "
                     f"{_num(e2e['lam'], '.1f')}/s, W {_num(e2e['W'], '.1f', 1e3)} ms, |L-λW|/L "
                     f"{_num(e2e['little_residual'], '.3f')}; throughput saturates at "
                     f"~{_num(e2e['saturation_in_flight'], '.1f')} in flight")
    lines += [f"advice: {a['text']}" for a in doc["advice"]]
    lines += _gpu_lines(doc["stages"])
    if doc.get("per_host") and len(doc["per_host"]["hosts"]) > 1:
        lines += _host_lines(doc["per_host"])
    return lines


def _gpu_lines(stages: list[dict[str, Any]]) -> list[str]:
    out = []
    for st in stages:
        g = st.get("gpu")
        if g:
            out.append(f"gpu: stage {st['name']!r}: peak {g['peak_bytes'] / 2**20:.1f} MiB device "
                       f"memory, kernels {1e3 * g['kernel_per_item']:.3f} ms/item "
                       f"({100 * g['kernel_of_busy']:.0f}% of its busy time)")
    return out


def short_text(plan: Plan, summary: dict[str, StageRow],
               ranks: list[dict | None] | None = None) -> str:
    """The table printed at the end of ``streampipe run``, then the bottleneck and advice."""
    head, rows = table_rows(summary)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    lines = [fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows]
    if ranks is not None:
        lines += _conclusions(analyze(plan, ranks, summary=summary))
    else:
        bn = bottleneck(summary)
        if bn["stage"]:
            lines.append(f"bottleneck: stage {bn['stage']!r} ({bn['reason']})")
    return "\n".join(lines)


def print_rich(doc: dict[str, Any], summary: dict[str, StageRow]) -> None:
    """The report of ``streampipe report`` on stdout (rich is imported only here)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    # a pipe or a file gets the full table, not rich's 80-column default
    con = Console() if sys.stdout.isatty() else Console(width=200)
    run = doc["run"]
    style = "green" if run["status"] == "ok" else "bold red"
    hosts = escape(", ".join(h for h in run["hosts"] if h))
    con.print(f"run [bold]{escape(str(run['job']))}[/]: [{style}]{run['status']}[/], "
              f"{run['ranks']} ranks on {hosts}, wall {run['wall_time'] or 0:.2f} s")
    if run["error"]:
        # the message is the run's, not markup: its brackets print as they are
        con.print(Text.assemble(("error:", "red"), " ", run["error"]), highlight=False)
    head, rows = table_rows(summary)
    bn = doc["bottleneck"].get("stage")
    t = Table(title="stages", header_style="bold")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*r, style="bold yellow" if r[0] == bn else None)
    con.print(t)
    if doc["edges"]:
        e = Table(title="edges (queue at the receiver; credits in flight)", header_style="bold")
        for h in ("edge", "L", "λ/s", "W ms", "|L-λW|/L", "in flight", "peak/cap", "wire ms"):
            e.add_column(h, justify="right")
        for r in doc["edges"]:
            wire = "-" if r["transit_median"] is None else f"{1e3 * r['transit_median']:.3f}"
            e.add_row(f"{r['from']}→{r['to']}", _num(r["L"], ".2f"), _num(r["lam"], ".1f"),
                      _num(r["W"], ".2f", 1e3), _num(r["little_residual"], ".3f"),
                      _num(r["in_flight"], ".2f"), f"{r['in_flight_peak']}/{r['capacity']}",
                      wire)
        con.print(e)
    for line in _conclusions(doc):
        con.print(line, markup=False, highlight=False)
