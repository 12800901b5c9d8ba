"""User kernels on the stand-in: ``ElementwiseKernel``, ``ReductionKernel``, ``RawKernel``,
``RawModule``.

A kernel runs through the NumPy reference registered under its name
(:func:`register_kernel`), or, for elementwise and reduction kernels without one, by
interpreting their code (:mod:`._cexpr`).  Calls are checked the way CuPy checks them (argument
count, ``Unsupported type`` for host arrays, ``Type is mismatched`` for typed parameters, output
shapes), and raw kernels are checked against the parameter list of their ``__global__``
function, which CuPy cannot do: a Python ``int`` passed for an ``int`` parameter (CuPy sends it
as 64 bits, the kernel reads 32 and every later parameter is shifted), an array whose dtype is
not the pointer's, or a non-contiguous array (a raw kernel sees only the pointer) silently give
wrong results on a GPU and raise ``TypeError``/``ValueError`` here.

Reference signatures:

* elementwise: ``fn(*inputs) -> output or tuple of outputs`` (inputs as NumPy arrays broadcast to
  the loop shape, raw ones as they are, scalars cast to their parameter type);
* reduction: ``fn(*inputs, axis, keepdims) -> output``;
* raw: ``fn(*args, grid, block, shared_mem)`` writing its outputs into the argument arrays.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy

from . import _cexpr
from ._array import PY_SCALARS, _Op, ndarray
from ._core import count

__all__ = ["ElementwiseKernel", "ReductionKernel", "RawKernel", "RawModule", "register_kernel",
           "registered_kernels", "CUDADriverError"]

_REFERENCES: dict[str, Callable[..., Any]] = {}


class CUDADriverError(RuntimeError):
    """``cupy_backends.cuda.api.driver.CUDADriverError``."""


def register_kernel(name: str, fn: Callable[..., Any]) -> None:
    """Run the kernel called ``name`` through ``fn`` on the stand-in (see the module doc)."""
    if not callable(fn):
        raise TypeError(f"register_kernel({name!r}): fn must be callable")
    _REFERENCES[name] = fn


def registered_kernels() -> dict[str, Callable[..., Any]]:
    return dict(_REFERENCES)


class _Param:
    __slots__ = ("name", "dtype", "ctype", "raw", "const")

    def __init__(self, text: str) -> None:
        words = text.split()
        if len(words) < 2:
            raise ValueError(f"Syntax error: {text}")
        self.raw = "raw" in words[:-2]
        self.const = "const" in words[:-2]
        self.name, self.ctype = words[-1], words[-2]
        try:
            self.dtype = None if re.fullmatch(r"[A-Z]\w*", self.ctype) else numpy.dtype(self.ctype)
        except TypeError:
            self.dtype = None


def _params(text: str) -> tuple[_Param, ...]:
    return tuple(_Param(p.strip()) for p in text.split(",") if p.strip())


def _scalar_dtype(x: Any) -> numpy.dtype:
    if isinstance(x, numpy.generic):
        return x.dtype
    if type(x) is bool:
        return numpy.dtype(numpy.bool_)
    if type(x) is int:
        return numpy.dtype(numpy.int64)
    if type(x) is float:
        return numpy.dtype(numpy.float64)
    if type(x) is complex:
        return numpy.dtype(numpy.complex128)
    raise TypeError(f"Unsupported type {type(x)}")


def _check_arg(x: Any) -> None:
    if not (isinstance(x, ndarray) or type(x) in PY_SCALARS or isinstance(x, numpy.generic)):
        raise TypeError(f"Unsupported type {type(x)}")


def _resolve(params: tuple[_Param, ...], args: list[Any], types: dict[str, numpy.dtype]) -> None:
    """CuPy's ``_decide_params_type``: typed params must match array dtypes exactly, a type
    placeholder takes the dtype of the first array bound to it and must be the same for all."""
    for p, a in zip(params, args, strict=False):
        if not isinstance(a, ndarray):
            continue
        if p.dtype is not None:
            if a.dtype != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype.type} {p.dtype.type}")
        elif p.ctype in types:
            if types[p.ctype] != a.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype.type} "
                                f"{types[p.ctype].type} {p.ctype}")
        else:
            types[p.ctype] = a.dtype
    for p, a in zip(params, args, strict=False):
        if a is not None and not isinstance(a, ndarray) and p.dtype is None \
                and p.ctype not in types:
            types[p.ctype] = _scalar_dtype(a)


def _ptype(p: _Param, types: dict[str, numpy.dtype]) -> numpy.dtype:
    if p.dtype is not None:
        return p.dtype
    if p.ctype not in types:
        raise TypeError(f"Cannot determine the type of {p.name} ({p.ctype})")
    return types[p.ctype]


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name='kernel', ...)``."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel",
                 reduce_dims: bool = True, preamble: str = "", no_return: bool = False,
                 return_tuple: bool = False, loop_prep: str = "", after_loop: str = "",
                 options: tuple = (), **kwargs: Any) -> None:
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.params = self.in_params + self.out_params
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.loop_prep, self.after_loop = loop_prep, after_loop

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        size = kwargs.pop("size", -1)
        kwargs.pop("stream", None)
        block_size = kwargs.pop("block_size", 128)
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        for a in args:
            _check_arg(a)
        ins, outs = list(args[:self.nin]), list(args[self.nin:])
        for o in outs:
            if not isinstance(o, ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")
        nonraw = [a for p, a in zip(self.params, args, strict=False)
                  if isinstance(a, ndarray) and not p.raw]
        if size != -1:
            if nonraw:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are "
                                 "'raw'.")
            shape: tuple[int, ...] = (int(size),)
        else:
            if not nonraw:
                raise ValueError("Loop size is undecided.")
            shape = numpy.broadcast_shapes(*(a.shape for a in nonraw))
        types: dict[str, numpy.dtype] = {}
        _resolve(self.out_params, outs, types)
        _resolve(self.in_params, ins, types)
        for p, o in zip(self.out_params, outs, strict=False):
            if not p.raw and o.shape != shape:
                raise ValueError("Out shape is mismatched")
        if not outs:
            for p in self.out_params:
                if p.raw and size == -1:
                    raise ValueError("Output array size is Undecided")
            from . import empty

            outs = [empty(shape, _ptype(p, types)) for p in self.out_params]
        op = _Op()
        host_in = []
        for p, a in zip(self.in_params, ins, strict=True):
            if isinstance(a, ndarray):
                v = op.arg(a)
                host_in.append(v if p.raw else numpy.broadcast_to(v, shape))
            else:
                host_in.append(_ptype(p, types).type(a))
        for o in outs:
            op.writes.append(o._mem)
        count("kernels")
        op.run(lambda: self._compute(host_in, [o._a for o in outs], shape, types), (), {},
               f"kernel {self.name!r}")
        if self.no_return:
            return None
        if self.nout == 1 and not self.return_tuple:
            return outs[0]
        return tuple(outs)

    def _compute(self, ins: list[Any], outs: list[numpy.ndarray], shape: tuple[int, ...],
                 types: dict[str, numpy.dtype]) -> None:
        ref = _REFERENCES.get(self.name)
        if ref is not None:
            res = ref(*ins)
            res = res if isinstance(res, tuple) else (res,)
            if len(res) != len(outs):
                raise ValueError(f"cupy stand-in: reference of kernel {self.name!r} returned "
                                 f"{len(res)} outputs, the kernel has {len(outs)}")
            for o, r in zip(outs, res, strict=True):
                o[...] = numpy.broadcast_to(numpy.asarray(r).astype(o.dtype, copy=False), o.shape)
            return
        if self.preamble.strip() or self.loop_prep.strip() or self.after_loop.strip():
            raise _needs_reference(self.name, "it has a preamble or loop code")
        env = {p.name: v for p, v in zip(self.in_params, ins, strict=True)}
        env["i"] = numpy.arange(int(numpy.prod(shape)), dtype=numpy.int64).reshape(shape)
        tmap = {k: v for k, v in types.items()}
        for p, o in zip(self.out_params, outs, strict=True):
            tmap[f"<var {p.name}>"] = o.dtype
            env[p.name] = o.copy()
        try:
            _cexpr.run(self.operation, env, tmap)
        except _cexpr.NotSimple as exc:
            raise _needs_reference(self.name, str(exc)) from None
        for p, o in zip(self.out_params, outs, strict=True):
            o[...] = numpy.broadcast_to(numpy.asarray(env[p.name]).astype(o.dtype), o.shape)


def _needs_reference(name: str, why: str) -> NotImplementedError:
    return NotImplementedError(
        f"cupy stand-in: kernel {name!r} cannot run here ({why}); register a NumPy reference "
        f"with streampipe.gpu.register_kernel_reference({name!r}, fn)")


_REDUCE = {"a+b": numpy.add, "a*b": numpy.multiply, "max(a,b)": numpy.maximum,
           "min(a,b)": numpy.minimum, "a|b": numpy.bitwise_or, "a&b": numpy.bitwise_and}


class ReductionKernel:
    """``cupy.ReductionKernel(in_params, out_params, map_expr, reduce_expr, post_map_expr,
    identity, name='reduce_kernel', ...)``; called with ``axis=`` and ``keepdims=``."""

    def __init__(self, in_params: str, out_params: str, map_expr: str, reduce_expr: str,
                 post_map_expr: str, identity: Any, name: str = "reduce_kernel",
                 reduce_type: Any = None, reduce_dims: bool = True, preamble: str = "",
                 options: tuple = ()) -> None:
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.map_expr, self.reduce_expr, self.post_map_expr = map_expr, reduce_expr, post_map_expr
        self.identity, self.name, self.reduce_type = identity, name, reduce_type
        self.preamble = preamble

    def __call__(self, *args: Any, out: ndarray | None = None, axis: Any = None,
                 keepdims: bool = False, stream: Any = None) -> ndarray:
        if len(args) not in (self.nin, self.nin + self.nout):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nin + self.nout} (with outputs), but given "
                            f"{len(args)}.")
        for a in args:
            _check_arg(a)
        if len(args) > self.nin:
            out = args[self.nin]
        ins = list(args[:self.nin])
        arrays = [a for a in ins if isinstance(a, ndarray)]
        if not arrays:
            raise ValueError("Loop size is undecided.")
        types: dict[str, numpy.dtype] = {}
        _resolve(self.in_params, ins, types)
        shape = numpy.broadcast_shapes(*(a.shape for a in arrays))
        op = _Op()
        host = [numpy.broadcast_to(op.arg(a), shape) if isinstance(a, ndarray)
                else _ptype(p, types).type(a) for p, a in zip(self.in_params, ins, strict=True)]
        out_dt = _ptype(self.out_params[0], types) if self.out_params[0].dtype is not None \
            or self.out_params[0].ctype in types else numpy.result_type(*arrays)
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")
            op.writes.append(out._mem)
        count("kernels")
        res = op.run(lambda: self._compute(host, types, axis, keepdims, out_dt), (), {},
                     f"kernel {self.name!r}")
        if out is not None:
            out[...] = res
            return out
        return res

    def _compute(self, ins: list[Any], types: dict[str, numpy.dtype], axis: Any,
                 keepdims: bool, out_dt: numpy.dtype) -> numpy.ndarray:
        ref = _REFERENCES.get(self.name)
        if ref is not None:
            return numpy.asarray(ref(*ins, axis=axis, keepdims=keepdims)).astype(out_dt)
        red = _REDUCE.get(re.sub(r"\s+", "", self.reduce_expr))
        if red is None or self.preamble.strip():
            raise _needs_reference(self.name, f"reduce_expr {self.reduce_expr!r} is not one of "
                                   "a + b, a * b, max(a, b), min(a, b)")
        env = {p.name: v for p, v in zip(self.in_params, ins, strict=True)}
        tmap = dict(types)
        try:
            mapped = _cexpr.run(f"_m = {self.map_expr}", env, tmap)["_m"]
            acc_dt = numpy.dtype(self.reduce_type) if self.reduce_type else None
            a = numpy.asarray(mapped)
            if acc_dt is not None:
                a = a.astype(acc_dt)
            reduced = red.reduce(a, axis=axis, keepdims=keepdims,
                                 initial=_cexpr._number(str(self.identity))
                                 if str(self.identity).strip() else None)
            env2 = {"a": reduced}
            tmap2 = {**types, f"<var {self.out_params[0].name}>": out_dt}
            post = _cexpr.run(self.post_map_expr, env2, tmap2)
            value = post.get(self.out_params[0].name, reduced)
        except _cexpr.NotSimple as exc:
            raise _needs_reference(self.name, str(exc)) from None
        return numpy.asarray(value).astype(out_dt)


# ----------------------------------------------------------------------------- raw kernels
def _signature(code: str, name: str) -> list[tuple[str, bool, numpy.dtype | None]] | None:
    """(parameter name, is pointer, dtype or None) of ``__global__ void name(...)`` in ``code``."""
    m = re.search(r"__global__\s+void\s+" + re.escape(name) + r"\s*\(([^)]*)\)",
                  _cexpr.strip_comments(code))
    if m is None:
        return None
    out = []
    for part in m.group(1).split(","):
        part = part.strip()
        if not part:
            continue
        pointer = "*" in part or "[" in part
        words = re.findall(r"[A-Za-z_]\w*", part)
        if len(words) < 2:
            return None
        out.append((words[-1], pointer, _cexpr.c_type(words[:-1], {})))
    return out


class RawKernel:
    """``cupy.RawKernel(code, name, ...)``, launched as ``kernel(grid, block, args)``."""

    def __init__(self, code: str, name: str, options: tuple = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, *, enable_cooperative_groups: bool = False,
                 jitify: bool = False) -> None:
        self.code, self.name = code, name
        self.signature = _signature(code, name)

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0,
                 stream: Any = None) -> None:
        if not isinstance(args, (tuple, list)):
            raise TypeError("args must be a tuple")
        sig = self.signature
        if sig is not None and len(sig) != len(args):
            raise TypeError(f"cupy stand-in: kernel {self.name!r} takes {len(sig)} parameters, "
                            f"got {len(args)} arguments")
        op = _Op()
        host = []
        for k, a in enumerate(args):
            p = sig[k] if sig is not None else None
            host.append(self._arg(op, k, a, p))
        ref = _REFERENCES.get(self.name)
        if ref is None:
            raise _needs_reference(self.name, "raw CUDA code")
        count("kernels")
        op.run(lambda: ref(*host, grid=_dims(grid), block=_dims(block), shared_mem=shared_mem),
               (), {}, f"kernel {self.name!r}")

    def _arg(self, op: _Op, k: int, a: Any, p: tuple | None) -> Any:
        where = f"cupy stand-in: kernel {self.name!r} argument {k}"
        if p is not None:
            where += f" ({p[0]})"
        if isinstance(a, ndarray):
            if p is not None and not p[1]:
                raise TypeError(f"{where}: a device array passed for a scalar parameter")
            if p is not None and p[2] is not None and a.dtype != p[2]:
                raise TypeError(f"{where}: the pointer is to {p[2]} but the array is {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where}: the array is not C-contiguous (a raw kernel sees only "
                                 "its pointer); pass cupy.ascontiguousarray(x)")
            v = op.arg(a)
            op.writes.append(a._mem)
            return v
        if isinstance(a, numpy.ndarray):
            if a.size != 1:
                raise TypeError(f"You are trying to pass a numpy.ndarray of shape {a.shape} as a "
                                "kernel parameter. Only numpy.ndarrays of size one can be passed "
                                "by value. If you meant to pass a pointer to __global__ memory, "
                                "you need to pass a cupy.ndarray instead.")
            dt = a.dtype
            value: Any = a.reshape(())[()]
        elif a is None:
            return None
        else:
            dt = _scalar_dtype(a)
            value = dt.type(a)
        if p is not None:
            if p[1]:
                raise TypeError(f"{where}: a host value passed for a pointer parameter; pass a "
                                "device array")
            if p[2] is not None and dt != p[2]:
                how = f"a Python {type(a).__name__}, which CuPy passes as {dt}" \
                    if type(a) in PY_SCALARS else f"{dt}"
                raise TypeError(f"{where}: the parameter is {p[2]} but got {how}; pass "
                                f"numpy.{p[2]}(...)")
        return value


def _dims(x: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in x) if isinstance(x, (tuple, list)) else (int(x),)


class RawModule:
    """``cupy.RawModule(code=..., ...)``; ``get_function(name)`` gives a :class:`RawKernel`."""

    def __init__(self, *, code: str | None = None, path: str | None = None,
                 options: tuple = (), backend: str = "nvrtc", translate_cucomplex: bool = False,
                 enable_cooperative_groups: bool = False, name_expressions: Any = None,
                 jitify: bool = False) -> None:
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if path is not None:
            with open(path) as f:
                code = f.read()
        self.code = code or ""

    def get_function(self, name: str) -> RawKernel:
        if _signature(self.code, name) is None and name not in _REFERENCES:
            raise CUDADriverError("CUDA_ERROR_NOT_FOUND: named symbol not found")
        return RawKernel(self.code, name)

