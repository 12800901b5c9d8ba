"""GPU stages: device selection, device arrays on the wire, and device memory accounting.

CuPy is imported lazily, so everything else (plan, simulate, report, CPU runs) works without it.
See docs/gpu.md for the whole picture; in short:

* :func:`resolve_device` turns a stage's ``device = "cpu" | "gpu" | "auto"`` into the array
  module the stage computes with (``ctx.xp``) and makes this rank's GPU current: node-local rank
  ``i`` gets visible GPU ``i % count`` (:func:`node_local_rank`), ``STREAMPIPE_GPU`` overrides.
* :class:`WireCodec` is what :func:`wire_hooks` hands the runtime: CuPy arrays leave a GPU stage
  as NumPy arrays staged through reused page-locked buffers, NumPy arrays arriving at a GPU stage
  are moved to the device.  Nested dicts, lists and tuples are walked.
* :func:`batch_rows_for_budget` sizes sub-batches for a memory budget, and
  :func:`record_gpu_memory` keeps the CuPy pool's high-water mark in the rank's metrics.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Callable
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy

from .transport import node_peers  # MPI itself is imported only inside its functions

__all__ = [
    "DEVICES",
    "DeviceError",
    "gpu_available",
    "node_local_rank",
    "select_gpu",
    "resolve_device",
    "to_host",
    "is_device_array",
    "standin_mode",
    "register_kernel_reference",
    "gpu_local_rank",
    "gpu_node_rank",
    "cuda_aware_mpi",
    "pinned_limit",
    "PinnedPool",
    "WireCodec",
    "wire_hooks",
    "available_bytes",
    "batch_rows_for_budget",
    "record_gpu_memory",
]

DEVICES = ("cpu", "gpu", "auto")

# Arrays smaller than this go through CuPy's own (pageable) copy: pinning pays off only when the
# copy itself dominates, and small arrays are pickled inline by the transport anyway.
PINNED_MIN_BYTES = 64 * 1024
# Page-locked memory is taken from the OS and cannot be swapped; cap what one rank holds
# (STREAMPIPE_PINNED_LIMIT overrides, in bytes).
PINNED_LIMIT_BYTES = 512 * 2**20
_FALSE = ("", "0", "false", "no", "off")


class DeviceError(RuntimeError):
    """A stage asked for a GPU that is not there, or the GPU selection is invalid."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in _FALSE


def pinned_limit() -> int:
    """Bytes of page-locked staging memory one rank may hold (``STREAMPIPE_PINNED_LIMIT``)."""
    text = os.environ.get("STREAMPIPE_PINNED_LIMIT", "").strip()
    if not text:
        return PINNED_LIMIT_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"STREAMPIPE_PINNED_LIMIT={text!r}: expected a number of bytes >= 0")
    return value


STANDIN_MODES = ("strict",)


def standin_mode() -> str | None:
    """``"strict"`` when ``STREAMPIPE_CUPY_STANDIN`` asks for the CuPy stand-in, else None."""
    text = os.environ.get("STREAMPIPE_CUPY_STANDIN", "").strip().lower()
    if text in _FALSE:
        return None
    if text not in STANDIN_MODES:
        raise ValueError(f"STREAMPIPE_CUPY_STANDIN={text!r}: expected strict (or 0 / unset for "
                         "real CuPy)")
    return text


@lru_cache(maxsize=1)
def _probe() -> tuple[ModuleType | None, str]:
    """(cupy, "") when CuPy imports and sees a device, else (None, why not).

    With ``STREAMPIPE_CUPY_STANDIN=strict`` the strict stand-in (:mod:`streampipe.cupy_standin`)
    is installed as ``cupy`` in this process and used instead, whether CuPy is there or not.
    """
    if standin_mode() is not None:
        from . import cupy_standin  # noqa: PLC0415 - only when asked for

        return cupy_standin.install(), ""
    try:
        import cupy  # noqa: PLC0415 - optional dependency
    except Exception as exc:  # noqa: BLE001 - a broken install is as good as none
        return None, f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    if getattr(cupy, "STANDIN", False):
        return None, ("`cupy` is the stand-in installed in this process, but "
                      "STREAMPIPE_CUPY_STANDIN is not set")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device
        return None, f"CUDA reports no usable device ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CUDA reports 0 devices (check CUDA_VISIBLE_DEVICES)"
    return cupy, ""


def _cupy() -> ModuleType | None:
    """CuPy when it is usable here (tests replace this function to fake a GPU node)."""
    return _probe()[0]


def _usable_cupy() -> tuple[ModuleType | None, str]:
    if _flag("STREAMPIPE_NO_GPU"):
        return None, "STREAMPIPE_NO_GPU is set"
    cp = _cupy()
    if cp is None:
        return None, _probe()[1] or "no usable CUDA device"
    return cp, ""


def gpu_available() -> bool:
    """True when CuPy imports, sees at least one CUDA device, and STREAMPIPE_NO_GPU is unset."""
    return _usable_cupy()[0] is not None


def node_layout(comm: Any) -> tuple[int, int]:
    """(this rank's index, number of ranks) among the ranks of ``comm`` on the same node.

    Collective: every rank of ``comm`` must call it, once, at the same point.  Unlike the
    launcher's environment variables it works under any launcher (mpiexec, srun, PBS).
    """

    peers = node_peers(comm)
    return peers.index(comm.Get_rank()), len(peers)


def node_local_rank(comm: Any) -> int:
    """This rank's index among the ranks of ``comm`` on the same node (collective)."""
    return node_layout(comm)[0]


def select_gpu(local_rank: int, count: int) -> int:
    """Index of the GPU (among the ``count`` visible ones) for node-local rank ``local_rank``.

    ``STREAMPIPE_GPU`` overrides: one index puts every rank on that GPU, a comma-separated list
    ``0,2`` is dealt out to local ranks in turn.  Indices count *visible* devices, so they are
    relative to ``CUDA_VISIBLE_DEVICES`` when that is set (CUDA renumbers what it leaves visible).
    """
    text = os.environ.get("STREAMPIPE_GPU", "").strip()
    if not text:
        return local_rank % count
    try:
        choices = [int(part) for part in text.split(",")]
    except ValueError:
        raise DeviceError(f"STREAMPIPE_GPU={text!r}: expected a GPU index or a comma-separated "
                          "list such as 0,2") from None
    index = choices[local_rank % len(choices)]
    if not 0 <= index < count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DeviceError(f"STREAMPIPE_GPU={text!r}: GPU {index} does not exist; this process "
                          f"sees {count} GPU(s), indices 0..{count - 1}"
                          + (f" of CUDA_VISIBLE_DEVICES={visible!r}" if visible else ""))
    return index


def resolve_device(device: str, local_rank: int = 0, stage: str = "stage",
                   log: bool = True) -> tuple[str, ModuleType]:
    """Turn ``cpu``/``gpu``/``auto`` into (``"cpu"`` or ``"gpu"``, array module).

    On a GPU the chosen device (:func:`select_gpu`) becomes current for this process.  ``auto``
    without a GPU falls back to NumPy and, when ``log``, prints one line saying so; ``gpu``
    without one raises :class:`DeviceError` naming the stage and the reason.
    """
    if device not in DEVICES:
        raise ValueError(f"stage {stage!r}: device must be one of {', '.join(DEVICES)}, "
                         f"got {device!r}")
    if device == "cpu":
        return "cpu", numpy
    cp, why = _usable_cupy()
    if cp is None:
        if device == "gpu":
            raise DeviceError(f"stage {stage!r} has device = \"gpu\" but no GPU is usable: {why}; "
                              "use device = \"auto\" to fall back to NumPy")
        if log:
            print(f"streampipe: stage {stage!r}: device = \"auto\" found no GPU ({why}), "
                  "running on CPU with NumPy", file=sys.stderr, flush=True)
        return "cpu", numpy
    index = select_gpu(local_rank, cp.cuda.runtime.getDeviceCount())
    cp.cuda.Device(index).use()
    return "gpu", cp


def is_device_array(x: Any) -> bool:
    """Whether ``x`` is a CuPy (or CuPy stand-in) device array."""
    for name in ("cupy", "streampipe.cupy_standin"):
        mod = sys.modules.get(name)
        nd = getattr(mod, "ndarray", None)
        if nd is not None and isinstance(x, nd):
            return True
    return False


def to_host(x: Any) -> Any:
    """A NumPy copy of a CuPy array (anything else is returned as it is)."""
    return x.get() if is_device_array(x) else x


def register_kernel_reference(name: str, fn: Callable[..., Any]) -> None:
    """The NumPy reference the CuPy stand-in runs for the CuPy kernel called ``name``.

    Harmless on real CuPy (the reference is never called there).  Signatures are in
    :mod:`streampipe.cupy_standin._kernels`: elementwise ``fn(*inputs) -> outputs``, reduction
    ``fn(*inputs, axis, keepdims)``, raw ``fn(*args, grid, block, shared_mem)``.
    """
    from .cupy_standin import register_kernel  # noqa: PLC0415 - NumPy only, but rarely needed

    register_kernel(name, fn)


def gpu_local_rank(peers: list[int], rank: int, gpu_ranks: Any) -> int:
    """``rank``'s index among the ranks of ``peers`` (its node) that run GPU stages.

    GPUs are dealt out over these only, so CPU stages sharing the node do not leave GPUs idle
    (node-local rank 3 of 4, the only GPU rank, gets GPU 0).  A rank outside ``gpu_ranks``
    gets its index among all of ``peers``; it never uses it.
    """
    mine = [r for r in peers if r in gpu_ranks]
    return mine.index(rank) if rank in mine else peers.index(rank)


def gpu_node_rank(comm: Any, gpu_ranks: Any) -> int:
    """:func:`gpu_local_rank` of this rank on its node (collective over ``comm``)."""

    return gpu_local_rank(node_peers(comm), comm.Get_rank(), gpu_ranks)


def cuda_aware_mpi() -> bool:
    """Whether the MPI library can send device buffers directly.

    ``STREAMPIPE_CUDA_AWARE=1``/``0`` decides when set (the only way on MPI builds that cannot
    be asked); otherwise mpi4py's ``MPI.Query_cuda_support()`` (MPIX_Query_cuda_support) where
    the library provides it, else False.
    """
    env = os.environ.get("STREAMPIPE_CUDA_AWARE")
    if env is not None and env.strip():
        return _flag("STREAMPIPE_CUDA_AWARE")
    try:
        from mpi4py import MPI  # noqa: PLC0415

        query = getattr(MPI, "Query_cuda_support", None)
        return bool(query()) if query is not None else False
    except Exception:  # noqa: BLE001 - no MPI at all: certainly not CUDA-aware
        return False


# ----------------------------------------------------------------------------- wire path
def _map_arrays(value: Any, kind: type | tuple[type, ...], fn: Callable[[Any], Any]) -> Any:
    """``value`` with every instance of ``kind`` inside dicts/lists/tuples replaced by ``fn(x)``.

    Containers whose contents did not change are returned as they are (no copy); other objects
    (dataclasses, sets, custom classes) are not looked into.
    """
    if isinstance(value, kind):
        return fn(value)
    tv = type(value)
    if tv is dict:
        out = {k: _map_arrays(v, kind, fn) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if tv is list or isinstance(value, tuple):
        items = [_map_arrays(v, kind, fn) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        if tv is list:
            return items
        return tv(*items) if hasattr(value, "_fields") else tv(items)  # namedtuples take *args
    return value


class _Slot:
    """One page-locked allocation and the host array currently lent out of it (if any)."""

    __slots__ = ("mem", "size", "lent")

    def __init__(self, mem: Any, size: int) -> None:
        self.mem, self.size = mem, size
        self.lent: weakref.ref | None = None

    def free(self) -> bool:
        return self.lent is None or self.lent() is None

    def lend(self, nbytes: int) -> numpy.ndarray:
        # A fresh uint8 array per loan whose base is the pinned allocation itself: every view
        # taken of it (dtype view, reshape, pickle buffer, MPI request) keeps *this* array
        # alive, so the weak reference dies exactly when nothing can read the bytes any more.
        arr = numpy.frombuffer(self.mem, numpy.uint8, nbytes)
        self.lent = weakref.ref(arr)
        return arr


class PinnedPool:
    """Page-locked host buffers for device-to-host copies, reused across items.

    A buffer is handed out again only when the array made from it last time is gone (the
    transport dropped it after its send completed), so an item in flight is never overwritten.
    Buffers are sized in powers of two; the pool holds at most ``limit`` bytes and returns None
    when a request would exceed it (the caller then uses ordinary pageable memory).
    """

    def __init__(self, xp: Any, limit: int | None = None, min_size: int = 4096) -> None:
        self.xp, self.min_size = xp, min_size
        self.limit = pinned_limit() if limit is None else limit
        self.slots: list[_Slot] = []
        self.bytes = 0
        self.allocations = 0

    def take(self, nbytes: int) -> numpy.ndarray | None:
        """A writable uint8 array of ``nbytes`` bytes in pinned memory, or None over the limit."""
        fits = [s for s in self.slots if s.size >= nbytes and s.free()]
        if fits:
            return min(fits, key=lambda s: s.size).lend(nbytes)
        size = max(self.min_size, 1 << max(nbytes - 1, 0).bit_length())
        if self.bytes + size > self.limit:
            # give back idle buffers (of the wrong size) before refusing
            idle = [s for s in self.slots if s.free()]
            for s in idle:
                self.slots.remove(s)
                self.bytes -= s.size
            if self.bytes + size > self.limit:
                return None
        slot = _Slot(self.xp.cuda.alloc_pinned_memory(size), size)
        self.slots.append(slot)
        self.bytes += size
        self.allocations += 1
        return slot.lend(nbytes)


class WireCodec:
    """The wire hooks of a GPU stage, in parts the runtime can time separately.

    * ``from_wire(item)``: every numeric NumPy array in the item becomes an ``xp`` array
      (host-to-device staging: *transfer*).
    * ``start()``: the stage's device work on the item begins (a CUDA event on the current
      stream).  ``from_wire`` calls it, so a runtime that does not still times the work.
    * ``sync()``: wait until that work is done (stream synchronise: the kernel time a
      GPU-bound stage spends, *busy*) and add the event-measured time since ``start()`` to
      ``gpu_kernel_s``; returns the seconds the host waited.  A runtime calls it inside the
      item's busy time, before it stamps the item's end.  ``to_wire`` calls it first when the
      runtime has not; that wait is also added to ``gpu_sync_lazy_s``, which the simulator adds
      to the item's service time (the runtime's events missed it).
    * ``to_wire(item)``: every ``xp.ndarray`` in the item (nested dicts/lists/tuples included)
      becomes a NumPy array, through a reused pinned buffer when large (device-to-host staging:
      *transfer*).

    Device arrays never reach the transport: see docs/gpu.md for what a direct (CUDA-aware)
    device-buffer send would change there.  Unpacking a codec gives ``(to_wire, from_wire)``.
    """

    # NumPy kinds CuPy can hold: bool, signed/unsigned int, float, complex
    DEVICE_KINDS = frozenset("biufc")

    def __init__(self, xp: Any, extra: dict[str, Any] | None = None,
                 pinned_limit: int | None = None,
                 pinned_min: int = PINNED_MIN_BYTES) -> None:
        if not _is_cupy(xp):
            raise ValueError(f"WireCodec needs a CuPy-like array module, got {xp!r}")
        self.xp = xp
        self.pool = PinnedPool(xp, pinned_limit)
        self.pinned_min = pinned_min
        self.extra = extra if extra is not None else {}
        self.cuda_aware = cuda_aware_mpi()
        self._synced = True
        self._t_start = xp.cuda.Event()
        self._t_end = xp.cuda.Event()
        self._started = False
        self.extra["gpu_cuda_aware_mpi"] = int(self.cuda_aware)
        self.extra.setdefault("gpu_kernel_s", 0.0)
        self.extra.setdefault("gpu_sync_s", 0.0)
        self.extra.setdefault("gpu_sync_lazy_s", 0.0)
        self.extra.setdefault("gpu_items_timed", 0)

    def __iter__(self) -> Any:
        return iter((self.to_wire, self.from_wire))

    def start(self) -> None:
        """The stage's device work on an item begins now (on the current stream)."""
        self._t_start.record()
        self._started = True
        self._synced = False

    def sync(self, lazy: bool = False) -> float:
        """Wait for the item's device work; fold its event time into ``gpu_kernel_s``
        (``lazy``: called by ``to_wire``, outside the runtime's timing of the item)."""
        t0 = time.perf_counter()
        stream = self.xp.cuda.get_current_stream()
        if self._started:
            self._t_end.record()
            self._t_end.synchronize()
        stream.synchronize()
        waited = time.perf_counter() - t0
        ex = self.extra
        if self._started:
            ex["gpu_kernel_s"] += self.xp.cuda.get_elapsed_time(self._t_start, self._t_end) / 1e3
            ex["gpu_items_timed"] += 1
            self._started = False
        ex["gpu_sync_s"] += waited
        if lazy:
            ex["gpu_sync_lazy_s"] += waited
        self._synced = True
        return waited

    def to_wire(self, value: Any) -> Any:
        """``value`` with device arrays replaced by host (NumPy) copies."""
        if not self._synced:
            self.sync(lazy=True)
        out = _map_arrays(value, self.xp.ndarray, self._download)
        self._record()
        return out

    def from_wire(self, value: Any) -> Any:
        """``value`` with numeric NumPy arrays replaced by device arrays; starts the timing."""
        out = _map_arrays(value, numpy.ndarray, self._upload)
        self._record()
        self.start()
        return out

    def _download(self, dev: Any) -> numpy.ndarray:
        if not self._synced:
            self.sync(lazy=True)  # kernels on the producing stream must be done before reads
        if not dev.flags.c_contiguous:
            dev = self.xp.ascontiguousarray(dev)
        nbytes = int(dev.nbytes)
        buf = self.pool.take(nbytes) if nbytes >= self.pinned_min else None
        if buf is None:
            return dev.get()
        host = buf.view(dev.dtype).reshape(dev.shape)
        dev.get(out=host)
        return host

    def _upload(self, host: numpy.ndarray) -> Any:
        if host.dtype.kind not in self.DEVICE_KINDS:
            return host  # strings, objects, datetimes stay on the host
        return self.xp.asarray(host)

    def _record(self) -> None:
        record_gpu_memory(self.extra, self.xp)
        self.extra["gpu_pinned_bytes"] = self.pool.bytes


def wire_hooks(ctx: Any) -> WireCodec:
    """The :class:`WireCodec` of a GPU stage (``to_wire``, ``from_wire``, ``start``, ``sync``).

    When the context belongs to a running rank, the codec keeps ``gpu_peak_bytes``,
    ``gpu_pinned_bytes``, ``gpu_kernel_s``, ``gpu_sync_s`` and ``gpu_items_timed`` up to date in
    that rank's metrics (``Recorder.extra``, stored in the run file's ``/ranks/{r}``).
    ``to_wire, from_wire = wire_hooks(ctx)`` still works.
    """
    recorder = getattr(getattr(ctx, "_runtime", None), "m", None)
    return WireCodec(ctx.xp, getattr(recorder, "extra", None))


# ----------------------------------------------------------------------------- memory
def _is_cupy(xp: Any) -> bool:
    return hasattr(xp, "cuda")


def available_bytes(xp: Any = numpy) -> int:
    """Memory a stage on ``xp`` could still use: free device memory plus what CuPy's pool holds
    unused (on a GPU), or available physical memory (on the host)."""
    if _is_cupy(xp):
        free, _total = xp.cuda.runtime.memGetInfo()
        return int(free) + int(xp.get_default_memory_pool().free_bytes())
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        raise ValueError("budget_bytes: must be given on this platform (available memory is "
                         "unknown)") from None


def batch_rows_for_budget(bytes_per_row: int, budget_bytes: int | None, xp: Any = numpy,
                          fraction: float = 0.5) -> int:
    """How many rows of ``bytes_per_row`` working set fit in ``budget_bytes`` (at least 1).

    ``budget_bytes=None`` takes ``fraction`` of :func:`available_bytes` on ``xp`` (the rest is
    headroom for the pool's rounding, library workspaces and items in flight).
    """
    if not bytes_per_row > 0:
        raise ValueError(f"bytes_per_row: must be > 0, got {bytes_per_row}")
    if budget_bytes is None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction: must be in (0, 1], got {fraction}")
        budget_bytes = int(fraction * available_bytes(xp))
    elif not budget_bytes > 0:
        raise ValueError(f"budget_bytes: must be > 0, got {budget_bytes}")
    rows = int(budget_bytes // bytes_per_row)
    if rows < 1:
        raise ValueError(f"budget_bytes: {budget_bytes} bytes is below one row "
                         f"({bytes_per_row} bytes)")
    return rows


def record_gpu_memory(extra: dict[str, Any], xp: Any) -> int:
    """Fold the size of CuPy's default memory pool into ``extra["gpu_peak_bytes"]``.

    The pool keeps freed blocks cached, so its size right after an item is at least the item's
    peak use; the maximum over samples is the stage's high-water mark (memory outside the pool,
    e.g. cuBLAS workspaces or cuFFT plans, is not counted).
    """
    total = int(xp.get_default_memory_pool().total_bytes())
    peak = max(int(extra.get("gpu_peak_bytes", 0)), total)
    extra["gpu_peak_bytes"] = peak
    return peak
