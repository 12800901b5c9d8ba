"""``cupy.testing`` of the stand-in: the NumPy-vs-CuPy decorators and array assertions.

``numpy_cupy_allclose`` and ``numpy_cupy_array_equal`` behave as CuPy's
(``cupy/testing/_loops.py``): the test runs once with ``xp=numpy`` and once with ``xp=cupy``,
both must raise the same kind of error (``accept_error``) or both return results; a device
result must be a device array where NumPy's is an array (a NumPy array coming back from the
``cupy`` run is an error: the code fell back to the host), dtypes must agree (``type_check``), a
C-contiguous NumPy result needs a C-contiguous device result (``contiguous_check``), then shapes
and values are compared.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

import numpy

from ._array import ndarray


def _host(x: Any) -> Any:
    return x.get() if isinstance(x, ndarray) else x


def assert_allclose(actual: Any, desired: Any, rtol: float = 1e-7, atol: float = 0,
                    err_msg: str = "", verbose: bool = True) -> None:
    numpy.testing.assert_allclose(_host(actual), _host(desired), rtol=rtol, atol=atol,
                                  err_msg=err_msg, verbose=verbose)


def assert_array_equal(x: Any, y: Any, err_msg: str = "", verbose: bool = True,
                       strides_check: bool = False) -> None:
    numpy.testing.assert_array_equal(_host(x), _host(y), err_msg=err_msg, verbose=verbose)
    if strides_check and getattr(x, "strides", None) != getattr(y, "strides", None):
        raise AssertionError(f"Strides are not equal:\n x: {x.strides}\n y: {y.strides}")


def _pair(c: Any, n: Any) -> tuple[Any, Any]:
    if isinstance(c, ndarray) and isinstance(n, (numpy.ndarray, numpy.generic)):
        return c, n
    if isinstance(c, numpy.generic) and isinstance(n, numpy.generic):
        return c, n
    if numpy.isscalar(c) and numpy.isscalar(n):
        return numpy.array(c), numpy.array(n)
    raise AssertionError(f"numpy and cupy returns different type of return value:\n"
                         f"cupy: {type(c)}\nnumpy: {type(n)}")


def _run(impl: Callable[..., Any], args: tuple, kw: dict, name: str, xp: Any) -> tuple[Any, Any]:
    try:
        return impl(*args, **{**kw, name: xp}), None
    except Exception as exc:  # noqa: BLE001 - compared with the other run's error
        return None, exc


def _decorator(check: Callable[[Any, Any], None], name: str, type_check: bool,
               contiguous_check: bool, accept_error: Any) -> Callable[..., Any]:
    def decorator(impl: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(impl)
        def test_func(*args: Any, **kw: Any) -> None:
            cp = sys.modules[__name__.rsplit(".", 1)[0]]
            c_res, c_err = _run(impl, args, kw, name, cp)
            n_res, n_err = _run(impl, args, kw, name, numpy)
            if c_err or n_err:
                accept = (Exception if accept_error is True else accept_error) or ()
                if c_err and n_err and isinstance(c_err, accept) and isinstance(n_err, accept):
                    return
                raise (c_err or n_err)  # type: ignore[misc]
            cs = c_res if isinstance(c_res, (tuple, list)) else (c_res,)
            ns = n_res if isinstance(n_res, (tuple, list)) else (n_res,)
            assert len(cs) == len(ns)
            pairs = [_pair(c, n) for c, n in zip(cs, ns, strict=True)]
            for c, n in pairs:
                if type_check and c.dtype != n.dtype:
                    raise AssertionError(f"ndarrays of different dtypes are returned.\n"
                                         f"cupy: {c.dtype}\nnumpy: {n.dtype}")
                if contiguous_check and isinstance(n, numpy.ndarray) and \
                        n.flags.c_contiguous and not c.flags.c_contiguous:
                    raise AssertionError("The state of c_contiguous flag is false. "
                                         f"(cupy_result:{c.flags.c_contiguous} "
                                         f"numpy_result:{n.flags.c_contiguous})")
                assert c.shape == n.shape
                check(c, n)

        sig = inspect.signature(impl)
        test_func.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[p for p in sig.parameters.values() if p.name != name])
        return test_func
    return decorator


def numpy_cupy_allclose(rtol: float = 1e-7, atol: float = 0, err_msg: str = "",
                        verbose: bool = True, name: str = "xp", type_check: bool = True,
                        accept_error: Any = False, contiguous_check: bool = True,
                        **_ignored: Any) -> Callable[..., Any]:
    def check(c: Any, n: Any) -> None:
        assert_allclose(c, n, rtol, atol, err_msg, verbose)
    return _decorator(check, name, type_check, contiguous_check, accept_error)


def numpy_cupy_array_equal(err_msg: str = "", verbose: bool = True, name: str = "xp",
                           type_check: bool = True, accept_error: Any = False,
                           strides_check: bool = False, **_ignored: Any) -> Callable[..., Any]:
    def check(c: Any, n: Any) -> None:
        assert_array_equal(c, n, err_msg, verbose, strides_check)
    return _decorator(check, name, type_check, False, accept_error)
