"""Small stages shared by the runtime tests (importable as tests.stages when run from the repo)."""

from __future__ import annotations

import time

import numpy as np

import streampipe as sp


class Numbers(sp.Source):
    def setup(self, ctx):
        self.ctx = ctx
        self.n = int(ctx.params.get("n", 100))
        self.sleep = float(ctx.params.get("sleep", 0.0))

    start = 0

    def generate(self):
        for i in range(self.start, self.n):
            if self.sleep:
                time.sleep(self.sleep)
            yield i

    def seek(self, seq):
        self.start = seq


class Square(sp.Stage):
    def setup(self, ctx):
        self.sleep = float(ctx.params.get("sleep", 0.0))

    def process(self, x):
        if self.sleep:
            time.sleep(self.sleep)
        return x * x


class Sleep(sp.Stage):
    """Sleeps ``ms`` milliseconds per item, passes it on."""

    def setup(self, ctx):
        self.dt = float(ctx.params.get("ms", 1.0)) / 1e3

    def process(self, x):
        time.sleep(self.dt)
        return x


class FanDrop(sp.Stage):
    """x -> x % k copies of (x, i); k = params.k (0 copies is a drop via an empty generator),
    and items divisible by params.drop are dropped by returning None."""

    def setup(self, ctx):
        self.k = int(ctx.params.get("k", 3))
        self.drop = int(ctx.params.get("drop", 0))

    def process(self, x):
        if self.drop and x % self.drop == 0:
            return None
        return self._fan(x)

    def _fan(self, x):
        for i in range(x % self.k):
            yield (x, i)


class Collect(sp.Sink):
    def setup(self, ctx):
        self.items = []

    def consume(self, item):
        self.items.append(item)

    def result(self):
        return self.items


class Checksum(sp.Sink):
    """Keeps a count and a sum so huge runs stay O(1) in memory."""

    def setup(self, ctx):
        self.n = 0
        self.total = 0

    def consume(self, item):
        self.n += 1
        self.total += int(np.sum(item)) if isinstance(item, np.ndarray) else int(item)

    def result(self):
        return {"n": self.n, "sum": self.total}


class Fail(sp.Stage):
    def setup(self, ctx):
        self.at = int(ctx.params.get("at", 137))

    def process(self, x):
        if x == self.at:
            raise ZeroDivisionError(f"boom at {x}")
        return x
