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
    """Keeps every item; sleeps params.ms milliseconds per item (default 0)."""

    def setup(self, ctx):
        self.items = []
        self.dt = float(ctx.params.get("ms", 0.0)) / 1e3

    def consume(self, item):
        if self.dt:
            time.sleep(self.dt)
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


class Arrays(sp.Source):
    """Yields params.n arrays of params.mb MiB each: float64 C-order, int16 Fortran-order,
    non-contiguous views and arrays inside dicts, all derived from the seq."""

    def setup(self, ctx):
        self.n = int(ctx.params.get("n", 6))
        self.mb = float(ctx.params.get("mb", 8))

    def generate(self):
        rows = int(self.mb * 2**20 / 8 / 128)
        for i in range(self.n):
            base = np.arange(rows * 128, dtype=np.float64).reshape(rows, 128) * (i + 1)
            kind = i % 4
            if kind == 0:
                yield base
            elif kind == 1:
                yield np.asfortranarray(base.astype(np.int16))
            elif kind == 2:
                yield base[::2, ::3]  # non-contiguous view
            else:
                yield {"i": i, "a": base[:, :64].copy(), "b": np.float32(i)}


class Blocks(sp.Source):
    """Yields params.n contiguous float64 arrays of params.kb KiB, array i filled with i."""

    def setup(self, ctx):
        self.n = int(ctx.params.get("n", 10))
        self.size = int(ctx.params.get("kb", 64)) * 1024 // 8

    def generate(self):
        for i in range(self.n):
            yield np.full(self.size, float(i))


class ArrayDigest(sp.Sink):
    """Keeps (dtype, shape, flags, sha256) of every array so a test can compare bit for bit."""

    def setup(self, ctx):
        self.out = []

    def consume(self, item):
        import hashlib

        def dig(a):
            # memory order is kept for Fortran arrays; a strided view arrives as a C copy
            order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
            return [str(a.dtype), list(a.shape), order,
                    hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()]

        if isinstance(item, dict):
            self.out.append({"i": item["i"], "a": dig(item["a"]), "b": float(item["b"])})
        else:
            self.out.append(dig(item))

    def result(self):
        return self.out


class PrefixFeedback(sp.Stage):
    """Item x -> (x, prefix) where prefix is the running total fed back from a later stage:
    item seq s waits for the feedback of item s-1 (a chain dependency through the feedback edge)."""

    def setup(self, ctx):
        self.ctx = ctx
        self.lag = int(ctx.params.get("lag", 1))

    def process(self, x):
        s = self.ctx.seq
        prev = self.ctx.feedback(s - self.lag) if s >= self.lag else 0
        if s >= self.lag + 1:
            self.ctx.release_feedback(s - self.lag - 1)
        return (x, prev)


class AddFeedback(sp.Stage):
    """(x, prev) -> prev + x, fed back to the stage named in the job's feedback_to."""

    def setup(self, ctx):
        self.ctx = ctx

    def process(self, item):
        x, prev = item
        total = prev + x
        self.ctx.send_feedback(total)
        return total


class GroupSum(sp.Stage):
    """A group stage: the root scatters x to the group, every rank adds its rank, allreduce."""

    def setup(self, ctx):
        self.ctx = ctx

    def process(self, x):
        comm = self.ctx.comm
        x = comm.bcast(x, root=0)
        total = comm.allreduce(x + comm.Get_rank())
        return total if self.ctx.group_rank == 0 else None


@sp.stage
def Identity(x):
    return x


class Branch(sp.Stage):
    """Deterministic fan-out/drop for any item: h = crc32(repr(item)); dropped when h % drop == 0,
    else h % k copies (item, i) — zero copies is an empty fan-out."""

    def setup(self, ctx):
        self.k = int(ctx.params.get("k", 3))
        self.drop = int(ctx.params.get("drop", 5))

    def process(self, item):
        import zlib

        h = zlib.crc32(repr(item).encode())
        if self.drop and h % self.drop == 0:
            return None
        return ((item, i) for i in range(h % self.k))


class DropAt(sp.Stage):
    """Drops the item whose payload equals params.at (the item is a (x, prev) pair or x)."""

    def setup(self, ctx):
        self.at = int(ctx.params.get("at", 5))

    def process(self, item):
        x = item[0] if isinstance(item, tuple) else item
        return None if x == self.at else item


class FailSetup(sp.Stage):
    def setup(self, ctx):
        raise ValueError(f"bad setup on replica {ctx.replica}")

    def process(self, x):
        return x


class AsArray(sp.Stage):
    """x -> a float64 array [x] (an item a GPU stage moves to the device)."""

    def process(self, x):
        return np.array([float(x)])


class DevicePrefix(sp.Stage):
    """A GPU stage reading feedback: its data values and its feedback values must both arrive as
    device arrays (ctx.xp.ndarray). Item x -> (x, running total up to the previous item)."""

    def setup(self, ctx):
        self.ctx = ctx

    def process(self, x):
        xp, s = self.ctx.xp, self.ctx.seq
        prev = self.ctx.feedback(s - 1) if s >= 1 else xp.zeros(1)
        for what, v in (("data", x), ("feedback", prev)):
            if not isinstance(v, xp.ndarray):
                raise TypeError(f"{what} value is {type(v).__module__}.{type(v).__name__}, "
                                f"not a {xp.__name__} array")
        if s >= 2:
            self.ctx.release_feedback(s - 2)
        return (x, prev)


class BatchBranch(Branch):
    """Branch with a vectorised process_batch (same outputs); logs each call's size to
    params.log (one line per call) so a test can see the batches it got."""

    def setup(self, ctx):
        super().setup(ctx)
        self.log = ctx.params.get("log")

    def process_batch(self, items):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{len(items)}\n")
        return [self.process(x) for x in items]


def parity(item):
    """A routing key (route = "key"): items with the same parity meet on one replica."""
    return int(item) % 2


class TagInput(sp.Stage):
    """x -> (the name of the input it came from, x), for joins (ctx.input)."""

    def setup(self, ctx):
        self.ctx = ctx

    def process(self, x):
        return (self.ctx.input, x)


def leftmost(item):
    """The leftmost int inside nested tuples (the source number an item descends from)."""
    while isinstance(item, tuple):
        item = item[0]
    return int(item)


def key_mod5(item):
    """A routing key (route = "key"): five keys, whatever the branch an item went through."""
    return leftmost(item) % 5


class Tag(sp.Stage):
    """x -> (x, params.t): tells branches apart in a join's output."""

    def setup(self, ctx):
        self.t = ctx.params.get("t", "")

    def process(self, x):
        return (x, self.t)


class KeyCount(sp.Stage):
    """State per key (route = "key"): x -> (x, how many items of x's key this replica has seen,
    counting x). Only right if one replica sees every item of a key, in order. With
    params.log, appends "key\\n" per item to <log>.<replica> (the per-replica record)."""

    def setup(self, ctx):
        self.ctx = ctx
        self.counts = {}
        log = ctx.params.get("log")
        self.log = open(f"{log}.{ctx.replica}", "a") if log else None  # noqa: SIM115

    def process(self, x):
        k = key_mod5(x)
        self.counts[k] = self.counts.get(k, 0) + 1
        if self.log is not None:
            self.log.write(f"{k}\n")
        return (x, self.counts[k])

    def finish(self):
        if self.log is not None:
            self.log.close()


def skewed(item):
    """A routing key (route = "key") with a hot key: 7 items in 10 have key 0, each of the
    others its own number."""
    x = leftmost(item)
    return 0 if x % 10 < 7 else x
