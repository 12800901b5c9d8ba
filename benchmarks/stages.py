"""Stages with known costs for the benchmarks (``uses = "benchmarks.stages:Work"``).

Every stage takes its per-item time from its params in one of three ways (see :func:`cost`):
``times = [...]`` (seconds per source seq, pre-generated so that two runners see the same
random times), or ``ms`` with an optional ``jitter`` ("exp" or a relative uniform width) and a
``seed``. ``mode = "spin"`` burns CPU until the deadline (real compute), ``"sleep"`` sleeps.
Every stage writes its CPU time to ``cpu_dir`` (when given) at close, so a benchmark can
measure what each rank cost without asking the runtime.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import streampipe as sp


def make_payload(kind: str, nbytes: int = 8) -> Any:
    """One item of the named kind: "int" (8 B), "bytes" (``nbytes``), "dict", "array"."""
    if kind == "int":
        return 12345
    if kind == "bytes":
        return b"x" * nbytes
    if kind == "dict":
        return {"id": 7, "name": "item", "values": [1.0, 2.0, 3.0], "ok": True}
    if kind == "array":
        return np.ones(max(1, nbytes // 8), dtype=np.float64)
    raise ValueError(f"payload: unknown kind {kind!r} (int, bytes, dict, array)")


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def spin(seconds: float) -> None:
    """Busy-loop (real CPU work) for ``seconds``."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def cost(params: dict[str, Any], replica: int = 0) -> Callable[[int], float]:
    """seq -> seconds this stage spends on item ``seq`` (0 when the params give no time)."""
    if "times" in params:
        times = np.asarray(params["times"], dtype=float)
        return lambda seq: float(times[seq % len(times)])
    base = float(params.get("ms", 0.0)) / 1e3
    jitter = params.get("jitter", 0)
    if not base:
        return lambda seq: 0.0
    if not jitter:
        return lambda seq: base
    rng = np.random.default_rng([int(params.get("seed", 0)), replica])
    if jitter == "exp":
        return lambda seq: float(rng.exponential(base))
    width = float(jitter)
    return lambda seq: base * float(rng.uniform(1 - width, 1 + width))


class _Timed:
    """Shared part: per-item cost, sleep or spin, CPU time report at close."""

    def _init(self, ctx: sp.Context) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu()  # imports and start-up are not the run's cost
        self.ctx = ctx
        self.cost = cost(ctx.params, ctx.replica)
        self.burn = spin if ctx.params.get("mode", "sleep") == "spin" else time.sleep

    def _spend(self, seq: int) -> None:
        dt = self.cost(seq)
        if dt > 0:
            self.burn(dt)

    def close(self) -> None:
        d = self.ctx.params.get("cpu_dir")
        if d:
            rec = {"stage": self.ctx.stage, "replica": self.ctx.replica,
                   "cpu": _cpu() - self._cpu0, "wall": time.perf_counter() - self._t0}
            Path(d, f"{self.ctx.stage}-{self.ctx.replica}.json").write_text(json.dumps(rec))


class Gen(_Timed, sp.Source):
    """``n`` items of ``payload`` kind (one shared object: the source costs only its time)."""

    def setup(self, ctx: sp.Context) -> None:
        self._init(ctx)
        self.n = int(ctx.params.get("n", 1000))
        self.item = make_payload(ctx.params.get("payload", "int"), int(ctx.params.get("bytes", 8)))

    def generate(self):
        item = self.item
        for seq in range(self.n):
            self._spend(seq)
            yield item


class Work(_Timed, sp.Stage):
    """Spends its time on each item; passes it on unchanged, or ``item + 1`` with ``op = "add"``."""

    def setup(self, ctx: sp.Context) -> None:
        self._init(ctx)
        self.add = ctx.params.get("op", "pass") == "add"

    def process(self, item: Any) -> Any:
        self._spend(self.ctx.seq)
        return item + 1 if self.add else item


class Tally(_Timed, sp.Sink):
    """Spends its time, counts items and bytes; the result is checked by the benchmarks."""

    def setup(self, ctx: sp.Context) -> None:
        self._init(ctx)
        self.n = 0
        self.nbytes = 0

    def consume(self, item: Any) -> None:
        self._spend(self.ctx.seq)
        self.n += 1
        if isinstance(item, np.ndarray):
            self.nbytes += item.nbytes

    def result(self) -> dict[str, int]:
        return {"n": self.n, "bytes": self.nbytes, "pid": os.getpid()}
