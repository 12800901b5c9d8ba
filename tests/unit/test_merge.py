"""Ordered merges without MPI: random key trees (fan-outs, drops) split over random replicas,
arriving in random batches and interleavings, with and without progress marks, against the
oracle "every record in key order"."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streampipe.merge import DONE_MARK, Fifo, HeadsMerger
from streampipe.records import FINAL, Batch


def level(keys, replicas, rng, drop=0.2, fan=0.2):
    """One replicated stage: each key goes to a random replica, which keeps its order; an item
    is kept, dropped or fanned out into children."""
    streams = [[] for _ in range(replicas)]
    for key in keys:
        out = streams[rng.integers(replicas)]
        u = rng.random()
        if u < drop and key[0] != FINAL:
            continue
        if u < drop + fan and key[0] != FINAL:
            out += [key + (i,) for i in range(int(rng.integers(0, 3)))]
        else:
            out.append(key)
    return streams


def feed(merge, streams, rng, marks=False, max_batch=6):
    """Arrive in random batches and interleavings (each upstream in its own order), take with
    random limits; with ``marks``, an upstream sometimes says how far it has got (the first key
    it has not sent yet). Returns what came out while streams were still arriving."""
    pending = []
    for src, keys in enumerate(streams):
        chunks, i = [], 0
        while i < len(keys):
            k = int(rng.integers(1, max_batch + 1))
            chunks.append(keys[i:i + k])
            i += k
        pending.append((src, chunks))
    got = []

    def take():
        for _src, b, lo, hi, _t in merge.take(int(rng.integers(1, 10))):
            got.extend(b.keys[lo:hi])

    while any(c for _, c in pending):
        src, chunks = pending[int(rng.choice([j for j, (_, c) in enumerate(pending) if c]))]
        keys = chunks.pop(0)
        merge.add(src, Batch(keys, list(range(len(keys)))), 0.0)
        if marks and rng.random() < 0.5:
            nxt = chunks[0][0] if chunks else DONE_MARK
            merge.progress(src, nxt)
        if rng.random() < 0.5:
            take()
    return got


def drain(merge, eos, replicas):
    eos.update(range(replicas))
    return [k for _, b, lo, hi, _ in merge.take(10**6) for k in b.keys[lo:hi]]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40), st.integers(1, 4), st.integers(1, 2),
       st.booleans())
def test_heads_merge_delivers_key_order(seed, n, replicas, depth, marks):
    rng = np.random.default_rng(seed)
    keys = [(s,) for s in range(n)]
    for _ in range(depth):  # a fan-out after a fan-out
        streams = level(keys, replicas, rng)
        keys = sorted(k for s in streams for k in s)
    for r, s in enumerate(streams):  # finish() outputs after the stream
        s += [(FINAL, 2, r, i) for i in range(int(rng.integers(0, 3)))]
    eos: set[int] = set()
    m = HeadsMerger(tuple(range(replicas)), eos)
    got = feed(m, streams, rng, marks)
    want = sorted(k for s in streams for k in s)
    assert got == want[:len(got)]  # nothing out of order, nothing twice
    got += drain(m, eos, replicas)
    assert got == want
    assert m.low() == DONE_MARK


def test_an_upstream_without_head_or_mark_holds_the_merge_back():
    eos: set[int] = set()
    m = HeadsMerger((0, 1), eos)
    m.add(0, Batch([(5,), (9,)], [5, 9]), 0.0)
    assert m.take(10) == [] and m.low() is None  # upstream 1 may still send (3,)
    m.progress(1, (7,))  # upstream 1 sends nothing before (7,) from now on
    assert [(s, lo, hi) for s, _, lo, hi, _ in m.take(10)] == [(0, 0, 1)]  # 5, not 9
    assert m.low() == (7,)
    eos.add(1)
    assert [(s, lo, hi) for s, _, lo, hi, _ in m.take(10)] == [(0, 1, 2)]


def test_marks_only_move_forward():
    m = HeadsMerger((0,), set())
    m.progress(0, (10,))
    m.progress(0, (4,))  # a stale mark (reordered frames) must not move the bound back
    assert m.low() == (10,)


def test_merges_take_runs_not_records():
    # two upstreams with 64 consecutive keys per batch: one run per batch, not one per record
    h = HeadsMerger((0, 1), {0, 1})
    for b in range(8):
        keys = [(s,) for s in range(64 * b, 64 * b + 64)]
        h.add(b % 2, Batch(keys, keys), 0.0)
    assert [hi - lo for _, _, lo, hi, _ in h.take(10**6)] == [64] * 8


def test_fifo_takes_whole_batches_in_arrival_order_up_to_the_limit():
    f = Fifo()
    f.add(1, Batch([(0,), (1,), (2,)], [0, 1, 2]), 1.0)
    f.add(0, Batch([(9,)], [9]), 2.0)
    assert [(s, lo, hi, t) for s, _, lo, hi, t in f.take(2)] == [(1, 0, 2, 1.0)]
    assert [(s, lo, hi, t) for s, _, lo, hi, t in f.take(5)] == [(1, 2, 3, 1.0), (0, 0, 1, 2.0)]
    assert f.take(5) == []
