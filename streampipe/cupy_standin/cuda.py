"""``cupy.cuda`` of the stand-in: devices, streams, events, memory pools and pinned memory.

Same names, arguments and errors as CuPy's (``cupy/cuda/stream.pyx``, ``device.pyx``,
``memory.pyx``, ``pinned_memory.pyx``); the work they order is bookkept by :mod:`._core`.
Events time the host work done between two records (the stand-in's kernels run there), and
:func:`get_elapsed_time` refuses, as CUDA does with ``cudaErrorNotReady``, to read an event
that nothing has synchronised yet.
"""

from __future__ import annotations

import types
from typing import Any

import numpy

from . import _core
from ._core import CUDARuntimeError, OutOfMemoryError, count

__all__ = ["Device", "Stream", "Event", "get_current_stream", "get_elapsed_time",
           "alloc_pinned_memory", "PinnedMemoryPointer", "MemoryPointer", "MemoryPool",
           "PinnedMemoryPool", "OutOfMemoryError", "runtime", "memory", "is_available"]


def _invalid_device() -> CUDARuntimeError:
    return CUDARuntimeError("cudaErrorInvalidDevice", "invalid device ordinal")


def _check_index(i: int) -> int:
    if not 0 <= int(i) < len(_core.state().devices):
        raise _invalid_device()
    return int(i)


# ----------------------------------------------------------------------------- runtime
runtime = types.ModuleType("cupy.cuda.runtime", "CUDA runtime calls of the stand-in.")
runtime.CUDARuntimeError = CUDARuntimeError
runtime.is_hip = False
runtime.getDeviceCount = lambda: len(_core.state().devices)
runtime.getDevice = lambda: _core.state().device


def _set_device(i: int) -> None:
    _core.state().device = _check_index(i)


def _mem_get_info() -> tuple[int, int]:
    st = _core.state()
    pool = st.devices[st.device].pool
    return pool.capacity - pool.total, pool.capacity


def _device_synchronize() -> None:
    _core.declare_sync()
    count("stream_syncs")
    _core.state().sync_all(_core.state().device)


def _properties(i: int) -> dict[str, Any]:
    _check_index(i)
    return {"name": b"streampipe CuPy stand-in (NumPy on the host)",
            "totalGlobalMem": _core.state().memory, "multiProcessorCount": 1,
            "major": 0, "minor": 0}


runtime.setDevice = _set_device
runtime.memGetInfo = _mem_get_info
runtime.deviceSynchronize = _device_synchronize
runtime.getDeviceProperties = _properties
runtime.runtimeGetVersion = lambda: 0
runtime.driverGetVersion = lambda: 0


def is_available() -> bool:
    return True


# ----------------------------------------------------------------------------- devices
class Device:
    """``cupy.cuda.Device``: ``use()``, ``synchronize()``, a context manager."""

    def __init__(self, device: Any = None) -> None:
        self.id = _core.state().device if device is None else int(device)
        self._prev: list[int] = []

    def use(self) -> None:
        _core.state().device = _check_index(self.id)

    def __enter__(self) -> Device:
        self._prev.append(_core.state().device)
        self.use()
        return self

    def __exit__(self, *exc: Any) -> None:
        _core.state().device = self._prev.pop()

    def synchronize(self) -> None:
        _check_index(self.id)
        _core.declare_sync()
        count("stream_syncs")
        _core.state().sync_all(self.id)

    @property
    def mem_info(self) -> tuple[int, int]:
        with Device(self.id):
            return _mem_get_info()

    @property
    def compute_capability(self) -> str:
        return "00"

    def __int__(self) -> int:
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


# ----------------------------------------------------------------------------- streams
class Stream:
    """``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False)``."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: Any = None) -> None:
        self._null = bool(null)
        if not null:
            st = _core.state()
            self._s = _core.Stream(st.device, blocking=not non_blocking)
            st.devices[st.device].streams.add(self._s)
        self.device_id = -1 if null else self._s.device

    def _state(self) -> _core.Stream:
        if self._null:
            st = _core.state()
            return st.devices[st.device].null
        return self._s

    @property
    def ptr(self) -> int:
        return 0 if self._null else self._s.id

    def __enter__(self) -> Stream:
        s = self._state()
        if s.device != _core.state().device:
            raise RuntimeError(f"The device that the stream is created on ({s.device}) does not "
                               f"match with the current device ({_core.state().device})")
        _core.state().stream_stack().append(s)
        return self

    def __exit__(self, *exc: Any) -> None:
        _core.state().stream_stack().pop()

    def use(self) -> Stream:
        s = self._state()
        _core.state().used_streams()[s.device] = s
        return self

    def synchronize(self) -> None:
        _core.declare_sync()
        count("stream_syncs")
        self._state().complete()

    @property
    def done(self) -> bool:
        s = self._state()
        if _core.now() < s.busy_until:
            return False
        s.complete()  # once the host knows the work is done, reading its results is safe
        return True

    def record(self, event: Event | None = None) -> Event:
        if event is None:
            event = Event()
        event.record(self)
        return event

    def wait_event(self, event: Event) -> None:
        if event._stream is None:
            return  # waiting on a never-recorded event is a no-op in CUDA
        s, w = self._state(), event._stream
        s.waited[id(w)] = max(s.waited.get(id(w), 0), event._seq)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and other._state() is self._state()

    def __hash__(self) -> int:
        return id(self._state())

    def __repr__(self) -> str:
        return f"<Stream {self._state().name()}>"


Stream.null = Stream(null=True)


class _Wrapped(Stream):
    """A public handle on a stream the stand-in already has."""

    def __init__(self, s: _core.Stream) -> None:
        self._null, self._s, self.device_id = s.null, s, s.device

    def _state(self) -> _core.Stream:
        return self._s


def get_current_stream(device_id: int | None = None) -> Stream:
    st = _core.state()
    if device_id is not None and device_id != st.device:
        with Device(device_id):
            return _Wrapped(st.current_stream())
    return _Wrapped(st.current_stream())


def _stream_state(stream: Stream | None) -> _core.Stream:
    return _core.state().current_stream() if stream is None else stream._state()


class Event:
    """``cupy.cuda.Event(block=False, disable_timing=False, interprocess=False)``."""

    def __init__(self, block: bool = False, disable_timing: bool = False,
                 interprocess: bool = False) -> None:
        if interprocess and not disable_timing:
            raise ValueError("Timing must be disabled for interprocess events")
        self.timing = not disable_timing
        self._stream: _core.Stream | None = None
        self._seq = 0
        self._t = 0.0

    def record(self, stream: Stream | None = None) -> None:
        s = _stream_state(stream)
        # the event fires when the (simulated) device reaches it on that stream
        self._stream, self._seq, self._t = s, s.issue(), s.reached()

    def synchronize(self) -> None:
        if self._stream is not None:
            _core.declare_sync()
            count("stream_syncs")
            self._stream.complete(self._seq, self._t)

    @property
    def done(self) -> bool:
        if self._stream is None:
            return True
        if _core.now() < self._t:
            return False
        self._stream.complete(self._seq, self._t)
        return True

    def _complete(self) -> bool:
        return self._stream is not None and self._stream.completed >= self._seq


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    """Milliseconds between two recorded events (both must be complete, timing enabled)."""
    for ev in (start_event, end_event):
        if ev._stream is None or not ev.timing:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle", "invalid resource handle")
    if not (start_event._complete() and end_event._complete()):
        raise CUDARuntimeError("cudaErrorNotReady", "device not ready")
    return (end_event._t - start_event._t) * 1e3


# ----------------------------------------------------------------------------- memory
class MemoryPointer:
    """What ``ndarray.data`` is: an address (of the host buffer here) and a device."""

    def __init__(self, ptr: int, device_id: int) -> None:
        self.ptr, self.device_id = ptr, device_id

    @property
    def device(self) -> Device:
        return Device(self.device_id)


class PinnedMemoryPointer(bytearray):
    """Page-locked host memory (``numpy.frombuffer(mem, dtype, count)`` views it)."""

    @property
    def size(self) -> int:
        return len(self)

    @property
    def ptr(self) -> int:
        return numpy.frombuffer(self, numpy.uint8).ctypes.data if len(self) else 0


_PINNED = {"bytes": 0, "blocks": 0}


def alloc_pinned_memory(size: int) -> PinnedMemoryPointer:
    size = int(size)
    count("pinned_allocations")
    count("pinned_bytes", size)
    _PINNED["bytes"] += size
    _PINNED["blocks"] += 1
    return PinnedMemoryPointer(size)


class MemoryPool:
    """``cupy.get_default_memory_pool()``: figures of the current device's pool."""

    def _pool(self) -> _core.Pool:
        st = _core.state()
        return st.devices[st.device].pool

    def used_bytes(self) -> int:
        return self._pool().used

    def total_bytes(self) -> int:
        return self._pool().total

    def free_bytes(self) -> int:
        p = self._pool()
        return p.total - p.used

    def n_free_blocks(self) -> int:
        return 1 if self.free_bytes() else 0

    def free_all_blocks(self, stream: Any = None) -> None:
        p = self._pool()
        p.total = p.used

    def set_limit(self, size: int | None = None, fraction: float | None = None) -> None:
        if size is not None and fraction is not None:
            raise ValueError("size and fraction cannot be specified at one time")
        p = self._pool()
        if fraction is not None:
            if not 0 <= fraction <= 1:
                raise ValueError(f"memory limit fraction out of range: {fraction}")
            size = int(p.capacity * fraction)
        p.limit = int(size or 0)

    def get_limit(self) -> int:
        return self._pool().limit


class PinnedMemoryPool:
    """``cupy.get_default_pinned_memory_pool()``: what :func:`alloc_pinned_memory` handed out."""

    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass

    def total_bytes(self) -> int:
        return _PINNED["bytes"]


memory = types.ModuleType("cupy.cuda.memory", "Memory classes of the stand-in.")
memory.OutOfMemoryError = OutOfMemoryError
memory.MemoryPool = MemoryPool
memory.MemoryPointer = MemoryPointer
memory.alloc = lambda size: MemoryPointer(0, _core.state().device)
pinned_memory = types.ModuleType("cupy.cuda.pinned_memory", "Pinned memory of the stand-in.")
pinned_memory.PinnedMemoryPointer = PinnedMemoryPointer
pinned_memory.PinnedMemoryPool = PinnedMemoryPool
pinned_memory.alloc_pinned_memory = alloc_pinned_memory
stream = types.ModuleType("cupy.cuda.stream", "Streams and events of the stand-in.")
for _name in ("Stream", "Event", "get_current_stream", "get_elapsed_time"):
    setattr(stream, _name, globals()[_name])
device = types.ModuleType("cupy.cuda.device", "Devices of the stand-in.")
device.Device = Device
SUBMODULES = {"runtime": runtime, "memory": memory, "pinned_memory": pinned_memory,
              "stream": stream, "device": device}
