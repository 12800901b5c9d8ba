"""Stages for the reliability tests: a durable file sink, PID recorders, misbehaving stages."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import streampipe as sp


class DurableFile(sp.Sink):
    """Appends one line per item to ``params.path``; checkpoint() fsyncs and returns the offset.

    ``restore(offset)`` truncates the file to that offset, dropping lines written after the last
    checkpoint: those items lie at or above the high-water mark and will be sent again.
    """

    def setup(self, ctx):
        self.path = ctx.params["path"]
        self.f = open(self.path, "ab")
        self.n = 0

    def consume(self, item):
        self.f.write(f"{item}\n".encode())
        self.n += 1

    def checkpoint(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        return self.f.tell()

    def restore(self, state):
        self.f.close()
        with open(self.path, "r+b") as f:
            f.truncate(int(state))
        self.f = open(self.path, "ab")

    def result(self):
        self.f.flush()
        return self.n

    def close(self):
        if not self.f.closed:
            self.f.close()


class PidFile(sp.Stage):
    """Passes items on; writes ``<dir>/<stage>-<replica>.pid`` in setup (for external kills)."""

    def setup(self, ctx):
        d = Path(ctx.params["dir"])
        tmp = d / f".{ctx.stage}-{ctx.replica}.tmp"
        tmp.write_text(str(os.getpid()))
        tmp.rename(d / f"{ctx.stage}-{ctx.replica}.pid")  # readers never see a partial pid
        self.sleep = float(ctx.params.get("sleep", 0.0))

    def process(self, x):
        if self.sleep:
            time.sleep(self.sleep)
        return x


class PidSink(sp.Sink):
    """A Checksum-like sink that also records its PID (see PidFile)."""

    def setup(self, ctx):
        PidFile.setup(self, ctx)  # type: ignore[arg-type]
        self.n = 0

    def consume(self, item):
        self.n += 1

    def result(self):
        return self.n


class ReturnsLambda(sp.Stage):
    """Returns an unpicklable object (a lambda) for item ``params.at``."""

    def setup(self, ctx):
        self.at = int(ctx.params.get("at", 5))

    def process(self, x):
        return (lambda: x) if x == self.at else x


class ReturnsFile(sp.Stage):
    """Returns an open file object (unpicklable) for item ``params.at``."""

    def setup(self, ctx):
        self.at = int(ctx.params.get("at", 5))

    def process(self, x):
        return open(os.devnull) if x == self.at else x


class NotAStage:
    """A class that does not subclass streampipe.Stage."""

    def process(self, x):
        return x


class Misspelled(sp.Stage):
    """Defines ``proccess`` instead of ``process``."""

    def proccess(self, x):
        return x


def _rss_kib() -> int:
    """Resident set size now (KiB), from /proc/self/statm; ru_maxrss where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class RssPass(sp.Stage):
    """Passes items on and samples this rank's RSS every ``params.every`` items."""

    def setup(self, ctx):
        self.every = int(ctx.params.get("every", 10_000))
        self.samples: list[int] = []
        self.i = 0

    def process(self, x):
        self.i += 1
        if self.i % self.every == 0:
            self.samples.append(_rss_kib())
        return x

    def finish(self):
        # the samples travel to the sink after the stream (a finish() item)
        return [("rss", self.ctx.stage, self.ctx.replica, self.samples)]


class RssSink(sp.Sink):
    """Counts and sums items, samples its own RSS, collects the stages' RSS samples."""

    def setup(self, ctx):
        self.every = int(ctx.params.get("every", 10_000))
        self.n = 0
        self.total = 0
        self.samples: list[int] = []
        self.stages: dict[str, list[int]] = {}

    def consume(self, item):
        if isinstance(item, tuple):
            _, stage, replica, samples = item
            self.stages[f"{stage}/{replica}"] = samples
            return
        self.n += 1
        self.total += item
        if self.n % self.every == 0:
            self.samples.append(_rss_kib())

    def result(self):
        return {"n": self.n, "sum": self.total, "rss": {"sink/0": self.samples, **self.stages}}


class RssNumbers(sp.Source):
    """Yields 0..n-1 and samples this rank's RSS every ``params.every`` items."""

    def setup(self, ctx):
        self.n = int(ctx.params["n"])
        self.every = int(ctx.params.get("every", 10_000))
        self.samples: list[int] = []

    def generate(self):
        every, samples = self.every, self.samples
        for i in range(self.n):
            if i % every == 0:
                samples.append(_rss_kib())
            yield i

    def finish(self):
        return [("rss", self.ctx.stage, self.ctx.replica, self.samples)]
