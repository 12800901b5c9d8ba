"""The stand-in's ``ndarray``, ufuncs and array functions, with CuPy's rules for host data.

A device array holds a private NumPy buffer that only the stand-in touches.  The rules, each
taken from CuPy's source (``cupy/_core/core.pyx``, ``_kernel.pyx``, ``_scalar.pyx``,
``_routines_indexing.pyx``):

* ``numpy.asarray(d)`` / ``numpy.array(d)`` / ``d.__array__()``: ``TypeError`` ("Implicit
  conversion to a NumPy array is not allowed. Please use `.get()` ...").
* an op mixing a device array with a NumPy array (any shape, 0-d included) or a list:
  ``TypeError("Unsupported type <class 'numpy.ndarray'>")``; Python and NumPy scalars are fine.
  Comparisons alone take a 0-d NumPy array (CuPy turns it into a scalar).
* NumPy functions and ufuncs called on device arrays dispatch here (``__array_function__``,
  ``__array_ufunc__``) and return device arrays, as CuPy's do; a function CuPy lacks raises
  NumPy's "no implementation found" ``TypeError``.
* ``float(d)``, ``int(d)``, ``complex(d)``: the value of a 0-d array (a synchronising copy, as in
  CuPy; NumPy's ``TypeError`` for other shapes).  ``bool(d)``: size 1 gives its truth,
  size 0 ``False`` with a ``DeprecationWarning``, larger ``ValueError`` (CuPy's own rule).  There
  is no ``__index__``: a device scalar cannot index a list or size a ``range``.
* reductions and full integer indexing give 0-d device arrays, never host scalars.
* ``d[idx] = numpy_array`` is refused for basic indices ("non-scalar numpy.ndarray cannot be
  used for fill") and copies to the device for integer-array indices; NumPy index arrays are
  accepted.
* ``out=`` must be a device array ("Output arguments type must be cupy.ndarray").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy

from . import _core
from ._core import count

PY_SCALARS = (int, float, bool, complex)
SCALARS = (*PY_SCALARS, numpy.generic)
_COMPARISONS = frozenset({"greater", "greater_equal", "less", "less_equal", "equal",
                          "not_equal"})
DEVICE_KINDS = frozenset("biufc")


def _unsupported(x: Any) -> TypeError:
    return TypeError(f"Unsupported type {type(x)}")


class _Op:
    """Unwraps the arguments of one op, checking CuPy's rules, and wraps its results."""

    __slots__ = ("reads", "writes", "check_reads")

    def __init__(self, check_reads: bool = True) -> None:
        self.reads: list[_core.Alloc] = []
        self.writes: list[_core.Alloc] = []
        self.check_reads = check_reads

    def arg(self, x: Any, strict: bool = False) -> Any:
        if isinstance(x, ndarray):
            self.reads.append(x._mem)
            return x._a
        if isinstance(x, numpy.ndarray):
            raise _unsupported(x)
        if strict:
            if type(x) in PY_SCALARS or isinstance(x, numpy.generic) or x is None:
                return x
            raise _unsupported(x)
        if type(x) in (list, tuple):
            return type(x)(self.arg(v) for v in x)
        return x

    def out(self, x: Any) -> Any:
        if x is None:
            return None
        if isinstance(x, tuple):
            return tuple(self.out(v) for v in x)
        if not isinstance(x, ndarray):
            raise TypeError("Output arguments type must be cupy.ndarray")
        self.writes.append(x._mem)
        return x._a

    def run(self, fn: Callable[..., Any], args: tuple, kwargs: dict, what: str) -> Any:
        st = _core.state()
        for alloc in self.reads + self.writes:
            _core.check_device(alloc.device)
            if self.check_reads:
                _core.read(alloc, what)
        stream = st.current_stream()
        seq = stream.issue()
        count("launches")
        res = fn(*args, **kwargs)
        if self.check_reads:  # a kernel ran (views and metadata launch none)
            stream.launch(st.kernel_delay)
        for alloc in self.writes:
            _core.write(alloc, seq)
        return wrap_result(res, seq)


def wrap_result(res: Any, seq: int) -> Any:
    if isinstance(res, numpy.ndarray):
        return _wrap(res, seq)
    if isinstance(res, numpy.generic):
        return _wrap(numpy.asarray(res), seq)
    if type(res) in (tuple, list):
        return type(res)(wrap_result(r, seq) for r in res)
    return res


def _wrap(a: numpy.ndarray, seq: int | None = None) -> ndarray:
    """A device array around ``a``: a view of an existing allocation, or a new one."""
    if a.dtype.kind not in DEVICE_KINDS:
        raise ValueError(f"Unsupported dtype {a.dtype}")
    d = ndarray.__new__(ndarray)
    d._a = a
    mem = _core.find_alloc(a)
    if mem is None:
        mem = _core.allocate(_core.root_of(a))
        if seq is not None:
            _core.write(mem, seq)
    d._mem = mem
    return d


def op(fn: Callable[..., Any], args: tuple, kwargs: dict | None = None, what: str = "an op",
       strict: bool = False, check_reads: bool = True) -> Any:
    """Run NumPy's ``fn`` as a device op: arguments unwrapped under CuPy's rules."""
    o = _Op(check_reads)
    kwargs = dict(kwargs or {})
    out = kwargs.pop("out", None)
    a = tuple(o.arg(x, strict) for x in args)
    k = {key: o.arg(v) for key, v in kwargs.items()}
    if out is not None:
        k["out"] = o.out(out)
    return o.run(fn, a, k, what)


def _should_use_rop(x: Any, y: Any) -> bool:
    y_ufunc = getattr(y, "__array_ufunc__", _should_use_rop)
    if y_ufunc is not _should_use_rop:
        return y_ufunc is None
    return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)


# ----------------------------------------------------------------------------- ufuncs
class ufunc:
    """A CuPy ufunc: NumPy's, on device arrays and scalars only."""

    def __init__(self, f: numpy.ufunc) -> None:
        self._f = f
        self.__name__ = f.__name__
        self.nin, self.nout, self.nargs = f.nin, f.nout, f.nargs
        self.identity = f.identity

    def __repr__(self) -> str:
        return f"<ufunc 'cupy_{self.__name__}'>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return op(self._f, args, kwargs, f"cupy.{self.__name__}", strict=True)

    def _method(self, name: str, args: tuple, kwargs: dict) -> Any:
        return op(getattr(self._f, name), args, kwargs, f"cupy.{self.__name__}.{name}",
                  strict=name != "at")

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("reduce", args, kwargs)

    def accumulate(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("accumulate", args, kwargs)

    def reduceat(self, array: Any, indices: Any, *args: Any, **kwargs: Any) -> Any:
        return self._method("reduceat", (array, _indices(indices), *args), kwargs)

    def outer(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("outer", args, kwargs)

    def at(self, a: Any, indices: Any, b: Any = None) -> None:
        if not isinstance(a, ndarray):
            raise TypeError("Output arguments type must be cupy.ndarray")
        o = _Op()
        o.writes.append(a._mem)
        args = (a._a, _index_arg(o, indices)) + (() if b is None else (o.arg(b, True),))
        o.run(self._f.at, args, {}, f"cupy.{self.__name__}.at")


def _indices(x: Any) -> Any:
    return x._a if isinstance(x, ndarray) else numpy.asarray(x)


UFUNCS: dict[str, ufunc] = {}


def make_ufuncs(names: list[str]) -> dict[str, ufunc]:
    for name in names:
        f = getattr(numpy, name, None)
        if isinstance(f, numpy.ufunc):
            UFUNCS[name] = UFUNCS.get(f.__name__) or ufunc(f)
    return UFUNCS


# ----------------------------------------------------------------------------- indexing
def _index_arg(o: _Op, key: Any) -> Any:
    """An index for the device buffer: device index arrays are read, NumPy ones and lists are
    accepted (CuPy copies them to the device), scalars and slices pass."""
    if isinstance(key, ndarray):
        o.reads.append(key._mem)
        return key._a
    if isinstance(key, tuple):
        return tuple(_index_arg(o, k) for k in key)
    if isinstance(key, (numpy.ndarray, list)):
        a = numpy.asarray(key)
        if a.dtype.kind not in "biu" and a.size:
            raise IndexError("arrays used as indices must be of integer or boolean type "
                             f"(actual: {a.dtype.type})")
        return a if a.size else a.astype(numpy.intp)
    return key


def _is_basic(key: Any) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return all((isinstance(k, (int, numpy.integer)) and not isinstance(k, (bool, numpy.bool_)))
               or isinstance(k, slice) or k is None or k is Ellipsis for k in parts)


# ----------------------------------------------------------------------------- the array
class ndarray:
    """A device array of the stand-in (``cupy.ndarray``)."""

    __array_priority__ = 100
    __slots__ = ("_a", "_mem", "__weakref__")
    _a: numpy.ndarray
    _mem: _core.Alloc

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None,
                 order: str = "C") -> None:
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy stand-in: ndarray(memptr=, strides=) is not modelled")
        self._a = numpy.empty(shape, dtype, order=order)
        if self._a.dtype.kind not in DEVICE_KINDS:
            raise ValueError(f"Unsupported dtype {self._a.dtype}")
        self._mem = _core.allocate(self._a)

    # --- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)

    @property
    def device(self) -> Any:
        from .cuda import Device

        return Device(self._mem.device)

    @property
    def data(self) -> Any:
        from .cuda import MemoryPointer

        return MemoryPointer(self._a.ctypes.data, self._mem.device)

    @property
    def base(self) -> ndarray | None:
        root = _core.root_of(self._a)
        return None if root is self._a else _wrap(root)

    @property
    def T(self) -> ndarray:
        return self.transpose()

    @property
    def mT(self) -> ndarray:
        return self.swapaxes(-1, -2)

    @property
    def real(self) -> ndarray:
        return op(lambda a: a.real, (self,), check_reads=False)

    @property
    def imag(self) -> ndarray:
        return op(lambda a: a.imag, (self,), check_reads=False)

    # --- host <-> device
    def get(self, stream: Any = None, order: str = "C", out: numpy.ndarray | None = None,
            blocking: bool = True) -> numpy.ndarray:
        """Copy to the host (CuPy's checks on ``out``; ``blocking=False`` lands at the sync)."""
        if out is not None:
            if not isinstance(out, numpy.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained fromcupy.ndarray")
            if self.dtype != out.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if self.shape != out.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, "
                                 f"actual shape: {out.shape}")
        from .cuda import _stream_state

        s = _stream_state(stream)
        _core.read(self._mem, "a device-to-host copy", s)
        if self._mem.writer is not None and self._mem.writer is not s and blocking:
            self._mem.writer.complete()  # ordered after the writer: the copy waits for it
        count("d2h_copies")
        count("d2h_bytes", self.nbytes)
        if out is None:
            if not blocking:
                raise NotImplementedError("cupy stand-in: get(blocking=False) needs out=")
            _core.declare_sync()
            s.complete()
            return numpy.array(self._a, order=order, copy=True)
        if blocking:
            _core.declare_sync()
            s.complete()
            out[...] = self._a
        else:
            snapshot = self._a.copy()  # what the device holds when the copy is issued
            s.copies.append(lambda: out.__setitem__(Ellipsis, snapshot))
            s.issue()
        return out

    def set(self, arr: numpy.ndarray, stream: Any = None) -> None:
        if not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        count("h2d_copies")
        count("h2d_bytes", arr.nbytes)
        o = _Op()
        o.writes.append(self._mem)
        o.run(lambda: self._a.__setitem__(Ellipsis, arr), (), {}, "set()")

    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def _implicit(self) -> numpy.ndarray:
        count("implicit_syncs")
        return self.get()

    def item(self) -> Any:
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.get().item()

    def tolist(self) -> Any:
        return self.get().tolist()

    def tobytes(self, order: str = "C") -> bytes:
        return self.get().tobytes(order)

    def __int__(self) -> int:
        return int(self._implicit())

    def __float__(self) -> float:
        return float(self._implicit())

    def __complex__(self) -> complex:
        return complex(self._implicit())

    def __bool__(self) -> bool:
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False, but "
                          "in future this will result in an error. Use `array.size > 0` to "
                          "check that an array is not empty.", DeprecationWarning, stacklevel=2)
            return False
        if self.size == 1:
            return bool(self._implicit())
        raise ValueError("The truth value of an array with more than one element is ambiguous. "
                         "Use a.any() or a.all()")

    def __repr__(self) -> str:
        return repr(self._implicit())

    def __str__(self) -> str:
        return str(self._implicit())

    def __format__(self, spec: str) -> str:
        return format(self._implicit(), spec)

    def __reduce__(self) -> tuple:
        # CuPy pickles a device array as array(host copy): it unpickles onto the current GPU
        from . import array

        return array, (self.get(order="A"),)

    __hash__ = None  # type: ignore[assignment]

    # --- containers
    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key: Any) -> ndarray:
        o = _Op(check_reads=not _is_basic(key))
        o.reads.append(self._mem)
        k = _index_arg(o, key)
        if _is_basic(key) and not (isinstance(k, tuple) and Ellipsis in k):
            k = (*(k if isinstance(k, tuple) else (k,)), Ellipsis)  # a 0-d view, not a scalar
        return o.run(self._a.__getitem__, (k,), {}, "indexing")

    def __setitem__(self, key: Any, value: Any) -> None:
        o = _Op()
        o.writes.append(self._mem)
        k = _index_arg(o, key)
        if isinstance(value, ndarray):
            o.reads.append(value._mem)
            v = value._a
        elif _is_basic(key):
            v = numpy.asarray(value, dtype=self.dtype)  # CuPy fills with a scalar here
            if v.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            v = v[()]
        else:
            v = numpy.asarray(value, dtype=self.dtype)
            count("h2d_copies")
            count("h2d_bytes", v.nbytes)
        o.run(self._a.__setitem__, (k, v), {}, "assignment")

    def fill(self, value: Any) -> None:
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            self[...] = value
            return
        v = numpy.asarray(value, dtype=self.dtype)
        if v.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self[...] = v[()]

    # --- comparisons (CuPy turns a 0-d NumPy operand into a scalar; None never equals)
    def _compare(self, other: Any, name: str, reflected: str) -> Any:
        if isinstance(other, ndarray):
            return UFUNCS[name](self, other)
        if _should_use_rop(self, other):
            return NotImplemented
        if isinstance(other, numpy.ndarray) and other.ndim == 0:
            other = other.item()
        if name in ("equal", "not_equal") and (other is None or (
                type(other).__eq__ is object.__eq__)):
            from . import ones, zeros

            return (zeros if name == "equal" else ones)(self.shape, dtype=numpy.bool_)
        return UFUNCS[name](self, other)

    def __eq__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, "equal", "equal")

    def __ne__(self, o: Any) -> Any:  # type: ignore[override]
        return self._compare(o, "not_equal", "not_equal")

    def __lt__(self, o: Any) -> Any:
        return self._compare(o, "less", "greater")

    def __le__(self, o: Any) -> Any:
        return self._compare(o, "less_equal", "greater_equal")

    def __gt__(self, o: Any) -> Any:
        return self._compare(o, "greater", "less")

    def __ge__(self, o: Any) -> Any:
        return self._compare(o, "greater_equal", "less_equal")

    # --- NumPy protocols
    def __array_ufunc__(self, uf: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        f = UFUNCS.get(uf.__name__)
        if f is None:
            return NotImplemented
        out = kwargs.get("out")
        if out is not None:
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        for x in inputs + (() if out is None else out):
            if not (type(x) in PY_SCALARS or isinstance(x, (numpy.generic, ndarray,
                                                             numpy.ndarray))):
                return NotImplemented
        if uf.__name__ in _COMPARISONS:
            inputs = tuple(x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x
                           for x in inputs)
        fn = f if method == "__call__" else getattr(f, method, None)
        if fn is None:
            return NotImplemented
        return fn(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: tuple, args: tuple, kwargs: dict) -> Any:
        from . import _namespace_function

        impl = _namespace_function(func)
        if impl is None:
            return NotImplemented
        if not all(issubclass(t, (ndarray, numpy.ndarray)) for t in types):
            return NotImplemented
        return impl(*args, **kwargs)

    # --- methods
    def copy(self, order: str = "C") -> ndarray:
        return op(lambda a: numpy.array(a, order=order, copy=True), (self,), what="copy()")

    def astype(self, dtype: Any, order: str = "K", casting: Any = None, subok: Any = None,
               copy: bool = True) -> ndarray:
        kw = {"order": order, "copy": copy}
        if casting is not None:
            kw["casting"] = casting
        return op(numpy.ndarray.astype, (self, dtype), kw, "astype()")

    def view(self, dtype: Any = None) -> ndarray:
        return op(lambda a: a.view() if dtype is None else a.view(dtype), (self,),
                  check_reads=False)

    def reshape(self, *shape: Any, order: str = "C") -> ndarray:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return op(lambda a: a.reshape(shape, order=order), (self,), check_reads=False)

    def transpose(self, *axes: Any) -> ndarray:
        return op(lambda a: a.transpose(*axes), (self,), check_reads=False)

    def dot(self, b: ndarray, out: ndarray | None = None) -> ndarray:
        if not isinstance(b, ndarray):
            raise TypeError(f"Argument 'b' has incorrect type (expected cupy._core.core."
                            f"_ndarray_base, got {type(b).__name__})")
        return op(numpy.dot, (self, b), {"out": out}, "dot()")

    # --- operators
    def __matmul__(self, o: Any) -> Any:
        return self._binary("matmul", o)

    def __rmatmul__(self, o: Any) -> Any:
        return self._binary("matmul", o, reflected=True)

    def _binary(self, name: str, other: Any, reflected: bool = False) -> Any:
        f = UFUNCS[name] if name in UFUNCS else None
        if not isinstance(other, ndarray) and _should_use_rop(self, other):
            return NotImplemented
        if f is None:
            raise TypeError(f"cupy stand-in: no operator {name}")
        return f(other, self) if reflected else f(self, other)

    def _inplace(self, name: str, other: Any) -> ndarray:
        UFUNCS[name](self, other, out=self)
        return self

    def __neg__(self) -> ndarray:
        return UFUNCS["negative"](self)

    def __pos__(self) -> ndarray:
        return UFUNCS["positive"](self)

    def __abs__(self) -> ndarray:
        return UFUNCS["absolute"](self)

    def __invert__(self) -> ndarray:
        return UFUNCS["invert"](self)


_BINARY = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
           "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
           "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift",
           "rshift": "right_shift"}


def _install_operators() -> None:
    for py, name in _BINARY.items():
        setattr(ndarray, f"__{py}__", lambda self, o, n=name: self._binary(n, o))
        setattr(ndarray, f"__r{py}__", lambda self, o, n=name: self._binary(n, o, True))
        setattr(ndarray, f"__i{py}__", lambda self, o, n=name: self._inplace(n, o))
    ndarray.__divmod__ = lambda self, o: (self // o, self % o)  # type: ignore[attr-defined]
    ndarray.__imatmul__ = lambda self, o: NotImplemented  # type: ignore[attr-defined]


# Methods that forward to NumPy's; the first group only reinterprets metadata (no data read).
_VIEW_METHODS = ("ravel", "squeeze", "swapaxes", "diagonal")
_METHODS = ("sum", "prod", "mean", "var", "std", "min", "max", "argmin", "argmax", "all", "any",
            "cumsum", "cumprod", "clip", "round", "conj", "conjugate", "nonzero", "flatten",
            "repeat", "take", "trace", "ptp", "searchsorted", "argsort", "argpartition",
            "compress", "choose")
_INPLACE_METHODS = ("sort", "partition", "put")


def _install_methods() -> None:
    for name in _VIEW_METHODS:
        setattr(ndarray, name, lambda self, *a, _n=name, **k: op(
            getattr(numpy.ndarray, _n), (self, *a), k, f"{_n}()", check_reads=False))
    for name in _METHODS:
        setattr(ndarray, name, lambda self, *a, _n=name, **k: op(
            getattr(numpy.ndarray, _n), (self, *a), k, f"{_n}()"))
    for name in _INPLACE_METHODS:
        def inplace(self: ndarray, *a: Any, _n: str = name, **k: Any) -> None:
            o = _Op()
            o.writes.append(self._mem)
            args = tuple(o.arg(x) for x in a)
            o.run(getattr(numpy.ndarray, _n), (self._a, *args), k, f"{_n}()")
        setattr(ndarray, name, inplace)


_install_operators()
_install_methods()


# ----------------------------------------------------------------------------- host data in
def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False,
          ndmin: int = 0, *, blocking: bool = False) -> ndarray:
    """``cupy.array``: a device copy of a device array, or of host data (counted as upload)."""
    if isinstance(obj, ndarray):
        same = dtype is None or numpy.dtype(dtype) == obj.dtype
        if copy is False and same and ndmin <= obj.ndim:
            return obj
        return op(lambda a: numpy.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin),
                  (obj,), what="array()")
    if isinstance(obj, (list, tuple)) and _has_device(obj):
        return _from_nested(obj, dtype)
    if copy is False and not isinstance(obj, ndarray):
        raise ValueError("Unable to avoid copy while creating an array as requested.")
    host = numpy.array(obj, dtype=dtype, order=order, ndmin=ndmin, copy=True)
    if host.dtype.kind not in DEVICE_KINDS:
        raise ValueError(f"Unsupported dtype {host.dtype}")
    count("h2d_copies")
    count("h2d_bytes", host.nbytes)
    seq = _core.state().current_stream().issue()
    return _wrap(host, seq)


def asarray(a: Any, dtype: Any = None, order: str | None = None, *, copy: Any = None,
            blocking: bool = False) -> ndarray:
    if isinstance(a, ndarray) and (dtype is None or numpy.dtype(dtype) == a.dtype) and (
            order is None or order in "KA" or (order == "C" and a.flags.c_contiguous)
            or (order == "F" and a.flags.f_contiguous)) and copy is not True:
        return a
    return array(a, dtype=dtype, copy=True if copy is None else copy, order=order or "K",
                 blocking=blocking)


def _has_device(seq: Any) -> bool:
    return any(isinstance(x, ndarray) or (isinstance(x, (list, tuple)) and _has_device(x))
               for x in seq)


def _from_nested(obj: Any, dtype: Any) -> ndarray:
    def check(x: Any) -> None:
        if isinstance(x, numpy.ndarray):
            raise TypeError("Nested array of cupy.ndarray and numpy.ndarray is not supported")
        if isinstance(x, (list, tuple)):
            for v in x:
                check(v)
    check(obj)
    return op(lambda *parts: numpy.array(parts[0], dtype=dtype), (obj,), what="array()")


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: numpy.ndarray | None = None, *,
            blocking: bool = True) -> numpy.ndarray:
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    temp = numpy.asarray(a, order=order)
    if out is not None:
        out[...] = temp
        return out
    return temp


def like(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``zeros_like`` and friends: CuPy reads only the prototype's metadata, so a host prototype
    is allowed (the result is on the device)."""
    def f(prototype: Any, *args: Any, **kwargs: Any) -> ndarray:
        if isinstance(prototype, ndarray):
            proto = numpy.empty(prototype.shape, prototype.dtype,
                                order="F" if prototype.flags.f_contiguous
                                and not prototype.flags.c_contiguous else "C")
        else:
            proto = prototype
        o = _Op()
        return o.run(fn, (proto, *(o.arg(x) for x in args)),
                     {k: o.arg(v) for k, v in kwargs.items()}, f"cupy.{name}")
    f.__name__ = name
    return f


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError("Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base,"
                        f" got {type(a).__name__})")
    if a.flags.c_contiguous and (dtype is None or numpy.dtype(dtype) == a.dtype):
        return a
    return op(lambda x: numpy.ascontiguousarray(x, dtype=dtype), (a,), what="ascontiguousarray()")


def is_device_array(x: Any) -> bool:
    return isinstance(x, ndarray)

