"""A strict CuPy stand-in: GPU code paths on machines without a GPU, failing where CuPy fails.

It is a ``cupy`` module (``import streampipe.cupy_standin as cp``, or installed as ``cupy`` by
:func:`install`; ``STREAMPIPE_CUPY_STANDIN=strict`` makes ``streampipe.gpu`` do that for every
rank) whose arrays live in private NumPy buffers and follow CuPy's rules for host data: no
implicit conversion to NumPy, no host arrays mixed into device ops, ``.get()`` and
``cupy.asnumpy`` to come home, device scalars from reductions, CuPy's ``__bool__``.  Streams,
events, the memory pool and pinned memory are modelled closely enough that a data race between
streams, an event read before it completed or a working set over the device's memory fail here
(see :mod:`._core`, :mod:`._array`, :mod:`.cuda`).  User kernels (``ElementwiseKernel``,
``ReductionKernel``, ``RawKernel``/``RawModule``) run through a NumPy reference registered with
:func:`register_kernel`, or by interpreting simple elementwise code (:mod:`._kernels`).

Environment: ``STREAMPIPE_CUPY_STANDIN_DEVICES`` (GPUs, default 1),
``STREAMPIPE_CUPY_STANDIN_MEMORY`` (bytes per GPU, default 16 GiB).  ``stats()`` counts copies,
synchronisations, launches and implicit device-to-host conversions.

What it cannot tell: speed, CUDA's own rounding (NVRTC contracts ``a*b + c`` into FMAs, CUDA's
``exp``/``log`` differ from NumPy's by an ulp or so), and anything a kernel's reference does not
reproduce.  Equality tests against the CPU path are exact here; on a GPU they need the
tolerance the test states.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy

from . import _core, cuda
from ._array import (
    UFUNCS,
    array,
    asarray,
    ascontiguousarray,
    asnumpy,
    is_device_array,
    like,
    make_ufuncs,
    ndarray,
    op,
    ufunc,
)
from ._core import DeviceSynchronized, OutOfMemoryError, RaceError, configure
from ._kernels import (
    CUDADriverError,
    ElementwiseKernel,
    RawKernel,
    RawModule,
    ReductionKernel,
    register_kernel,
    registered_kernels,
)

__version__ = "0.0.0+streampipe.standin"
STANDIN = True  # what streampipe.gpu looks for to tell the stand-in from CuPy

_UFUNC_NAMES = """abs absolute acos acosh add arccos arccosh arcsin arcsinh arctan arctan2 arctanh
asin asinh atan atan2 atanh bitwise_and bitwise_count bitwise_invert bitwise_left_shift
bitwise_not bitwise_or bitwise_right_shift bitwise_xor cbrt ceil conj conjugate copysign cos
cosh deg2rad degrees divide divmod equal exp exp2 expm1 fabs float_power floor floor_divide fmax
fmin fmod frexp gcd greater greater_equal heaviside hypot invert isfinite isinf isnan lcm ldexp
left_shift less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not
logical_or logical_xor matmul maximum minimum mod modf multiply negative nextafter not_equal
positive pow power rad2deg radians reciprocal remainder right_shift rint sign signbit sin sinh
sqrt square subtract tan tanh true_divide trunc""".split()

# NumPy functions CuPy has under the same name (from cupy/__init__.py), run as device ops.
_FUNCTION_NAMES = """all allclose amax amin angle any append arange argmax argmin argpartition
argsort argwhere around array_equal array_equiv array_split atleast_1d atleast_2d atleast_3d
average bartlett bincount blackman broadcast_arrays broadcast_to can_cast choose clip
column_stack common_type compress concat concatenate convolve corrcoef correlate count_nonzero
cov cross cumprod cumsum cumulative_prod cumulative_sum delete diag diag_indices
diag_indices_from diagflat diagonal diff digitize dot dsplit dstack ediff1d einsum empty expand_dims
extract eye fix flatnonzero flip fliplr flipud full gradient hamming hanning histogram
histogram2d histogramdd hsplit hstack i0 identity imag indices inner interp intersect1d isclose
iscomplex iscomplexobj isfortran isin isneginf isposinf isreal isrealobj isscalar ix_ kaiser kron
lexsort linspace logspace mask_indices matrix_transpose max may_share_memory mean median meshgrid
min min_scalar_type moveaxis nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean
nanmedian nanmin nanprod nanstd nansum nanvar ndim nonzero ones outer packbits pad partition
percentile permute_dims prod ptp quantile ravel ravel_multi_index real real_if_close repeat
reshape resize result_type roll rollaxis rot90 round row_stack searchsorted select setdiff1d
setxor1d shape shares_memory sinc size sort sort_complex split squeeze stack std sum swapaxes
take take_along_axis tensordot tile trace transpose trapezoid tri tril tril_indices
tril_indices_from trim_zeros triu triu_indices triu_indices_from union1d unique unique_all
unique_counts unique_inverse unique_values unpackbits unravel_index unwrap vander var vdot vsplit
vstack where zeros""".split()
# these only look at shapes, dtypes or strides, or return views: no data is read
_METADATA = frozenset("""atleast_1d atleast_2d atleast_3d broadcast_arrays broadcast_to can_cast
common_type diagonal dsplit expand_dims flip fliplr flipud hsplit imag iscomplexobj isfortran
isrealobj isscalar matrix_transpose may_share_memory min_scalar_type moveaxis ndim permute_dims
ravel real reshape result_type rollaxis rot90 shape shares_memory size split array_split squeeze
swapaxes transpose vsplit""".split())
_INPLACE = ("copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis")
_LIKE = ("empty_like", "zeros_like", "ones_like", "full_like")
_LINALG = """norm solve inv det slogdet cholesky qr eigh eigvalsh svd lstsq matrix_power pinv
matrix_rank tensorsolve tensorinv multi_dot""".split()
_FFT = """fft ifft rfft irfft hfft ihfft fft2 ifft2 rfft2 irfft2 fftn ifftn rfftn irfftn fftfreq
rfftfreq fftshift ifftshift""".split()
_TYPES = """bool_ bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 intp uintp byte ubyte
short ushort intc uintc int_ uint longlong ulonglong half single double float16 float32 float64
csingle cdouble complex64 complex128 number integer signedinteger unsignedinteger inexact floating
complexfloating generic dtype finfo iinfo issubdtype""".split()
_CONSTANTS = ("pi", "e", "inf", "nan", "newaxis", "euler_gamma")

globals().update(make_ufuncs(_UFUNC_NAMES))


def _function(name: str, fn: Callable[..., Any], metadata: bool = False) -> Callable[..., Any]:
    def f(*args: Any, **kwargs: Any) -> Any:
        return op(fn, args, kwargs, f"cupy.{name}", check_reads=not metadata)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"``cupy.{name}`` on the stand-in (NumPy's {name}, device arrays only)."
    return f


def _inplace(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def f(dst: Any, *args: Any, **kwargs: Any) -> None:
        from ._array import _Op

        if not isinstance(dst, ndarray):
            raise TypeError(f"Argument 'a' has incorrect type (expected cupy._core.core."
                            f"_ndarray_base, got {type(dst).__name__})")
        o = _Op()
        o.writes.append(dst._mem)
        o.run(fn, (dst._a, *(o.arg(a) for a in args)), {k: o.arg(v) for k, v in kwargs.items()},
              f"cupy.{name}")
    f.__name__ = name
    return f


for _name in _FUNCTION_NAMES:
    if _name not in globals() and hasattr(numpy, _name):
        globals()[_name] = _function(_name, getattr(numpy, _name), _name in _METADATA)
for _name in _INPLACE:
    globals()[_name] = _inplace(_name, getattr(numpy, _name))
for _name in _LIKE:
    globals()[_name] = like(getattr(numpy, _name), _name)
for _name in _TYPES + list(_CONSTANTS):
    if hasattr(numpy, _name):
        globals()[_name] = getattr(numpy, _name)
amax, amin = globals()["max"], globals()["min"]
asanyarray = asarray


def asfortranarray(a: Any, dtype: Any = None) -> ndarray:
    return op(lambda x: numpy.asfortranarray(x, dtype=dtype), (a,), what="cupy.asfortranarray")


def copy(a: Any, order: str = "K") -> Any:
    return a.copy(order=order)


def _submodule(name: str, source: Any, names: list[str]) -> types.ModuleType:
    mod = types.ModuleType(f"cupy.{name}", f"``cupy.{name}`` of the stand-in.")
    for n in names:
        if hasattr(source, n):
            setattr(mod, n, _function(f"{name}.{n}", getattr(source, n)))
    return mod


linalg = _submodule("linalg", numpy.linalg, _LINALG)
fft = _submodule("fft", numpy.fft, _FFT)
from . import random, testing  # noqa: E402  - they use the namespace above

_MEMORY_POOL = cuda.MemoryPool()
_PINNED_POOL = cuda.PinnedMemoryPool()


def get_default_memory_pool() -> cuda.MemoryPool:
    return _MEMORY_POOL


def get_default_pinned_memory_pool() -> cuda.PinnedMemoryPool:
    return _PINNED_POOL


def get_array_module(*args: Any) -> types.ModuleType:
    """This module when any argument is a stand-in device array, else NumPy."""
    # builtins.any: this module's own `any` is cupy.any
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) \
        else numpy


def is_available() -> bool:
    return True


def fuse(*args: Any, **kwargs: Any) -> Any:
    """``cupy.fuse``: kernel fusion is an optimisation, so the stand-in runs the function."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


def _namespace_function(func: Any) -> Callable[..., Any] | None:
    """The stand-in's version of the NumPy function ``func`` (for ``__array_function__``)."""
    mod = getattr(func, "__module__", "") or ""
    space: Any = {"numpy": sys.modules[__name__], "numpy.linalg": linalg,
                  "numpy.fft": fft}.get(mod)
    impl = getattr(space, getattr(func, "__name__", ""), None) if space is not None else None
    return None if impl is None or impl is func or not callable(impl) else impl


# ----------------------------------------------------------------------------- cupyx
cupyx = types.ModuleType("cupyx", "``cupyx`` of the stand-in: pinned arrays, sync detection.")


def _pinned_array(fill: Any) -> Callable[..., numpy.ndarray]:
    def make(shape: Any, dtype: Any = float, order: str = "C") -> numpy.ndarray:
        dt = numpy.dtype(dtype)
        n = int(numpy.prod(shape)) * dt.itemsize
        mem = cuda.alloc_pinned_memory(n)
        out = numpy.frombuffer(mem, dt, int(numpy.prod(shape))).reshape(shape, order=order)
        if fill is not None:
            out[...] = fill
        return out
    return make


@contextlib.contextmanager
def allow_synchronize(allow: bool) -> Iterator[None]:
    """``cupyx.allow_synchronize(False)``: any device synchronisation raises
    :class:`DeviceSynchronized` (``.get()``, ``float(d)``, ``stream.synchronize()``, ...)."""
    st = _core.state()
    prev, st.allow_sync = st.allow_sync, bool(allow)
    try:
        yield
    finally:
        st.allow_sync = prev


cupyx.empty_pinned = _pinned_array(None)
cupyx.zeros_pinned = _pinned_array(0)
cupyx.allow_synchronize = allow_synchronize
cupyx.DeviceSynchronized = DeviceSynchronized


# ----------------------------------------------------------------------------- controls
def stats() -> dict[str, Any]:
    """Counters since the last :func:`reset_stats`, and each device's pool (used, total)."""
    st = _core.state()
    return {**_core.STATS, "pools": [(d.pool.used, d.pool.total) for d in st.devices]}


reset_stats = _core.reset_stats


def install() -> types.ModuleType:
    """Make ``import cupy`` (and ``cupy.cuda``, ``cupy.testing``, ``cupyx``, ...) give the
    stand-in in this process; returns it.  :func:`uninstall` undoes it."""
    me = sys.modules[__name__]
    mods = {"cupy": me, "cupy.cuda": cuda, "cupy.testing": testing, "cupy.linalg": linalg,
            "cupy.fft": fft, "cupy.random": random, "cupyx": cupyx}
    mods.update({f"cupy.cuda.{k}": v for k, v in cuda.SUBMODULES.items()})
    saved = getattr(me, "_saved", None)
    if saved is None:
        me._saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    return me


def uninstall() -> None:
    """Give ``import cupy`` back what it was before :func:`install`."""
    me = sys.modules[__name__]
    saved = getattr(me, "_saved", None)
    if saved is None:
        return
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v
    me._saved = None


__all__ = ["ndarray", "ufunc", "array", "asarray", "asnumpy", "ascontiguousarray",
           "get_array_module", "ElementwiseKernel", "ReductionKernel", "RawKernel", "RawModule",
           "register_kernel", "registered_kernels", "cuda", "testing", "random", "linalg", "fft",
           "cupyx", "configure", "stats", "reset_stats", "install", "uninstall",
           "OutOfMemoryError", "RaceError", "DeviceSynchronized", "CUDADriverError",
           "is_device_array", "UFUNCS", *_UFUNC_NAMES]
