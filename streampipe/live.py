"""The live view: where the time goes while the job runs.

Every rank sends rank 0 a snapshot of its counters once a second (:class:`LiveSender`, a few
numbers on the control channel, never on the data path: one ``perf_counter`` comparison per
loop turn, one small message per second). Rank 0 (:class:`LiveCollector`) turns the latest
snapshots into one record per second: per stage the items done (taken in and passed on, or
consumed by a sink; not those still queued), items/s, the busy / starved
/ blocked / transfer / io / other split over the last second and the items held, plus the
current bottleneck. It appends each record as a JSON line to ``RUN.h5.live.jsonl`` and keeps the
series for the run file (``/live``). :func:`watch` follows that file: ``streampipe run`` shows
it as a live table on a terminal, ``streampipe watch RUN.h5`` from any shell that sees the file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import STATES
from .plan import Plan

__all__ = ["EVERY", "LiveSender", "LiveCollector", "live_path", "run_path", "follow", "watch",
           "snapshot", "appear", "idle_for", "has_records"]

EVERY = 1.0  # seconds between snapshots
FIELDS = ("items", "rate", *STATES, "held")


def live_path(run_file: str) -> Path:
    """The JSON-lines file of a run file: ``RUN.h5.live.jsonl`` beside it."""
    p = Path(run_file)
    return p.with_name(p.name + ".live.jsonl")


def run_path(live_file: Path) -> Path:
    """The run file a live file belongs to (``RUN.h5`` of ``RUN.h5.live.jsonl``)."""
    name = live_file.name
    return live_file.with_name(name[:-len(".live.jsonl")] if name.endswith(".live.jsonl")
                               else name)


def snapshot(rec: Any, now: float) -> tuple:
    """A rank's counters now: wall time, items done, items out, the time split including the
    state the rank is in right now (the recorder only books a state when it is left), items
    held. Done, not received: a busy stage's queue fills ahead of it, so its arrival rate
    overstates what it passes (capacity x batch records ahead of a slow stage)."""
    totals = list(rec.totals)
    totals[rec.state] += now - rec.t_state
    held = rec.held.value
    return (rec.wall0 + (now - rec.t0), rec.items_in - held, rec.items_out, totals, held)


class LiveSender:
    """Per rank: ``tick(now)`` sends a snapshot when a second has passed since the last one."""

    __slots__ = ("rec", "send", "next")

    def __init__(self, rec: Any, send: Callable[[tuple], None], every: float = EVERY) -> None:
        self.rec, self.send = rec, send
        self.next = time.perf_counter() + every

    def tick(self, now: float) -> None:
        if now < self.next:
            return
        self.next = now + EVERY
        self.send(snapshot(self.rec, now))


class LiveCollector:
    """Rank 0: the latest snapshot of every rank -> one record per second (JSON line + series).
    """

    def __init__(self, plan: Plan, path: Path | None, t0: float) -> None:
        self.plan, self.path, self.t0 = plan, path, t0
        self.latest: dict[int, tuple] = {}
        self.prev: dict[int, tuple] = {}
        self.figures: dict[int, tuple[float, list[float]]] = {}  # rank -> (rate, split)
        self.records: list[dict[str, Any]] = []
        # the first record a little after the ranks' first snapshots (each sends one a second
        # after its start)
        self.next = t0 + EVERY + 0.1
        self.out = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.out = open(path, "w")  # noqa: SIM115 - appended to for the whole run

    def receive(self, src: int, snap: tuple) -> None:
        self.latest[src] = snap

    def tick(self, wall: float) -> None:
        """Emit a record when a second has passed (rank 0 calls this from its own loop)."""
        if wall < self.next:
            return
        self.next = wall + EVERY
        self.emit(wall)

    def emit(self, wall: float) -> dict[str, Any]:
        """One record from the latest snapshots. A rank's rate and time split are over the
        interval between its last two snapshots; a rank with no new snapshot since the last
        record (its second ticks a little after rank 0's, or it is inside a long item) keeps
        the figures it had, rather than showing a second of nothing."""
        stages: dict[str, dict[str, float]] = {}
        for st in self.plan.stages:
            rows = []
            for r in st.ranks:
                now = self.latest.get(r)
                if now is None:
                    continue
                if now is not self.prev.get(r) or r not in self.figures:
                    before = self.prev.get(r) or (self.t0, 0, 0, [0.0] * len(STATES), 0)
                    dt = max(now[0] - before[0], 1e-9)
                    self.figures[r] = ((now[1] - before[1]) / dt,
                                       [min(max((a - b) / dt, 0.0), 1.0)
                                        for a, b in zip(now[3], before[3], strict=True)])
                rows.append((r in st.roots, now, *self.figures[r]))
            if not rows:
                continue
            roots = [x for x in rows if x[0]]
            row = {"items": int(sum(n[1] for _, n, _, _ in roots)),
                   "rate": float(sum(rate for _, _, rate, _ in roots)),
                   "held": int(sum(n[4] for _, n, _, _ in roots))}
            for i, s in enumerate(STATES):
                row[s] = float(np.mean([fr[i] for _, _, _, fr in rows]))
            stages[st.name] = row
        self.prev.update(self.latest)
        bottleneck = max(stages, key=lambda n: stages[n]["busy"] + stages[n]["io"],
                         default=None)
        rec = {"t": round(wall - self.t0, 3), "stages": stages, "bottleneck": bottleneck}
        self.records.append(rec)
        self._write(rec)
        return rec

    def _write(self, rec: dict[str, Any]) -> None:
        if self.out is not None:
            self.out.write(json.dumps(rec, allow_nan=False) + "\n")
            self.out.flush()

    def end(self, status: str, wall: float) -> None:
        """The end marker :func:`watch` stops at (after the run file is written)."""
        self._write({"t": round(wall - self.t0, 3), "end": True, "status": status})
        if self.out is not None:
            self.out.close()
            self.out = None

    def series(self) -> dict[str, np.ndarray]:
        """``time`` and ``<stage>.<field>`` arrays (NaN where a stage had no record)."""
        if not self.records:
            return {}
        out = {"time": np.array([r["t"] for r in self.records])}
        for st in self.plan.stages:
            for f in FIELDS:
                out[f"{st.name}.{f}"] = np.array([r["stages"].get(st.name, {}).get(f, np.nan)
                                                  for r in self.records], dtype=float)
        return out


# ----------------------------------------------------------------------------- watching
def follow(path: Path, stop: Callable[[], bool] = lambda: False, poll: float = 0.2
           ) -> Iterator[dict[str, Any]]:
    """The records of a live file as they are appended, until its end marker (or ``stop()``);
    waits for the file to appear."""
    f = None
    buf = ""
    while True:
        if f is None:
            try:
                f = open(path)  # noqa: SIM115
            except FileNotFoundError:
                if stop():
                    return
                time.sleep(poll)
                continue
        chunk = f.read()
        if chunk:
            buf += chunk
            *lines, buf = buf.split("\n")
            for line in lines:
                if line.strip():
                    rec = json.loads(line)
                    yield rec
                    if rec.get("end"):
                        f.close()
                        return
        elif stop():
            f.close()
            return
        else:
            time.sleep(poll)


def appear(path: Path, run_file: Path, wait: float, poll: float = 0.2) -> str:
    """Wait up to ``wait`` s for a live file: "live" once it is there, "finished" when instead
    its run file is (a run without a live view: ``live = false``, or one from before it), "none"
    when neither came."""
    end = time.monotonic() + wait
    while True:
        if path.exists():
            return "live"
        if run_file.exists():
            return "finished"
        if time.monotonic() >= end:
            return "none"
        time.sleep(poll)


def idle_for(path: Path, seconds: float) -> Callable[[], bool]:
    """A ``stop`` for :func:`follow`: true once ``path`` has not grown for ``seconds`` (a run
    writes a record a second; one killed never writes its end marker)."""
    def stop() -> bool:
        try:
            return time.time() - path.stat().st_mtime > seconds
        except OSError:
            return True
    return stop


def has_records(path: Path) -> bool:
    """True when a live file holds at least one record besides its end marker."""
    try:
        with open(path) as f:
            return any(line.strip() and not json.loads(line).get("end") for line in f)
    except (OSError, ValueError):
        return False


def table(rec: dict[str, Any]) -> Any:
    """A rich Table of one record."""
    from rich.table import Table

    bn = rec.get("bottleneck")
    t = Table(title=f"streampipe live  t = {rec['t']:.0f} s  bottleneck: {bn or '-'}",
              header_style="bold")
    for h in ("stage", "items", "items/s", "busy", "starved", "blocked", "xfer", "io", "held"):
        t.add_column(h, justify="left" if h == "stage" else "right")
    for name, r in rec["stages"].items():
        t.add_row(name, str(r["items"]), f"{r['rate']:.1f}",
                  *(f"{100 * r[k]:.0f}%" for k in ("busy", "starved", "blocked", "transfer",
                                                    "io")),
                  str(r["held"]), style="bold yellow" if name == bn else None)
    return t


def line(rec: dict[str, Any]) -> str:
    """One record as one line of text (for a pipe or a log)."""
    parts = [f"{n} {r['rate']:.1f}/s busy {100 * r['busy']:.0f}%"
             for n, r in rec["stages"].items()]
    return f"t={rec['t']:.0f}s " + "; ".join(parts) + f"; bottleneck {rec.get('bottleneck')}"


def watch(path: Path, stop: Callable[[], bool] = lambda: False, console: Any = None) -> str:
    """Show a live file until the run ends: a rich table on a terminal, one line per second
    otherwise. Returns the run's status ("" if the file ended without one)."""
    status = ""
    if console is None and not sys.stdout.isatty():
        for rec in follow(path, stop):
            if rec.get("end"):
                status = rec.get("status", "")
            else:
                print(line(rec), flush=True)
        return status
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        for rec in follow(path, stop):
            if rec.get("end"):
                status = rec.get("status", "")
            else:
                live.update(table(rec))
    return status
