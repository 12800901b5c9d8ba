"""Credit-based bounded channels over MPI.

One :class:`Transport` per rank owns every message this rank sends or receives. Data moves in
*records* ``(kind, key, value)`` batched into wire messages; a sender may have at most
``capacity`` records in flight to each receiver of an edge, and the receiver hands credits back
as it consumes them. Array buffers travel out of band (pickle protocol 5, raw ``Isend``), so a
NumPy array is never copied into a pickle stream. Every wait is ``improbe``/``Test`` plus a
sleeping back-off, because the MPICH wheel's blocking waits spin at 100% CPU (see
docs/transport.md); that keeps runs with more ranks than cores at full speed.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TAG_MSG = 7001  # pickled headers and control messages
TAG_BUF = 7002  # raw out-of-band buffers, always right after their header

# message kinds on the wire
DATA, DATA_OOB, CREDIT, ABORT, CONTROL = range(5)

INLINE_BYTES = 8192  # buffers smaller than this stay inside the pickle stream


class AbortRequested(Exception):
    """Another rank failed and asked this one to stop."""

    def __init__(self, source: int, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.message = message


def _keep_inline(buf: pickle.PickleBuffer) -> bool:
    return buf.raw().nbytes < INLINE_BYTES


def encode(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` (protocol 5) with large contiguous buffers left out of band."""
    bufs: list[pickle.PickleBuffer] = []

    def take(buf: pickle.PickleBuffer) -> bool:
        if _keep_inline(buf):
            return True
        bufs.append(buf)
        return False

    blob = pickle.dumps(obj, protocol=5, buffer_callback=take)
    return blob, [b.raw() for b in bufs]


def _fine_sleeps() -> None:
    # Linux rounds every sleep up by the thread's timer slack (50 us by default), which turns a
    # 10 us back-off step into 60 us; 1 us of slack keeps short waits short.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def spin_window(ranks_on_node: int) -> float:
    """Seconds a wait may poll without sleeping: 100 us when every rank of the node has a core
    of its own (waking from a sleep costs more than the wait), none when ranks share cores
    (polling would take the core from a rank with work). ``STREAMPIPE_SPIN_US`` overrides."""
    env = os.environ.get("STREAMPIPE_SPIN_US")
    if env:
        return max(0.0, float(env)) * 1e-6
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 100e-6 if ranks_on_node <= cores else 0.0


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


class Backoff:
    """Poll for ``spin`` seconds, then yield, then sleep up to ``cap`` seconds between polls.

    A cap near 200 us frees the core without hurting lock-step pipelines (MPI-NOTES.md); after a
    second of idling the cap grows to 2 ms so long waits cost almost no CPU.
    """

    __slots__ = ("n", "cap", "since", "spin")

    def __init__(self, cap: float = 200e-6, spin: float = 0.0) -> None:
        self.n = 0
        self.cap = cap
        self.since = 0.0
        self.spin = spin

    def reset(self) -> None:
        self.n = 0

    def pause(self) -> None:
        n = self.n
        self.n = n + 1
        if n < 16:
            if n == 0:
                self.since = time.perf_counter()
            return
        if self.spin and time.perf_counter() - self.since < self.spin:
            self.n = 16  # keep polling until the spin window is over
            return
        if n < 32:
            os.sched_yield()
            return
        if n == 32:
            self.since = time.perf_counter()
        cap = self.cap if time.perf_counter() - self.since < 1.0 else 2e-3
        time.sleep(min(cap, 10e-6 * (1 << min(n - 32, 10))))


@dataclass
class _Incoming:
    source: int
    header: tuple
    bufs: list[bytearray] = field(default_factory=list)
    reqs: list[Any] = field(default_factory=list)

    def ready(self, MPI: Any) -> bool:
        return not self.reqs or MPI.Request.Testall(self.reqs)


class Transport:
    """All point-to-point traffic of one rank: wire messages in, wire messages out, waits.

    Handlers are registered per edge id; ``poll`` receives whatever has arrived and calls
    ``handler(source, kind, payload)`` in arrival order per source.
    """

    def __init__(self, comm: Any, on_transfer: Callable[[float], None] | None = None) -> None:
        from mpi4py import MPI

        _fine_sleeps()
        self.spin = 0.0
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.handlers: dict[int, Callable[[int, int, Any], None]] = {}
        self._sends: deque[tuple[list[Any], Any]] = deque()
        self._incoming: dict[int, deque[_Incoming]] = {}
        self._on_transfer = on_transfer or (lambda dt: None)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0

    def join_node(self) -> tuple[int, int]:
        """Learn this node's ranks (collective), choose how long waits poll before sleeping,
        and return (node-local rank, ranks on the node)."""
        peers = node_peers(self.comm)
        self.spin = spin_window(len(peers))
        return peers.index(self.rank), len(peers)

    # ----- sending -------------------------------------------------------------------------
    def send(self, dest: int, kind: int, edge: int, payload: Any) -> None:
        """Send a control message (small, pickled)."""
        req = self.comm.isend((kind, edge, payload), dest=dest, tag=TAG_MSG)
        self._sends.append(([req], None))
        self.messages_sent += 1

    def send_records(self, dest: int, edge: int, records: list) -> None:
        """Send a batch of records; large buffers go out of band as raw bytes."""
        t0 = time.perf_counter()
        blob, bufs = encode(records)
        if bufs:
            sizes = [b.nbytes for b in bufs]
            reqs = [self.comm.isend((DATA_OOB, edge, (blob, sizes)), dest=dest, tag=TAG_MSG)]
            byte = self.MPI.BYTE
            reqs += [self.comm.Isend([b, byte], dest=dest, tag=TAG_BUF) for b in bufs]
            self._sends.append((reqs, bufs))
            self.bytes_sent += len(blob) + sum(sizes)
        else:
            req = self.comm.isend((DATA, edge, blob), dest=dest, tag=TAG_MSG)
            self._sends.append(([req], None))
            self.bytes_sent += len(blob)
        self.messages_sent += 1
        self._on_transfer(time.perf_counter() - t0)

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
        comm = self.comm
        MPI = self.MPI
        got = False
        status = MPI.Status()
        while True:
            msg = comm.improbe(MPI.ANY_SOURCE, TAG_MSG, status)
            if msg is None:
                break
            t0 = time.perf_counter()
            src = status.Get_source()
            header = msg.recv()
            inc = _Incoming(src, header)
            if header[0] == DATA_OOB:
                for size in header[2][1]:
                    buf = bytearray(size)
                    inc.bufs.append(buf)
                    inc.reqs.append(comm.Irecv([buf, MPI.BYTE], source=src, tag=TAG_BUF))
            self._incoming.setdefault(src, deque()).append(inc)
            self.messages_received += 1
            self._on_transfer(time.perf_counter() - t0)
            got = True
        if self._incoming:
            got = self._deliver() or got
        if self._sends:
            self._reap_sends()
        return got

    def _deliver(self) -> bool:
        MPI = self.MPI
        done = False
        for src, queue in list(self._incoming.items()):
            while queue and queue[0].ready(MPI):
                inc = queue.popleft()
                kind, edge, payload = inc.header
                if kind == DATA:
                    t0 = time.perf_counter()
                    self.bytes_received += len(payload)
                    payload = pickle.loads(payload)
                    self._on_transfer(time.perf_counter() - t0)
                elif kind == DATA_OOB:
                    t0 = time.perf_counter()
                    blob, sizes = payload
                    self.bytes_received += len(blob) + sum(sizes)
                    payload = pickle.loads(blob, buffers=inc.bufs)
                    kind = DATA
                    self._on_transfer(time.perf_counter() - t0)
                elif kind == ABORT:
                    raise AbortRequested(src, payload)
                handler = self.handlers.get(edge)
                if handler is None:
                    raise RuntimeError(
                        f"rank {self.rank}: message for unknown edge {edge} from {src}")
                handler(src, kind, payload)
                done = True
            if not queue:
                del self._incoming[src]
        return done

    def wait(self, until: Callable[[], bool], backoff: Backoff | None = None,
             timeout: float | None = None, what: str = "") -> None:
        """Poll until ``until()`` is true, sleeping between empty polls (never busy-spins)."""
        if until():
            return
        bo = backoff or Backoff(spin=self.spin)
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            if self.poll():
                bo.reset()
            else:
                bo.pause()
            if until():
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
                    self.comm.isend((ABORT, -1, message), dest=r, tag=TAG_MSG)
                except Exception:  # noqa: BLE001 - we are already failing
                    pass
