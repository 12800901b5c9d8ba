"""Engine decisions without MPI: routing, the flush policy, the credit rule, event recording."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streampipe import metrics as M
from streampipe.channel import may_carry_buffers
from streampipe.flush import FlushPolicy, Pace
from streampipe.routing import choose, fits

# ----------------------------------------------------------------------------- routing


def test_a_starving_receiver_gets_the_next_record():
    # receiver 2 has every credit back and nothing open: it waits for us
    assert choose([3, 8, 8], [0, -1, -1], 8, current=0, maybe=False, rr=0) == 1
    assert choose([3, 5, 8], [0, -1, -1], 8, current=0, maybe=False, rr=0) == 2
    # starving receivers take turns (else one idle replica would get every item)
    picks = {choose([8, 8, 8], [-1, -1, -1], 8, current=0, maybe=False, rr=r) for r in range(3)}
    assert picks == {0, 1, 2}


def test_the_open_batch_keeps_its_receiver_while_it_fits():
    # consecutive keys stay together (long runs for an ordered merge downstream)
    assert choose([2, 7, 7], [0, -1, -1], 8, current=0, maybe=False, rr=1) == 0
    assert choose([2, 7, 7], [2, -1, -1], 8, current=0, maybe=True, rr=1) == 1  # no room


def test_otherwise_the_receiver_with_most_credit_left_rotating_among_equals():
    assert choose([0, 4, 6], [-1, -1, -1], 8, current=0, maybe=False, rr=0) == 2
    picks = {choose([5, 5, 5], [-1, -1, -1], 8, current=-1, maybe=False, rr=r) for r in range(3)}
    assert picks == {0, 1, 2}


def test_no_receiver_without_credit():
    assert choose([0, 0], [-1, -1], 8, current=0, maybe=False, rr=0) is None
    # a batch of 3 array records holds 3 credits: a 4th needs a 4th credit
    assert choose([3], [3], 8, current=0, maybe=True, rr=0) is None
    assert choose([3], [3], 8, current=0, maybe=False, rr=0) == 0  # small records ride along


@given(st.integers(0, 10), st.integers(-1, 10), st.booleans())
def test_fits_is_the_credit_rule(credit, open_maybe, maybe):
    # a batch costs one credit, or one per record that may carry buffers
    cost = max(1, max(open_maybe, 0) + maybe)
    assert fits(credit, open_maybe, maybe) == (cost <= credit)


def test_what_may_carry_buffers():
    assert not any(map(may_carry_buffers, [1, 2.5, True, None, 1j, "short", b"short"]))
    assert may_carry_buffers(np.zeros(3)) and may_carry_buffers((1, 2))
    assert may_carry_buffers("x" * 10000) and may_carry_buffers({"a": 1})


# ----------------------------------------------------------------------------- flush policy


def test_send_when_full_idle_or_late():
    p = FlushPolicy(batch=64, max_delay=1e-3)
    assert p.send(64, 0.0, 0.0, idle=False)  # full
    assert p.send(1, 0.0, 0.0, idle=True)  # the receiver has nothing: send at once
    assert p.send(3, 0.8e-3, 0.3e-3, idle=False)  # one more item would make it late
    assert not p.send(3, 0.1e-3, 0.1e-3, idle=False)  # busy receiver: coalesce


def test_a_slow_stage_hands_over_item_by_item():
    p = FlushPolicy(batch=64, max_delay=1e-3)
    assert p.handover(0.0, pace=5e-3, starving=False)  # an item takes longer than the cap
    assert not p.handover(0.0, pace=1e-6, starving=False)  # fast items batch up
    assert p.handover(0.0, pace=1e-6, starving=True)


def test_pace_follows_the_item_time():
    pace = Pace()
    for _ in range(50):
        pace.update(64 * 2e-6, 64)
    assert pace.value == pytest.approx(2e-6, rel=1e-3)
    pace.update(1.0, 0)  # nothing measured: unchanged
    assert pace.value == pytest.approx(2e-6, rel=1e-3)


# ----------------------------------------------------------------------------- recording


def test_level_batch_updates_match_single_ones():
    rng = np.random.default_rng(2)
    t_in, t_out = np.sort(rng.uniform(0, 5, 100)), None
    t_out = t_in + rng.uniform(0, 1, 100)
    a, b = M.Level(0.0), M.Level(0.0)
    for x, y in zip(t_in, t_out, strict=True):
        a.add(1, x)
        a.add(-1, y)
    for k in range(0, 100, 10):
        b.add_many(10, float(t_in[k:k + 10].sum()))
        b.add_many(-10, float(t_out[k:k + 10].sum()))
    a.close(9.0)
    b.close(9.0)
    assert b.area == pytest.approx(a.area) == pytest.approx(float(np.sum(t_out - t_in)))


def recorded(rec, seqs, t_recv, starts, ends, sent, per=7):
    """Feed a recorder batch by batch; ``sent`` per item (the message carrying it left)."""
    for lo in range(0, len(seqs), per):
        hi = min(len(seqs), lo + per)
        rec.arrived(hi - lo, t_recv[lo])
        rows = rec.items(seqs[lo:hi], starts[lo:hi], ends[lo:hi], [(hi - lo, t_recv[lo])])
        for r, t in zip(rows, sent[lo:hi], strict=True):
            rec.sent([range(r, r + 1)], t)
        rec.settle()
    return rec.dump()


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.integers(0, 400), st.integers(1, 20))
def test_recorded_events_and_integrals_are_exact(n, limit, per):
    rng = np.random.default_rng(n)
    rec = M.Recorder(event_limit=limit)
    t0 = rec.t0
    t_recv = t0 + np.repeat(np.sort(rng.uniform(0, 1, (n + per - 1) // per)), per)[:n]
    starts = t_recv + rng.uniform(0, 0.1, n)
    ends = starts + rng.uniform(0, 0.1, n)
    sent = ends + rng.uniform(0, 0.1, n)
    d = recorded(rec, list(range(n)), t_recv, list(starts), list(ends), list(sent), per)
    # totals stay exact whatever the event limit: L = sum of (t_sent - t_recv)
    assert d["held_area"] == pytest.approx(float(np.sum(sent - t_recv)), rel=1e-9)
    assert d["queued_area"] == pytest.approx(float(np.sum(starts - t_recv)), rel=1e-9)
    kept = min(n, limit)
    assert len(d["events"]) == kept and d["events_dropped"] == n - kept
    ev = d["events"]
    want = np.c_[np.arange(n), t_recv, starts, ends, sent][:kept]
    want[:, 1:] -= t0
    assert np.allclose(ev, want, rtol=0, atol=1e-9)
    assert list(M.EVENT_FIELDS) == ["seq", "t_recv", "t_start", "t_end", "t_sent"]


def test_held_peak_counts_items_until_their_message_leaves():
    rec = M.Recorder()
    t = rec.t0
    rec.arrived(5, t + 1)
    rows = rec.items([0, 1, 2], [t + 1] * 3, [t + 2] * 3, [(3, t + 1)])
    rec.settle(rows.start)  # their outputs are still in an open batch
    rec.arrived(2, t + 3)
    assert rec.held.value == 7 and rec.held.peak == 7
    rec.sent([rows], t + 4)
    rec.settle()
    assert rec.held.value == 4


# ----------------------------------------------------------------------------- the pace limit
class _Wire:
    """What an OutPort needs from a transport, keeping the messages it sends (the port's
    decisions are pure logic; the frames themselves are tested under MPI)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []  # (receiver, records)

    def register(self, edge, handler) -> None:
        self.handler = handler

    def send_data(self, dest, edge, credits, blob, bufs, t0=None) -> None:
        import pickle

        self.sent.append((dest, len(pickle.loads(blob, buffers=bufs)[0])))


def _port(receivers: int, capacity: int = 4, batch: int = 64):
    from streampipe.channel import OutPort

    w = _Wire()
    port = OutPort(w, 0, tuple(range(1, receivers + 1)), capacity, batch, M.Level(0.0),
                   max_delay=1e-3)
    return port, w


def _credit(port, src: int, pace: float, credits: int = 0) -> None:
    port._on_credit(src, 1, (credits, 0, False, pace))


def test_batches_hold_at_most_max_delay_of_the_receivers_work():
    port, w = _port(2)
    keys = [(i,) for i in range(200)]
    # before a receiver has said its pace: one record per message, so credits bound records
    assert port.put_batch(keys, list(range(200))) == 8
    assert sorted(w.sent) == [(1, 1)] * 4 + [(2, 1)] * 4
    _credit(port, 1, pace=1e-5, credits=4)  # 10 us an item: 100 would fit, the batch caps at 64
    _credit(port, 2, pace=4e-4, credits=4)  # 0.4 ms an item: 2 records (0.8 ms of work)
    assert port.limit == [64, 2]
    w.sent.clear()
    # 4 credits each: receiver 1 could take 4 x 64 records, receiver 2 only 4 x 2
    assert port.put_batch(keys[8:], list(range(8, 200))) == 192
    port.flush()
    assert sum(n for _, n in w.sent) == 192
    assert all(n <= (64 if d == 1 else 2) for d, n in w.sent)
    assert sum(n for d, n in w.sent if d == 2) <= 8


def test_a_pace_that_arrives_after_a_batch_opened_sends_that_batch():
    port, w = _port(1)
    _credit(port, 1, pace=1e-6)
    port.put_batch([(i,) for i in range(40)], list(range(40)))  # open: 40 records, not sent
    assert w.sent == []
    _credit(port, 1, pace=5e-3)  # the receiver turns out slow: 1 record per message
    assert port.put_batch([(40,), (41,)], [40, 41]) == 2
    assert w.sent[0] == (1, 40) and all(n == 1 for _, n in w.sent[1:])
