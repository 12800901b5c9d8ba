"""Ordered merges without MPI: random key trees (fan-outs, drops, markers) split over random
replicas, arriving in random batches and interleavings, against the oracle "every record in
position order" (streampipe.records.position)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streampipe.merge import Fifo, HeadsMerger, Merger
from streampipe.records import END, FINAL, ITEM, TOMB, Batch, position


def level(records, replicas, rng, drop=0.2, fan=0.2):
    """One replicated stage: each record goes to a random replica, which keeps its order;
    an item is kept, dropped (TOMB) or fanned out (children, then END)."""
    streams = [[] for _ in range(replicas)]
    for kind, key, value in records:
        out = streams[rng.integers(replicas)]
        if kind != ITEM or key[0] == FINAL:
            out.append((kind, key, value))
            continue
        u = rng.random()
        if u < drop:
            out.append((TOMB, key, None))
        elif u < drop + fan:
            k = int(rng.integers(0, 3))
            out += [(ITEM, key + (i,), value) for i in range(k)]
            out.append((END, key, k))
        else:
            out.append((ITEM, key, value))
    return streams


def source(n, start=0):
    return [(ITEM, (s,), s) for s in range(start, n)] + [(END, (), n)]


def merged(streams):
    return sorted((r for s in streams for r in s), key=lambda r: position(*r))


def feed(merge, streams, rng, max_batch=6):
    """Arrive in random batches and interleavings, take with random limits; all delivered."""
    pending = []
    for src, recs in enumerate(streams):
        i = 0
        chunks = []
        while i < len(recs):
            k = int(rng.integers(1, max_batch + 1))
            chunks.append(recs[i:i + k])
            i += k
        pending.append((src, chunks))
    got = []

    def take():
        for _src, b, lo, hi, _t in merge.take(int(rng.integers(1, 10))):
            got.extend(b.record(i) for i in range(lo, hi))

    while any(c for _, c in pending):
        src, chunks = pending[int(rng.choice([j for j, (_, c) in enumerate(pending) if c]))]
        recs = chunks.pop(0)
        kinds = [r[0] for r in recs]
        merge.add(src, Batch([r[1] for r in recs], [r[2] for r in recs],
                             None if all(k == ITEM for k in kinds) else kinds), 0.0)
        if rng.random() < 0.5:
            take()
    for _ in range(10 * sum(len(s) for s in streams) + 10):
        before = len(got)
        take()
        if len(got) == before:
            break
    return [tuple(r) for r in got]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40), st.integers(1, 4), st.integers(1, 2))
def test_cursor_merge_delivers_position_order(seed, n, replicas, depth):
    rng = np.random.default_rng(seed)
    records = source(n)
    for _ in range(depth):  # a fan-out after a fan-out: END markers of both levels
        streams = level(records, replicas, rng)
        records = merged(streams)
    for r, s in enumerate(streams):
        s += [(ITEM, (FINAL, 2, r, i), f"fin{r}.{i}") for i in range(int(rng.integers(0, 3)))]
    got = feed(Merger(tuple(range(replicas))), streams, rng)
    want = merged(streams)
    regular = [r for r in want if r[1][:1] != (FINAL,)]
    assert got[:len(regular)] == regular
    assert sorted(map(repr, got[len(regular):])) == sorted(map(repr, want[len(regular):]))


def test_cursor_merge_starts_at_the_resume_point():
    rng = np.random.default_rng(3)
    streams = level(source(30, start=12), 3, rng)
    m = Merger((0, 1, 2), start_seq=12)
    assert feed(m, streams, rng) == merged(streams)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40), st.integers(1, 4))
def test_heads_merge_of_partial_streams_is_sorted_and_complete(seed, n, replicas):
    # a replica after a replicated stage sees a part of each upstream stream: merged by heads
    rng = np.random.default_rng(seed)
    streams = level(source(n), replicas, rng)
    parts = [[r for r in s if rng.random() < 0.6] for s in streams]
    eos: set[int] = set()
    m = HeadsMerger(tuple(range(replicas)), eos)
    got = feed(m, parts, rng)
    want = merged(parts)
    assert got == want[:len(got)]  # nothing out of order so far
    eos.update(range(replicas))  # every upstream has ended: the rest may go
    for _, b, lo, hi, _t in m.take(10**6):
        got.extend(tuple(b.record(i)) for i in range(lo, hi))
    assert got == want


def test_heads_merge_waits_for_an_upstream_without_a_head():
    eos: set[int] = set()
    m = HeadsMerger((0, 1), eos)
    m.add(0, Batch([(5,)], [5]), 0.0)
    assert m.take(10) == []  # upstream 1 may still send (3,)
    eos.add(1)
    assert [(s, lo, hi) for s, _, lo, hi, _ in m.take(10)] == [(0, 0, 1)]


def test_merges_take_runs_not_records():
    # two upstreams with 64 consecutive keys per batch: one run per batch, not one per record
    m = Merger((0, 1))
    for b in range(8):
        src = b % 2
        keys = [(s,) for s in range(64 * b, 64 * b + 64)]
        m.add(src, Batch(keys, [k[0] for k in keys]), 0.0)
    m.add(0, Batch([()], [512], [END]), 0.0)
    runs = m.take(10**6)
    assert [hi - lo for _, _, lo, hi, _ in runs] == [64] * 8 + [1]
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


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(2, 4))
def test_heads_merge_with_progress_marks_never_goes_out_of_order(seed, n, replicas):
    # each upstream sends this replica a part of its sorted stream and, for a record it sends
    # elsewhere, may tell this replica how far it got: the merge may then pass it by
    rng = np.random.default_rng(seed)
    streams = level(source(n), replicas, rng)
    eos: set[int] = set()
    m = HeadsMerger(tuple(range(replicas)), eos)
    events = []  # (upstream, record or None, mark)
    for u, s in enumerate(streams):
        for rec in s:
            if rng.random() < 0.5:
                events.append((u, rec, None))
            elif rng.random() < 0.5:
                events.append((u, None, position(*rec)))
    order = rng.permutation(len(events))
    # keep each upstream's own events in order: stable sort by (upstream position in order)
    per_up = {u: [e for e in events if e[0] == u] for u in range(replicas)}
    got, fed = [], []
    for k in order:
        u = events[k][0]
        if not per_up[u]:
            continue
        _, rec, mark = per_up[u].pop(0)
        if rec is not None:
            fed.append(rec)
            m.add(u, Batch([rec[1]], [rec[2]], None if rec[0] == ITEM else [rec[0]]), 0.0)
        else:
            m.progress(u, mark)
        for _, b, lo, hi, _t in m.take(int(rng.integers(1, 5))):
            got.extend(tuple(b.record(i)) for i in range(lo, hi))
    want = merged([fed])
    assert got == want[:len(got)]
    eos.update(range(replicas))
    for _, b, lo, hi, _t in m.take(10**6):
        got.extend(tuple(b.record(i)) for i in range(lo, hi))
    assert got == want


def test_a_progress_mark_lets_the_smaller_head_go():
    m = HeadsMerger((0, 1), set())
    m.add(0, Batch([(5,), (9,)], [5, 9]), 0.0)
    assert m.take(10) == []
    m.progress(1, (7,))  # upstream 1 will send nothing at or before (7,)
    assert [(s, lo, hi) for s, _, lo, hi, _ in m.take(10)] == [(0, 0, 1)]  # 5, not 9
