"""The stand-in's device model: devices, device memory, streams and what each copy or op costs.

Work runs eagerly on the host, but it is bookkept as CUDA would see it, so that code which is
only correct by luck on a GPU fails here deterministically:

* every allocation lives on one device and is charged to that device's memory pool (rounded up
  to 512 bytes as CuPy does); the pool keeps freed blocks cached, so ``total_bytes`` is a
  high-water mark until ``free_all_blocks``;
* every op is issued on the current stream, and an array remembers which stream last wrote it;
  reading it on another stream before that stream was synchronised (or waited for through an
  event) is a data race, which raises :class:`RaceError` here instead of reading stale data;
* asynchronous host copies (``get(out=..., blocking=False)``) land only when their stream is
  synchronised; an event counts as complete only after a synchronisation (or a ``done`` query
  that says so);
* with ``STREAMPIPE_CUPY_STANDIN_KERNEL_US`` (or ``configure(kernel_us=...)``) every kernel
  also takes that much *device* time, paid asynchronously as on a GPU: a launch returns at once,
  the stream is busy until its kernels are done, and a synchronisation (``synchronize()``, a
  blocking ``get()``, ``float(d)``) waits for that.  Events fire when their stream reaches them,
  so event timing measures the device time.  This is how tests see where a GPU-bound stage's
  time is charged.

Counters of copies, syncs and launches are in :data:`STATS`.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable

import numpy

ALIGN = 512  # CuPy's allocation unit
DEFAULT_MEMORY = 16 * 2**30


class CUDARuntimeError(RuntimeError):
    """What ``cupy.cuda.runtime`` raises (``cudaErrorXxx: description``)."""

    def __init__(self, status: str, text: str) -> None:
        self.status = status
        super().__init__(f"{status}: {text}")


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError``, with CuPy's message."""

    def __init__(self, size: int, total: int, limit: int = 0) -> None:
        if limit == 0:
            msg = f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)."
        else:
            msg = (f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes, "
                   f"limit set to: {limit:,} bytes).")
        super().__init__(msg)


class RaceError(RuntimeError):
    """Stand-in only: data read on one stream while another stream may still be writing it."""


class DeviceSynchronized(RuntimeError):
    """``cupyx.DeviceSynchronized``: a synchronisation inside ``cupyx.allow_synchronize(False)``."""


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected a positive number")
    return value


STATS: dict[str, int] = {}
STAT_NAMES = ("h2d_copies", "h2d_bytes", "d2h_copies", "d2h_bytes", "implicit_syncs",
              "syncs", "stream_syncs", "launches", "kernels", "pinned_allocations",
              "pinned_bytes")


def reset_stats() -> None:
    for name in STAT_NAMES:
        STATS[name] = 0


reset_stats()


def count(name: str, n: int = 1) -> None:
    STATS[name] += n


# ----------------------------------------------------------------------------- memory
class Pool:
    """One device's share of ``cupy.get_default_memory_pool()``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.total = 0  # used + cached free blocks
        self.limit = 0  # 0: no limit (CuPy's convention)

    def allocate(self, size: int) -> None:
        cap = min(self.capacity, self.limit) if self.limit else self.capacity
        if self.used + size > cap:
            self.total = self.used  # CuPy frees cached blocks and retries before failing
            raise OutOfMemoryError(size, self.used, self.limit)
        self.used += size
        self.total = max(self.total, self.used)
        if self.total > self.capacity:
            self.total = self.used


class Alloc:
    """One device allocation: its size, device, and which stream wrote it last (up to when)."""

    __slots__ = ("size", "device", "writer", "seq", "__weakref__")

    def __init__(self, size: int, device: int) -> None:
        self.size, self.device = size, device
        self.writer: Stream | None = None
        self.seq = 0


# ----------------------------------------------------------------------------- streams
class Stream:
    """A CUDA stream as bookkeeping: ops issued, ops known complete, pending async copies."""

    _ids = 0

    def __init__(self, device: int, null: bool = False, blocking: bool = True) -> None:
        Stream._ids += 1
        self.id = 0 if null else Stream._ids
        self.device, self.null, self.blocking = device, null, blocking
        self.issued = 0
        self.completed = 0
        self.busy_until = 0.0  # perf_counter time the simulated device finishes this stream
        self.waited: dict[int, int] = {}  # id(stream) -> seq this stream waited for
        self.copies: list[Callable[[], None]] = []

    def issue(self) -> int:
        self.issued += 1
        return self.issued

    def launch(self, delay: float) -> None:
        """A kernel taking ``delay`` seconds of device time is queued on this stream."""
        if delay > 0:
            self.busy_until = max(self.busy_until, time.perf_counter()) + delay

    def reached(self) -> float:
        """When the device reaches what is queued now (an event recorded now fires then)."""
        return max(self.busy_until, time.perf_counter())

    def complete(self, seq: int | None = None, until: float | None = None) -> None:
        """The host waits for the stream's work (up to op ``seq``, which the device reaches at
        ``until``)."""
        wait = (self.busy_until if until is None else until) - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.completed = max(self.completed, self.issued if seq is None else seq)
        if seq is None or seq >= self.issued:
            copies, self.copies = self.copies, []
            for fn in copies:
                fn()

    def name(self) -> str:
        if self.null:
            return f"the null stream of device {self.device}"
        kind = "blocking" if self.blocking else "non-blocking"
        return f"{kind} stream {self.id} of device {self.device}"

    def orders(self, writer: Stream, seq: int) -> bool:
        """Whether work issued on this stream now runs after ``writer``'s op number ``seq``."""
        if writer is self or writer.completed >= seq:
            return True
        if self.waited.get(id(writer), 0) >= seq:
            return True
        # the legacy default stream waits for, and is waited for by, every blocking stream
        return (self.null and writer.blocking) or (writer.null and self.blocking)


class Device:
    """State of one simulated GPU."""

    def __init__(self, index: int, memory: int) -> None:
        self.index = index
        self.pool = Pool(memory)
        self.null = Stream(index, null=True)
        self.streams: weakref.WeakSet[Stream] = weakref.WeakSet()


class State:
    """Everything the stand-in knows; :func:`configure` rebuilds it."""

    def __init__(self, devices: int, memory: int, kernel_us: float = 0.0) -> None:
        self.devices = [Device(i, memory) for i in range(devices)]
        self.memory = memory
        self.kernel_delay = kernel_us * 1e-6
        self.local = threading.local()
        self.allocs: dict[int, weakref.ref] = {}  # id(root ndarray) -> its Alloc
        self.allow_sync = True

    # current device and stream are per thread, as in CUDA
    @property
    def device(self) -> int:
        return getattr(self.local, "device", 0)

    @device.setter
    def device(self, index: int) -> None:
        self.local.device = index

    def stream_stack(self) -> list[Stream]:
        stack = getattr(self.local, "streams", None)
        if stack is None:
            stack = self.local.streams = []
        return stack

    def used_streams(self) -> dict[int, Stream]:
        used = getattr(self.local, "used", None)
        if used is None:
            used = self.local.used = {}
        return used

    def current_stream(self) -> Stream:
        dev = self.device
        for s in reversed(self.stream_stack()):
            if s.device == dev:
                return s
        return self.used_streams().get(dev) or self.devices[dev].null

    def sync_all(self, device: int | None = None) -> None:
        for d in self.devices:
            if device is None or d.index == device:
                d.null.complete()
                for s in list(d.streams):
                    s.complete()


def _env_us(name: str) -> float:
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"{name}={text!r}: expected microseconds >= 0")
    return value


STATE = State(_env_int("STREAMPIPE_CUPY_STANDIN_DEVICES", 1),
              _env_int("STREAMPIPE_CUPY_STANDIN_MEMORY", DEFAULT_MEMORY),
              _env_us("STREAMPIPE_CUPY_STANDIN_KERNEL_US"))


def configure(devices: int = 1, memory: int = DEFAULT_MEMORY, kernel_us: float = 0.0) -> None:
    """Start over with ``devices`` GPUs of ``memory`` bytes each whose kernels take
    ``kernel_us`` microseconds of device time each (forgets every allocation)."""
    global STATE
    if devices < 1 or memory < 1 or kernel_us < 0:
        raise ValueError("configure: devices and memory must be >= 1, kernel_us >= 0")
    STATE = State(devices, memory, kernel_us)
    reset_stats()


def state() -> State:
    return STATE


def declare_sync() -> None:
    """A host-device synchronisation is about to happen (``cupyx.allow_synchronize``)."""
    if not STATE.allow_sync:
        raise DeviceSynchronized("Device synchronization was detected while disallowed.")
    count("syncs")


def check_device(device: int) -> None:
    cur = STATE.device
    if device != cur:
        raise ValueError(f"The device where the array resides ({device}) is different from the "
                         f"current device ({cur}). Peer access is unavailable between these "
                         "devices.")


def allocate(root: numpy.ndarray) -> Alloc:
    """Charge the new device buffer ``root`` to the current device's pool."""
    nbytes = int(root.nbytes)
    size = -(-nbytes // ALIGN) * ALIGN
    dev = STATE.device
    STATE.devices[dev].pool.allocate(size)
    alloc = Alloc(size, dev)
    key = id(root)
    STATE.allocs[key] = weakref.ref(alloc)
    weakref.finalize(root, _release, STATE, key, size, dev)
    return alloc


def _release(st: State, key: int, size: int, dev: int) -> None:
    st.allocs.pop(key, None)
    pool = st.devices[dev].pool
    pool.used -= size


def find_alloc(a: numpy.ndarray) -> Alloc | None:
    """The allocation ``a`` is a view of, if it is one of the stand-in's device buffers."""
    root = a
    while isinstance(root.base, numpy.ndarray):
        root = root.base
    ref = STATE.allocs.get(id(root))
    return ref() if ref is not None else None


def root_of(a: numpy.ndarray) -> numpy.ndarray:
    while isinstance(a.base, numpy.ndarray):
        a = a.base
    return a


def read(alloc: Alloc, what: str = "an op", stream: Stream | None = None) -> None:
    """``alloc`` is read by work on ``stream`` (default: the current one): refuse a racy read."""
    writer = alloc.writer
    if writer is None:
        return
    stream = stream or STATE.current_stream()
    if not stream.orders(writer, alloc.seq):
        raise RaceError(
            f"cupy stand-in: data race: an array written on {writer.name()} is read by {what} on "
            f"{stream.name()} before that stream was synchronised or waited for (on a GPU this "
            "reads whatever is in memory at that moment); synchronise the producing stream, "
            "record an event on it and wait_event() it, or do the work inside the same "
            "`with stream:` block")


def write(alloc: Alloc, seq: int) -> None:
    alloc.writer = STATE.current_stream()
    alloc.seq = seq


def now() -> float:
    return time.perf_counter()
