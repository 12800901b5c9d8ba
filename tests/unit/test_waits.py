"""How a wait paces itself (``streampipe.transport``), without MPI: the back-off's phases and
the history that lets a recurring long wait sleep through most of its expected length at once."""

from __future__ import annotations

import time

import pytest

from streampipe.transport import Backoff, HostWaits, WaitHistory


def test_a_wait_sleeps_first_only_after_a_run_of_long_waits():
    h = WaitHistory()
    assert h.first_sleep() == 0.0  # nothing known yet
    for _ in range(WaitHistory.K - 1):
        h.add(2e-3)
    assert h.first_sleep() == 0.0  # one slot still says "short"
    h.add(2e-3)
    assert h.first_sleep() == pytest.approx(WaitHistory.FRAC * 2e-3)
    h.add(3e-3)  # the shortest of the last four sets it
    assert h.first_sleep() == pytest.approx(WaitHistory.FRAC * 2e-3)
    h.add(0.2e-3)  # one short wait (a lock-step schedule's) and no early sleep for K waits
    for _ in range(WaitHistory.K - 1):
        assert h.first_sleep() == 0.0
        h.add(5e-3)
    assert h.first_sleep() == 0.0
    h.add(5e-3)
    assert h.first_sleep() == pytest.approx(WaitHistory.FRAC * 5e-3)


def test_the_early_sleep_is_capped_where_an_idle_wait_takes_over():
    h = WaitHistory()
    for _ in range(WaitHistory.K):
        h.add(2.0)  # waits of seconds (a slow upstream)
    assert h.first_sleep() == WaitHistory.MAX == HostWaits.IDLE_AFTER
    h2 = WaitHistory()
    for _ in range(WaitHistory.K):
        h2.add(WaitHistory.LONG * 0.99)
    assert h2.first_sleep() == 0.0  # below LONG the back-off's polls are cheaper


def test_a_fresh_wait_polls_first_and_one_after_an_early_sleep_goes_on_sleeping():
    bo = Backoff(yields=16)
    # the first POLLS calls only poll (no yield, no sleep)
    assert [bo.pause() for _ in range(Backoff.POLLS)] == [False] * Backoff.POLLS
    # then it yields (False: no time to look at) before its first sleep
    assert bo.pause() is False
    late = Backoff(yields=16)
    late.pause()  # the wait's first call starts its clock
    late.sleeping(1e-3)
    assert late.pause() is True  # straight to the short sleeps: no burst of polls and yields
    assert late.k == late.yields + 1


def test_an_early_sleep_counts_toward_the_idle_cap():
    bo = Backoff(yields=0, cap=200e-6, cap_idle=2e-3, idle_after=20e-3)
    bo.sleeping(25e-3)  # the wait has lasted 25 ms already: past idle_after
    t = time.perf_counter()
    for _ in range(13):
        bo.pause()
    # steps doubling from 10 us up to the idle cap (2 ms): ~12.5 ms; under the young cap
    # (200 us) they would add up to 1.9 ms. A sleep never ends early, so this cannot pass
    # by luck
    assert time.perf_counter() - t > 13 * 200e-6
