"""The strict CuPy stand-in refuses what CuPy refuses, with CuPy's exception and message.

Each rule cites where CuPy implements it (cupy/cupy, ``cupy/_core/core.pyx`` unless said
otherwise), so a test here fails exactly where code would fail on a GPU.  Where the stand-in is
deliberately stricter than CuPy (raw-kernel argument types, stream races), CuPy would compute a
wrong answer silently; those tests say so.
"""

from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest

from streampipe import cupy_standin as cp
from streampipe import gpu


@pytest.fixture(autouse=True)
def fresh():
    cp.configure(devices=2, memory=1 << 20)
    yield


# ----------------------------------------------------------------------------- host data


@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda d: d.__array__(),
                                     lambda d: np.ascontiguousarray(d)])
def test_no_implicit_conversion_to_numpy(convert):
    # ndarray.__array__ raises (core.pyx, "Implicit conversion to a NumPy array ...")
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed\. "
                                        r"Please use `\.get\(\)`"):
        convert(cp.arange(3))


@pytest.mark.parametrize("mix", [
    lambda d, h: d + h, lambda d, h: h + d, lambda d, h: d * h[0:1], lambda d, h: d - np.array(1.),
    lambda d, h: cp.exp(h), lambda d, h: cp.where(d > 0, d, h), lambda d, h: cp.concatenate([d, h]),
    lambda d, h: np.concatenate([d, h]), lambda d, h: np.add(h, d), lambda d, h: d.__iadd__(h),
    lambda d, h: cp.maximum(d, [1.0, 2.0, 3.0]),
])
def test_host_arrays_in_device_ops_are_refused(mix):
    # _scalar.pyx CScalar: anything not a device array or a Python/NumPy scalar is
    # "Unsupported type" (0-d NumPy arrays and lists included)
    with pytest.raises(TypeError, match=r"Unsupported type <class '(numpy\.ndarray|list)'>"):
        mix(cp.arange(3.0), np.ones(3))


def test_scalars_and_0d_comparisons_are_fine():
    d = cp.arange(3.0)
    assert isinstance(d * 2 + np.float64(1) - True, cp.ndarray)
    # __richcmp__ turns a 0-d NumPy operand into a scalar; == None is all False
    assert (d == np.array(1.0)).get().tolist() == [False, True, False]
    assert not bool((d == None).any())  # noqa: E711 - the comparison under test


def test_out_must_be_a_device_array():
    with pytest.raises(TypeError, match="Output arguments type must be cupy.ndarray"):
        cp.add(cp.ones(2), 1, out=np.empty(2))


def test_assignment_from_host():
    d = cp.zeros(3)
    # a basic index fills with a scalar (fill(): "non-scalar numpy.ndarray cannot be used ...")
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        d[:] = np.ones(3)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        d[...] = [1, 2, 3]
    d[:] = 5.0
    # an integer-array index copies the values to the device (_scatter_op_single)
    d[np.array([0, 2])] = np.array([1.0, 3.0])
    assert d.get().tolist() == [1.0, 5.0, 3.0]
    assert d[np.array([2, 0])].get().tolist() == [3.0, 1.0]  # NumPy index arrays are fine


# ----------------------------------------------------------------------------- scalars


def test_reductions_and_indexing_give_device_scalars():
    d = cp.arange(6.0).reshape(2, 3)
    for x in (d.sum(), d.max(), np.sum(d), d[1, 2], cp.dot(d[0], d[1])):
        assert isinstance(x, cp.ndarray) and x.shape == ()
    assert float(d[1, 2]) == 5.0


def test_python_scalar_conversions_follow_cupy():
    cp.reset_stats()
    assert float(cp.asarray(2.5)) == 2.5 and int(cp.asarray(7)) == 7  # float(self.get())
    assert complex(cp.asarray(1j)) == 1j
    assert cp.stats()["implicit_syncs"] == 3  # each one a synchronising copy
    with pytest.raises(TypeError, match="only 0-dimensional arrays"):  # NumPy's rule on .get()
        float(cp.ones(1))
    # __nonzero__: size 1 -> its truth, more -> ValueError, empty -> False with a warning
    assert bool(cp.ones(1)) is True and bool(cp.asarray(0)) is False
    with pytest.raises(ValueError, match="more than one element is ambiguous"):
        bool(cp.ones(2))
    with pytest.warns(DeprecationWarning, match="empty array is ambiguous"):
        assert bool(cp.ones(0)) is False


def test_no_index_protocol():
    # ndarray has no __index__: a device scalar cannot index a list or size a range
    n = cp.asarray(3)
    with pytest.raises(TypeError):
        range(n)
    with pytest.raises(TypeError):
        [1, 2, 3, 4][n]
    with pytest.raises(TypeError, match="len\\(\\) of unsized object"):
        len(n)
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        iter(n)


# ----------------------------------------------------------------------------- NumPy dispatch


def test_numpy_functions_and_ufuncs_dispatch_to_the_device():
    d = cp.arange(4.0)
    for x in (np.exp(d), np.sum(d), np.concatenate([d, d]), np.where(d > 1, d, 0.0),
              np.maximum(d, 2.0), np.linalg.norm(d)):
        assert isinstance(x, cp.ndarray)
    # a function CuPy lacks: __array_function__ returns NotImplemented, NumPy raises
    with pytest.raises(TypeError, match="no implementation found for 'numpy.polyval'"):
        np.polyval(d, 2.0)


def test_moving_data_explicitly():
    h = np.arange(5.0)
    d = cp.asarray(h)
    assert cp.asarray(d) is d and cp.array(d) is not d
    assert type(d.get()) is np.ndarray and np.array_equal(cp.asnumpy(d), h)
    assert cp.asnumpy(h) is h  # host data passes through
    with pytest.raises(TypeError, match=r"float32 array cannot be obtained from float64 array"):
        d.get(out=np.empty(5, np.float32))
    with pytest.raises(ValueError, match=r"Shape mismatch"):
        d.get(out=np.empty(4))
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.asarray(np.array(["a"]))
    back = pickle.loads(pickle.dumps(d))  # __reduce__ -> array(host copy): a device array again
    assert isinstance(back, cp.ndarray) and np.array_equal(back.get(), h)
    assert cp.get_array_module(d, h) is cp and cp.get_array_module(h) is np


# ----------------------------------------------------------------------------- memory


def test_memory_pool_counts_allocations_and_runs_out_like_cupy():
    pool = cp.get_default_memory_pool()
    a = cp.zeros(1000)  # 8000 bytes -> 8192 (512-byte units)
    assert pool.used_bytes() == 8192 and pool.total_bytes() == 8192
    v = a[::2]  # a view allocates nothing
    assert pool.used_bytes() == 8192
    del a, v
    assert pool.used_bytes() == 0 and pool.total_bytes() == 8192  # cached, as CuPy's pool
    pool.free_all_blocks()
    assert pool.total_bytes() == 0
    with pytest.raises(cp.OutOfMemoryError, match=r"Out of memory allocating 2,097,152 bytes "
                                                  r"\(allocated so far: 0 bytes\)\."):
        cp.empty(1 << 18)  # 2 MiB on a 1 MiB device
    pool.set_limit(size=4096)
    with pytest.raises(cp.OutOfMemoryError, match="limit set to: 4,096 bytes"):
        cp.empty(1024)


# ----------------------------------------------------------------------------- streams, events


def test_a_read_racing_a_non_blocking_stream_is_refused():
    """Stricter than CuPy, which would read whatever is in memory at that moment."""
    side = cp.cuda.Stream(non_blocking=True)
    with side:
        y = cp.arange(4.0) * 2
    with pytest.raises(cp.RaceError, match="non-blocking stream .* is read by cupy.add on the "
                                          "null stream"):
        y + 1
    ev = side.record()
    cp.cuda.Stream.null.wait_event(ev)  # orders the null stream after the side stream's work
    assert (y + 1).get().tolist() == [1.0, 3.0, 5.0, 7.0]


def test_blocking_streams_are_ordered_with_the_null_stream():
    s = cp.cuda.Stream()  # blocking: the legacy default stream synchronises with it
    with s:
        y = cp.arange(3.0) + 1
    assert (y * 2).get().tolist() == [2.0, 4.0, 6.0]


def test_async_copies_land_at_the_synchronisation():
    d = cp.arange(3.0)
    host = cp.cupyx.zeros_pinned(3)
    d.get(out=host, blocking=False)
    assert host.tolist() == [0.0, 0.0, 0.0]  # not there yet: nothing was synchronised
    cp.cuda.get_current_stream().synchronize()
    assert host.tolist() == [0.0, 1.0, 2.0]


def test_event_timing_needs_completed_events():
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    cp.sqrt(cp.arange(1000.0))
    end.record()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorNotReady"):
        cp.cuda.get_elapsed_time(start, end)  # the kernel may still be running
    end.synchronize()
    assert cp.cuda.get_elapsed_time(start, end) > 0
    untimed = cp.cuda.Event(disable_timing=True)
    untimed.record()
    untimed.synchronize()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorInvalidResourceHandle"):
        cp.cuda.get_elapsed_time(start, untimed)


def test_simulated_kernel_time_is_paid_at_the_synchronisation():
    import time

    cp.configure(kernel_us=20_000)  # every kernel: 20 ms of device time, asynchronously
    start, end = cp.cuda.Event(), cp.cuda.Event()
    t0 = time.perf_counter()
    start.record()
    y = cp.sqrt(cp.arange(10.0) + 1)  # three kernels: launched, not waited for
    end.record()
    launched = time.perf_counter() - t0
    assert not end.done
    y.get()  # a blocking copy waits for the stream
    waited = time.perf_counter() - t0
    end.synchronize()
    assert launched < 0.02 and waited >= 0.06
    assert 60 <= cp.cuda.get_elapsed_time(start, end) < 60 + 1e3 * launched + 5


def test_devices():
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="invalid device ordinal"):
        cp.cuda.Device(2).use()
    with cp.cuda.Device(1):
        d = cp.ones(2)
        assert d.device.id == 1
    # _kernel.pyx _check_peer_access: an array of another device, without peer access
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device"):
        d + 1
    with cp.cuda.Device(1):
        assert (d + 1).get().tolist() == [2.0, 2.0]


def test_allow_synchronize_false_refuses_syncs():
    d = cp.ones(2)
    with cp.cupyx.allow_synchronize(False), pytest.raises(cp.DeviceSynchronized):
        d.get()


# ----------------------------------------------------------------------------- kernels


def test_elementwise_kernel_is_interpreted_and_checked_like_cupy():
    k = cp.ElementwiseKernel("float64 x, T y", "T z",
                             "z = x > 1.0 ? (T)(x * y) : y / 2", "demo_kernel")
    out = k(cp.arange(4.0), cp.full(4, 3.0))
    assert out.get().tolist() == [1.5, 1.5, 6.0, 9.0]
    # _kernel.pyx: typed parameters take exactly their dtype; host arrays are unsupported
    with pytest.raises(TypeError, match="Type is mismatched. x <class 'numpy.float32'>"):
        k(cp.arange(4, dtype=cp.float32), cp.ones(4))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        k(cp.arange(4.0), np.ones(4))
    with pytest.raises(TypeError, match="Wrong number of arguments for 'demo_kernel'"):
        k(cp.arange(4.0))
    with pytest.raises(ValueError, match="Loop size is undecided"):
        k(1.0, 2.0)


def test_kernels_without_a_reference_say_how_to_register_one():
    loop = cp.ElementwiseKernel("float64 x", "float64 y",
                                "if (x > 0) { y = x; } else { y = 0; }", "needs_ref")
    with pytest.raises(NotImplementedError, match=r"register_kernel_reference\('needs_ref'"):
        loop(cp.ones(2))
    gpu.register_kernel_reference("needs_ref", lambda x: np.maximum(x, 0))
    assert loop(cp.asarray([-1.0, 2.0])).get().tolist() == [0.0, 2.0]


def test_reduction_kernel_is_interpreted():
    k = cp.ReductionKernel("T x", "T y", "x * x", "a + b", "y = sqrt(a)", "0", "l2norm_demo")
    x = cp.arange(12.0).reshape(3, 4)
    assert np.allclose(k(x, axis=1).get(), np.sqrt((np.arange(12.0).reshape(3, 4) ** 2)
                                                     .sum(axis=1)))


RAW = r"""
extern "C" __global__ void raw_demo(const double* x, double* y, const int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2 * x[i];
}
"""


def test_raw_kernel_arguments_are_checked_against_its_signature():
    def ref(x, y, n, *, grid, block, shared_mem):
        y[:n] = 2 * x[:n]

    gpu.register_kernel_reference("raw_demo", ref)
    k = cp.RawModule(code=RAW).get_function("raw_demo")
    x, y = cp.arange(4.0), cp.zeros(4)
    k((1,), (4,), (x, y, np.int32(4)))
    assert y.get().tolist() == [0.0, 2.0, 4.0, 6.0]
    # function.pyx _pointer: a NumPy array of size > 1 cannot be passed by value
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one can be passed by value"):
        k((1,), (4,), (np.arange(4.0), y, np.int32(4)))
    # stricter than CuPy, where each of these silently computes garbage:
    with pytest.raises(TypeError, match="parameter is int32 but got a Python int, which CuPy "
                                        "passes as int64"):
        k((1,), (4,), (x, y, 4))
    with pytest.raises(TypeError, match="the pointer is to float64 but the array is float32"):
        k((1,), (4,), (x.astype(cp.float32), y, np.int32(4)))
    with pytest.raises(ValueError, match="not C-contiguous"):
        k((1,), (4,), (cp.arange(8.0)[::2], y, np.int32(4)))
    with pytest.raises(cp.CUDADriverError, match="named symbol not found"):
        cp.RawModule(code=RAW).get_function("missing")


# ----------------------------------------------------------------------------- testing, install


def test_numpy_cupy_allclose_catches_a_host_fallback():
    @cp.testing.numpy_cupy_allclose(rtol=1e-12)
    def good(xp):
        return xp.sqrt(xp.arange(5.0))

    @cp.testing.numpy_cupy_allclose()
    def falls_back_to_the_host(xp):
        return np.sqrt(np.arange(5.0))

    good()
    with pytest.raises(AssertionError, match="different type of return value"):
        falls_back_to_the_host()


def test_random_numbers_differ_from_numpy_like_cupys_do():
    a = cp.random.default_rng(1).standard_normal(4).get()
    assert not np.allclose(a, np.random.default_rng(1).standard_normal(4))


def test_switched_on_by_environment(monkeypatch):
    monkeypatch.setenv("STREAMPIPE_CUPY_STANDIN", "strict")
    gpu._probe.cache_clear()
    try:
        assert gpu.resolve_device("gpu", stage="s") == ("gpu", cp)
        import cupy

        assert cupy is cp and sys.modules["cupy.cuda.runtime"] is cp.cuda.runtime
        monkeypatch.setenv("STREAMPIPE_CUPY_STANDIN", "lenient")
        with pytest.raises(ValueError, match="STREAMPIPE_CUPY_STANDIN='lenient': expected strict"):
            gpu.standin_mode()
    finally:
        gpu._probe.cache_clear()
        cp.uninstall()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.delenv("STREAMPIPE_CUPY_STANDIN")
        assert gpu.standin_mode() is None
