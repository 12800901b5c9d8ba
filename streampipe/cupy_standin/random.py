"""``cupy.random`` of the stand-in.

CuPy's generators do not produce NumPy's numbers for the same seed, so neither does this one
(it draws from Philox, not NumPy's PCG64/MT19937): a GPU path that only agrees with the CPU
path because both happened to use NumPy's stream fails here as it would on a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy

from ._array import _wrap

_SALT = 0x5DEECE66D


class Generator:
    """``cupy.random.default_rng(seed)``: a few of numpy.random.Generator's methods."""

    def __init__(self, seed: Any = None) -> None:
        key = None if seed is None else (int(seed) ^ _SALT)
        self._g = numpy.random.Generator(numpy.random.Philox(key))

    def _d(self, a: Any) -> Any:
        return _wrap(numpy.asarray(a))

    def random(self, size: Any = None, dtype: Any = numpy.float64) -> Any:
        return self._d(self._g.random(size, dtype=dtype))

    def standard_normal(self, size: Any = None, dtype: Any = numpy.float64) -> Any:
        return self._d(self._g.standard_normal(size, dtype=dtype))

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return self._d(self._g.normal(loc, scale, size))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        return self._d(self._g.uniform(low, high, size))

    def integers(self, low: int, high: int | None = None, size: Any = None,
                 dtype: Any = numpy.int64) -> Any:
        return self._d(self._g.integers(low, high, size, dtype=dtype))

    def permutation(self, x: Any) -> Any:
        return self._d(self._g.permutation(x))


_global = Generator()


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)


def seed(seed: Any = None) -> None:
    global _global
    _global = Generator(seed)


def rand(*size: int) -> Any:
    return _global.random(size or None)


def randn(*size: int) -> Any:
    return _global.standard_normal(size or None)


def random(size: Any = None) -> Any:
    return _global.random(size)


random_sample = random


def standard_normal(size: Any = None) -> Any:
    return _global.standard_normal(size)


def normal(loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
    return _global.normal(loc, scale, size)


def uniform(low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
    return _global.uniform(low, high, size)


def randint(low: int, high: int | None = None, size: Any = None, dtype: Any = int) -> Any:
    return _global.integers(low, high, size, dtype=dtype)


def permutation(x: Any) -> Any:
    return _global.permutation(x)
