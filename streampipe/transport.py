"""Frames over MPI: one :class:`Transport` per rank owns every message it sends or receives.

A *frame* is one ``TAG_MSG`` message of raw bytes: a fixed header (kind, edge, an integer
argument, the sizes of the out-of-band buffers that follow on ``TAG_BUF``) and a body. Data
bodies are a :class:`~streampipe.records.Batch` pickled once (protocol 5) with large contiguous
buffers left out of band and sent as raw ``Isend`` s, so a NumPy array is never copied into a
pickle; credit and end-of-stream frames carry no pickle at all.

Waiting never uses MPI's blocking calls (the MPICH wheel spins at 100% CPU in them, see
``../shared/MPI-NOTES.md``): :meth:`Transport.wait` polls and backs off (:class:`Backoff`).
How a rank polls is chosen per host by measurement (:func:`measure_host`,
:func:`choose_recv`): ``improbe`` once where it reports an arrived message at once, twice per
poll where it reports it only on the call after the one that pulled it in (the mpich wheel);
how long a wait sleeps once idle, from what a wake-up costs.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy

from .edges import ABORT as ABORT_EDGE
from .launch import host_cores

__all__ = ["Transport", "Backoff", "AbortRequested", "HostWaits", "measure_host", "choose_recv",
           "encode",
           "node_peers", "spin_window", "DATA", "CREDIT", "EOS", "ABORT", "CONTROL", "PROGRESS"]

TAG_MSG = 7001  # frames
TAG_BUF = 7002  # raw out-of-band buffers, always right after their frame
TAG_SELF = 7003  # start-up measurement of improbe (a message to this rank itself)

# frame kinds
DATA, CREDIT, EOS, ABORT, CONTROL, PROGRESS = range(6)

HEAD = struct.Struct("<BBiqI")  # kind, flags, edge, argument, number of out-of-band buffers
CREDIT_BODY = struct.Struct("<qqBd")  # credits, records, closed, receiver's s per item
BLOB_OUT_OF_BAND = 1  # flag: the body itself is the first out-of-band buffer
POSTED_BYTES = 1 << 16  # frames up to this size arrive in the posted receive buffer
INLINE_BYTES = 8192  # buffers smaller than this stay inside the pickle stream


class AbortRequested(Exception):
    """Another rank failed and asked this one to stop."""

    def __init__(self, source: int, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.message = message


def encode(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` (protocol 5) with contiguous buffers of INLINE_BYTES or more left out of
    band; returns the pickle and those buffers."""
    bufs: list[memoryview] = []

    def take(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < INLINE_BYTES:
            return True
        bufs.append(raw)
        return False

    return pickle.dumps(obj, protocol=5, buffer_callback=take), bufs


# ----------------------------------------------------------------------------- waiting
def _fine_sleeps() -> None:
    # Linux rounds every sleep up by the thread's timer slack (50 us by default), which turns a
    # 10 us back-off step into 60 us; 1 us of slack keeps short waits short.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def spin_window(ranks_on_node: int, spin_us: float = -1.0) -> float:
    """Seconds a wait may poll without sleeping: 100 us when every rank of the node has a core
    of its own (waking from a sleep costs more than the wait), none when ranks share cores
    (polling would take the core from a rank with work). ``spin_us`` >= 0 (setting
    ``spin_us``) decides instead."""
    if spin_us >= 0:
        return spin_us * 1e-6
    return 100e-6 if ranks_on_node <= host_cores() else 0.0


def node_peers(comm: Any) -> list[int]:
    """Ranks of ``comm`` on this node (the same shared-memory domain), in rank order.

    Collective: every rank of ``comm`` calls it once, at the same point.
    """
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return [int(r) for r in node.allgather(comm.Get_rank())]
    finally:
        node.Free()


POLL_CPU = 10e-6  # CPU seconds of one poll on waking up (two improbes, the wait's loop)
MAX_CAP = 20e-3  # longest sleep step of any wait


@dataclass
class HostWaits:
    """How waits poll and sleep on this rank's host (measured: :func:`measure_host`,
    :meth:`Transport.join_node`)."""

    recv: str = "probe"  # "probe": improbe; "irecv": a posted receive from any source
    probe_calls: int = 1  # improbe calls it took to see a message that had arrived
    wake_cpu: float = 30e-6  # CPU seconds one sleep-and-wake costs
    spin: float = 0.0  # seconds a wait polls before it yields and sleeps
    yields: int = 16  # sched_yield()s between polling and sleeping
    first: float = 10e-6  # the first sleep of a wait (the steps double from here)
    cap: float = 200e-6  # longest sleep while a wait is young
    cap_idle: float = 2e-3  # longest sleep once a wait has lasted IDLE_AFTER

    IDLE_AFTER = 20e-3
    IDLE_CPU = 0.05  # CPU-s per second an idle rank may spend on waking up
    NODE_WAKE_SHARE = 0.1  # of the node's cores, the most that young waits may spend waking

    def share_node(self, ranks: int, cores: int) -> None:
        """Fit the back-off to ``ranks`` sharing ``cores``. Up to 4 ranks a core, nothing
        changes. Beyond, waiting ranks would take the cores from the ranks with work (128
        ranks on 2 cores: every rank runnable, the source at 1/128 of a core): each wake-up
        costs about ``wake_cpu`` plus a poll, so the sleeps grow until the node's wake-ups
        cost at most ``NODE_WAKE_SHARE`` of its cores (128 ranks on 2 cores: ~13 ms), and a
        wait starts at an eighth of that instead of 10 us; yielding stops helping too."""
        if ranks <= 4 * cores:
            return
        need = ranks * (self.wake_cpu + POLL_CPU) / (self.NODE_WAKE_SHARE * max(cores, 1))
        self.yields = 0
        if need > self.cap:
            self.cap = min(need, MAX_CAP)
            self.cap_idle = max(self.cap_idle, self.cap)
            self.first = max(self.first, self.cap / 8)

    def as_dict(self) -> dict[str, Any]:
        return {"wait_recv": self.recv, "wait_probe_calls": self.probe_calls,
                "wait_wake_cpu_us": 1e6 * self.wake_cpu, "wait_spin_us": 1e6 * self.spin,
                "wait_yields": self.yields, "wait_first_us": 1e6 * self.first,
                "wait_cap_us": 1e6 * self.cap,
                "wait_cap_idle_us": 1e6 * self.cap_idle}


def _improbe_calls(comm: Any, MPI: Any) -> int:
    """improbe calls needed to see a message already sent to this rank (1: prompt)."""
    req = comm.Isend([b"x", MPI.BYTE], dest=comm.Get_rank(), tag=TAG_SELF)
    time.sleep(200e-6)
    status = MPI.Status()
    calls = 0
    while True:
        calls += 1
        msg = comm.improbe(comm.Get_rank(), TAG_SELF, status)
        if msg is not None:
            msg.Recv([bytearray(1), MPI.BYTE])
            req.Wait()
            return calls
        if calls > 100:
            time.sleep(10e-6)


def _wake_cpu(n: int = 5) -> float:
    """CPU seconds one short sleep and the wake-up after it cost this thread."""
    c0 = time.thread_time()
    for _ in range(n):
        time.sleep(50e-6)
    return (time.thread_time() - c0) / n


def measure_host(comm: Any, MPI: Any) -> HostWaits:
    """What a rank can learn alone about waiting on its host (about 1 ms): whether ``improbe``
    reports an arrived message on its first call (the mpich wheel's does not: the transport
    then probes twice per poll), and what a sleep costs, which sets ``cap_idle``: the sleep
    step of a wait that has lasted ``IDLE_AFTER``, long enough that waking up costs at most
    ``IDLE_CPU`` CPU-s per second (but 1-5 ms)."""
    w = HostWaits()
    w.probe_calls = _improbe_calls(comm, MPI)
    w.wake_cpu = _wake_cpu()
    w.cap_idle = min(5e-3, max(1e-3, w.wake_cpu / HostWaits.IDLE_CPU))
    return w


def choose_recv(w: HostWaits, recv: str = "probe") -> str:
    """How this rank receives: ``improbe`` (called twice per poll where one call reports an
    arrived message late), unless ``recv = "irecv"`` (setting ``recv``) asks for a posted
    receive from any source. Measured on this machine (benchmarks/waits.py): the second
    ``improbe`` gives the same idle latency as a posted receive, and a posted any-source
    receive stalled after a few messages over MPICH's UCX network module (the two-host test),
    where ``improbe`` works."""
    if recv not in ("irecv", "probe"):
        raise ValueError(f"recv: must be irecv or probe, got {recv!r}")
    return recv


class WaitHistory:
    """How long the last few waits of one recurring kind lasted (a stage's wait for input, or
    for credit): when each of the last ``K`` lasted at least ``LONG``, the next one sleeps
    ``FRAC`` of the shortest at once (at most ``MAX``), then goes on with the back-off's short
    sleeps. Where ranks share cores, a wait's polls (~7 us each at 8 ranks on 2 cores) and
    wake-ups (~30 us of CPU each, :func:`_wake_cpu`) were the larger part of a starved
    replica's CPU: a 2 ms wait went through 32 polls and ~14 sleeps. The shortest of the last
    waits, not their mean, so a pattern of long and short waits (a lock-step schedule) keeps
    its short ones short; a wait shorter than ``FRAC`` of the last four shortest is answered up
    to that much late."""

    K = 4
    FRAC = 0.75
    LONG = 500e-6
    MAX = HostWaits.IDLE_AFTER

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = [0.0] * self.K

    def first_sleep(self) -> float:
        """Seconds the next wait may sleep before its first poll (0: none)."""
        m = min(self.last)
        return min(self.FRAC * m, self.MAX) if m >= self.LONG else 0.0

    def add(self, seconds: float) -> None:
        last = self.last
        last.pop(0)
        last.append(seconds)


class Backoff:
    """Poll for ``spin`` seconds (from the start of the wait), yield ``yields`` times, then sleep
    steps doubling from ``first`` (10 us) up to ``cap``; once the wait has lasted
    ``idle_after``, up to ``cap_idle``. A cap near 200 us frees the core without hurting
    lock-step pipelines (MPI-NOTES.md); the idle cap keeps a rank with nothing to do near zero
    CPU; with many ranks per core both grow (:meth:`HostWaits.share_node`).
    """

    POLLS = 16  # polls at the start of a wait before it yields or sleeps

    __slots__ = ("n", "k", "t0", "spin", "yields", "cap", "cap_idle", "idle_after", "first")

    def __init__(self, spin: float = 0.0, yields: int = 16, cap: float = 200e-6,
                 cap_idle: float = 2e-3, idle_after: float = HostWaits.IDLE_AFTER,
                 first: float = 10e-6) -> None:
        self.n = self.k = 0
        self.t0 = 0.0
        self.spin, self.yields, self.cap = spin, yields, cap
        self.cap_idle, self.idle_after, self.first = cap_idle, idle_after, first

    @classmethod
    def of(cls, w: HostWaits) -> Backoff:
        return cls(w.spin, w.yields, w.cap, w.cap_idle, first=w.first)

    def sleeping(self, slept: float) -> None:
        """The wait began with a sleep of ``slept`` seconds (:class:`WaitHistory`): what it
        waits for is due about now, so it goes on with the short sleeps at once (no burst of
        polls and yields: ~250 us of CPU where ranks share cores and a poll costs ~7 us)."""
        self.n = self.POLLS + 1
        self.k = self.yields
        self.t0 = time.perf_counter() - slept

    def pause(self) -> bool:
        """Wait a little; True when it slept (time has passed: look at the clock again)."""
        n = self.n
        self.n = n + 1
        if n == 0:
            self.t0 = time.perf_counter()
            self.k = 0
            return False
        if n < self.POLLS:
            return False
        waited = time.perf_counter() - self.t0
        if waited < self.spin:
            return n % 64 == 0  # a long poll window still looks at time-bound conditions
        k = self.k
        self.k = k + 1
        if k < self.yields:
            os.sched_yield()
            return False
        cap = self.cap if waited < self.idle_after else self.cap_idle
        time.sleep(min(cap, self.first * (1 << min(k - self.yields, 12))))
        return True


# ----------------------------------------------------------------------------- receiving
class _Posted:
    """A persistent receive posted for the next frame from anyone (frames <= POSTED_BYTES)."""

    def __init__(self, comm: Any, MPI: Any) -> None:
        self.buf = bytearray(POSTED_BYTES)
        self.status = MPI.Status()
        self.BYTE = MPI.BYTE
        self.req = comm.Recv_init([self.buf, MPI.BYTE], source=MPI.ANY_SOURCE, tag=TAG_MSG)
        self.req.Start()
        self.view = memoryview(self.buf)

    def next(self) -> tuple[int, memoryview] | None:
        if not self.req.Test(self.status):
            return None
        return self.status.Get_source(), self.view[:self.status.Get_count(self.BYTE)]

    def release(self) -> None:
        self.req.Start()

    def close(self) -> None:
        req = self.req
        req.Cancel()
        req.Wait()
        req.Free()


class _Probe:
    """``improbe`` for the next frame; a second call right after an empty one where ``improbe``
    reports a message only on the call after the one that pulled it in."""

    def __init__(self, comm: Any, MPI: Any, twice: bool) -> None:
        self.comm, self.MPI, self.status = comm, MPI, MPI.Status()
        self.twice = twice

    def next(self) -> tuple[int, memoryview] | None:
        st = self.status
        msg = self.comm.improbe(self.MPI.ANY_SOURCE, TAG_MSG, st)
        if msg is None and self.twice:
            msg = self.comm.improbe(self.MPI.ANY_SOURCE, TAG_MSG, st)
        if msg is None:
            return None
        buf = bytearray(st.Get_count(self.MPI.BYTE))
        msg.Recv([buf, self.MPI.BYTE])
        return st.Get_source(), memoryview(buf)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _buffer(size: int) -> Any:
    """Memory for an incoming buffer: not zeroed first (MPI overwrites all of it)."""
    return numpy.empty(size, dtype=numpy.uint8)


@dataclass
class _Incoming:
    """A frame whose out-of-band buffers are still arriving."""

    kind: int
    edge: int
    arg: int
    flags: int
    blob: bytes
    bufs: list[Any] = field(default_factory=list)
    reqs: list[Any] = field(default_factory=list)


class Transport:
    """All point-to-point traffic of one rank: frames in, frames out, waits.

    Handlers are registered per edge id (:meth:`register`); :meth:`poll` receives whatever has
    arrived and calls ``handler(source, kind, payload)`` in arrival order per source, where the
    payload of a DATA frame is ``(credits, unpickled body)``, of a CREDIT frame ``(credits, records,
    closed, pace)``, of an EOS frame None, and of a CONTROL or PROGRESS frame the object sent.
    """

    def __init__(self, comm: Any, on_transfer: Callable[[float], None] | None = None,
                 waits: HostWaits | None = None) -> None:
        from mpi4py import MPI

        _fine_sleeps()
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.waits = waits or measure_host(comm, MPI)
        self._recv: _Posted | _Probe = _Probe(comm, MPI, self.waits.probe_calls > 1)
        self._handlers: dict[int, Callable[[int, int, Any], None]] = {}
        self._sends: deque[tuple[list[Any], Any]] = deque()
        self._incoming: dict[int, deque[_Incoming]] = {}
        self._on_transfer = on_transfer or (lambda dt: None)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0

    def join_node(self, spin_us: float = -1.0, recv: str = "probe") -> tuple[int, int]:
        """Learn this node's ranks (collective), choose how long waits poll before sleeping
        (``spin_us``, -1: by the ranks per core) and how to receive (``recv``), and return
        (node-local rank, ranks on the node)."""
        peers = node_peers(self.comm)
        w = self.waits
        w.spin = spin_window(len(peers), spin_us)
        w.share_node(len(peers), host_cores())
        w.recv = choose_recv(w, recv)
        if w.recv == "irecv":  # nothing can be in flight yet: every rank is here
            self._recv = _Posted(self.comm, self.MPI)
        elif not isinstance(self._recv, _Probe) or self._recv.twice != (w.probe_calls > 1):
            self._recv = _Probe(self.comm, self.MPI, w.probe_calls > 1)
        return peers.index(self.rank), len(peers)

    def register(self, edge: int, handler: Callable[[int, int, Any], None]) -> None:
        """Route frames of ``edge`` to ``handler``; an edge has exactly one handler."""
        if edge in self._handlers:
            raise ValueError(f"rank {self.rank}: edge {edge} already has a handler "
                             f"({self._handlers[edge]!r}); two ports on one edge")
        self._handlers[edge] = handler

    @property
    def handlers(self) -> Mapping[int, Callable[[int, int, Any], None]]:
        """The registered handlers (read-only: use :meth:`register`)."""
        return MappingProxyType(self._handlers)

    def close(self) -> None:
        """Withdraw the posted receive (every frame of the run must have been received)."""
        self._recv.close()

    # ----- sending -------------------------------------------------------------------------
    def _frame(self, dest: int, kind: int, edge: int, arg: int, blob: bytes,
               bufs: list[memoryview] | tuple = ()) -> int:
        flags = 0
        if HEAD.size + 8 * len(bufs) + len(blob) > POSTED_BYTES:
            flags, bufs, blob = BLOB_OUT_OF_BAND, [memoryview(blob), *bufs], b""
        sizes = [b.nbytes for b in bufs]
        head = HEAD.pack(kind, flags, edge, arg, len(bufs))
        frame = head + struct.pack(f"<{len(bufs)}Q", *sizes) + blob if bufs else head + blob
        comm, BYTE = self.comm, self.MPI.BYTE
        reqs = [comm.Isend([frame, BYTE], dest=dest, tag=TAG_MSG)]
        reqs += [comm.Isend([b, BYTE], dest=dest, tag=TAG_BUF) for b in bufs]
        self._sends.append((reqs, (frame, bufs)))
        self.messages_sent += 1
        nbytes = len(frame) + sum(sizes)
        self.bytes_sent += nbytes
        return nbytes

    def send(self, dest: int, kind: int, edge: int, payload: Any) -> None:
        """Send a control message (small, pickled)."""
        self._frame(dest, kind, edge, 0, pickle.dumps(payload, protocol=5))

    def send_data(self, dest: int, edge: int, credits: int, blob: bytes,
                  bufs: list[memoryview], t0: float | None = None) -> None:
        """Send an encoded batch (see :func:`encode`) that costs ``credits`` at the receiver;
        the time since ``t0`` (when encoding began) is charged to transfer."""
        t0 = time.perf_counter() if t0 is None else t0
        self._frame(dest, DATA, edge, credits, blob, bufs)
        self._on_transfer(time.perf_counter() - t0)

    def send_credit(self, dest: int, edge: int, credits: int, records: int,
                    closed: bool = False, pace: float = 0.0) -> None:
        """Credits back to a sender, with the records they free and (``pace`` > 0) how long
        the receiving stage takes per item, which bounds the sender's batches to it."""
        self._frame(dest, CREDIT, edge, 0, CREDIT_BODY.pack(credits, records, closed, pace))

    def send_eos(self, dest: int, edge: int) -> None:
        self._frame(dest, EOS, edge, 0, b"")

    def _reap_sends(self) -> None:
        sends = self._sends
        Testall = self.MPI.Request.Testall
        while sends and Testall(sends[0][0]):
            sends.popleft()

    @property
    def sends_pending(self) -> int:
        self._reap_sends()
        return len(self._sends)

    # ----- receiving -----------------------------------------------------------------------
    def poll(self) -> bool:
        """Receive what has arrived and dispatch it; True when anything happened."""
        recv = self._recv
        got = False
        while True:
            frame = recv.next()
            if frame is None:
                break
            got = True
            try:
                self._take(*frame)
            finally:
                recv.release()
        if self._incoming:
            got = self._deliver() or got
        if self._sends:
            n = len(self._sends)
            self._reap_sends()
            got = got or len(self._sends) < n  # a completed send can satisfy a wait too
        return got

    def _take(self, src: int, view: memoryview) -> None:
        t0 = time.perf_counter()
        kind, flags, edge, arg, nbufs = HEAD.unpack_from(view)
        self.messages_received += 1
        self.bytes_received += len(view)
        off = HEAD.size
        if not nbufs and src not in self._incoming:
            self._dispatch(src, kind, edge, arg, view[off:], None, t0)
            return
        sizes = struct.unpack_from(f"<{nbufs}Q", view, off)
        inc = _Incoming(kind, edge, arg, flags, bytes(view[off + 8 * nbufs:]))
        MPI = self.MPI
        for size in sizes:
            buf = _buffer(size)
            inc.bufs.append(buf)
            inc.reqs.append(self.comm.Irecv([buf, MPI.BYTE], source=src, tag=TAG_BUF))
            self.bytes_received += size
        self._incoming.setdefault(src, deque()).append(inc)
        self._on_transfer(time.perf_counter() - t0)

    def _deliver(self) -> bool:
        Testall = self.MPI.Request.Testall
        done = False
        for src, queue in list(self._incoming.items()):
            while queue and (not queue[0].reqs or Testall(queue[0].reqs)):
                inc = queue.popleft()
                if not queue:
                    del self._incoming[src]
                bufs = inc.bufs
                blob: Any = inc.blob
                if inc.flags & BLOB_OUT_OF_BAND:
                    blob, bufs = bufs[0], bufs[1:]
                self._dispatch(src, inc.kind, inc.edge, inc.arg, blob, bufs,
                               time.perf_counter())
                done = True
        return done

    def _dispatch(self, src: int, kind: int, edge: int, arg: int, body: Any,
                  bufs: list[Any] | None, t0: float) -> None:
        if kind == DATA:
            payload: Any = (arg, pickle.loads(body, buffers=bufs))
        elif kind == CREDIT:
            c, n, closed, pace = CREDIT_BODY.unpack_from(body)
            payload = (c, n, bool(closed), pace)
        elif kind == EOS:
            payload = None
        else:
            payload = pickle.loads(body, buffers=bufs)
            if kind == ABORT:
                raise AbortRequested(src, payload)
        self._on_transfer(time.perf_counter() - t0)
        handler = self._handlers.get(edge)
        if handler is None:
            raise RuntimeError(f"rank {self.rank}: message for unknown edge {edge} from {src}")
        handler(src, kind, payload)

    def wait(self, until: Callable[[], bool], backoff: Backoff | None = None,
             timeout: float | None = None, what: str = "",
             history: WaitHistory | None = None) -> None:
        """Poll until ``until()`` is true, sleeping between empty polls (never busy-spins).
        ``history``: the waits of this kind so far (a long one sleeps through most of its
        expected length at once)."""
        if until():
            return
        t0 = time.perf_counter()
        try:
            self._wait(until, backoff, timeout, what, history)
        finally:
            if history is not None:
                history.add(time.perf_counter() - t0)

    def _wait(self, until: Callable[[], bool], backoff: Backoff | None, timeout: float | None,
              what: str, history: WaitHistory | None) -> None:
        bo = backoff or Backoff.of(self.waits)
        deadline = None if timeout is None else time.perf_counter() + timeout
        poll, pause = self.poll, bo.pause
        # not where waits poll first (a rank per core, or spin_us asked for low latency)
        first = 0.0 if history is None or bo.spin > 0 else history.first_sleep()
        if first:
            # until() may take what it finds (an input batch): called once it is true
            if poll() and until():
                return
            time.sleep(first)
            bo.sleeping(first)
        while True:
            # until() can only change when something arrived or completed, or with time
            # (checked after each sleep): an empty poll skips it
            if (poll() or pause()) and until():
                return
            if deadline is not None and time.perf_counter() > deadline:
                raise TimeoutError(f"rank {self.rank}: timed out after {timeout:.1f} s {what}")

    def drain_sends(self, timeout: float = 30.0) -> None:
        """Wait until every message this rank sent has been taken by its receiver."""
        self.wait(lambda: not self._sends, timeout=timeout, what="waiting for sends to complete")

    def abort_others(self, message: str, size: int) -> None:
        """Tell every other rank to stop (best effort, never blocks)."""
        for r in range(size):
            if r != self.rank:
                try:
                    self._frame(r, ABORT, ABORT_EDGE, 0, pickle.dumps(message))
                except Exception:  # noqa: BLE001 - we are already failing
                    pass
