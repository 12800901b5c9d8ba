"""A small interpreter of simple CUDA C elementwise code, evaluated with NumPy.

Enough for the bodies of typical ``ElementwiseKernel``/``ReductionKernel`` definitions:
statements ``[const] type name = expr;``, ``name = expr;`` and ``name op= expr;`` over
arithmetic, comparison, logical and bitwise operators, ``?:``, casts, indexing of raw arrays and
the usual math functions (``sqrt``, ``exp``, ``normcdf``, ``fmin``, ...), with C semantics where
they differ from NumPy's (integer ``/`` and ``%`` truncate toward zero).  Anything else (``if``,
loops, pointers, user functions from a preamble) raises :class:`NotSimple`: such a kernel needs a
NumPy reference registered with :func:`streampipe.cupy_standin.register_kernel`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy


class NotSimple(ValueError):
    """The code is not simple elementwise code the interpreter understands."""


_TOKEN = re.compile(r"""
    (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fFuUlL]*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>&&|\|\||==|!=|<=|>=|<<|>>|[-+*/%&|^]=|[-+*/%<>!?:(),=\[\]&|^~.])
  | (?P<ws>\s+)
""", re.X)

C_TYPES = {
    "bool": numpy.bool_, "char": numpy.int8, "signed char": numpy.int8,
    "unsigned char": numpy.uint8, "short": numpy.int16, "unsigned short": numpy.uint16,
    "int": numpy.int32, "signed": numpy.int32, "unsigned": numpy.uint32,
    "unsigned int": numpy.uint32, "long": numpy.int64, "unsigned long": numpy.uint64,
    "long long": numpy.int64, "unsigned long long": numpy.uint64, "float": numpy.float32,
    "double": numpy.float64, "size_t": numpy.uint64, "ptrdiff_t": numpy.int64,
    "int8_t": numpy.int8, "uint8_t": numpy.uint8, "int16_t": numpy.int16,
    "uint16_t": numpy.uint16, "int32_t": numpy.int32, "uint32_t": numpy.uint32,
    "int64_t": numpy.int64, "uint64_t": numpy.uint64, "float16": numpy.float16,
    "half": numpy.float16,
}
_TYPE_WORDS = {"bool", "char", "short", "int", "long", "unsigned", "signed", "float", "double",
               "size_t", "ptrdiff_t", "const", "auto", "half",
               *(k for k in C_TYPES if " " not in k)}
_KEYWORDS = {"if", "else", "for", "while", "do", "return", "switch", "case", "break", "goto",
             "continue", "struct", "__syncthreads", "atomicAdd"}


def c_type(words: list[str], type_map: dict[str, numpy.dtype]) -> numpy.dtype | None:
    """The dtype of a C type spelled by ``words`` (``const`` and ``auto`` ignored)."""
    ws = [w for w in words if w not in ("const", "__restrict__", "restrict", "volatile")]
    if len(ws) == 1 and ws[0] in type_map:
        return numpy.dtype(type_map[ws[0]])
    name = " ".join(ws)
    if name in C_TYPES:
        return numpy.dtype(C_TYPES[name])
    if name in ("unsigned long int", "long int"):
        return numpy.dtype(numpy.uint64 if name.startswith("unsigned") else numpy.int64)
    return None


def _tokens(src: str) -> list[str]:
    out, pos = [], 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise NotSimple(f"cannot read {src[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append(m.group())
    return out


def _erf(x: Any) -> Any:
    return numpy.vectorize(math.erf, otypes=[numpy.float64])(x)


def _erfc(x: Any) -> Any:
    return numpy.vectorize(math.erfc, otypes=[numpy.float64])(x)


def _fn_table() -> dict[str, Callable[..., Any]]:
    base = {
        "sqrt": numpy.sqrt, "exp": numpy.exp, "log": numpy.log, "log10": numpy.log10,
        "log2": numpy.log2, "exp2": numpy.exp2, "expm1": numpy.expm1, "log1p": numpy.log1p,
        "sin": numpy.sin, "cos": numpy.cos, "tan": numpy.tan, "asin": numpy.arcsin,
        "acos": numpy.arccos, "atan": numpy.arctan, "atan2": numpy.arctan2, "sinh": numpy.sinh,
        "cosh": numpy.cosh, "tanh": numpy.tanh, "pow": numpy.power, "fabs": numpy.abs,
        "abs": numpy.abs, "floor": numpy.floor, "ceil": numpy.ceil, "round": _c_round,
        "rint": numpy.rint, "nearbyint": numpy.rint, "trunc": numpy.trunc, "fmin": numpy.fmin,
        "fmax": numpy.fmax, "min": numpy.minimum, "max": numpy.maximum, "fmod": numpy.fmod,
        "hypot": numpy.hypot, "cbrt": numpy.cbrt, "erf": _erf, "erfc": _erfc,
        "normcdf": lambda x: 0.5 * _erfc(-numpy.asarray(x) * math.sqrt(0.5)),
        "isnan": numpy.isnan, "isinf": numpy.isinf, "isfinite": numpy.isfinite,
        "copysign": numpy.copysign, "signbit": numpy.signbit, "rsqrt": lambda x: 1 / numpy.sqrt(x),
    }
    for name in list(base):
        base.setdefault(name + "f", base[name])
    return base


def _c_round(x: Any) -> Any:
    return numpy.where(x < 0, -numpy.floor(-x + 0.5), numpy.floor(x + 0.5))


FUNCS = _fn_table()


def _is_int(x: Any) -> bool:
    return numpy.asarray(x).dtype.kind in "biu"


def _c_div(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b):
        q = numpy.abs(a) // numpy.abs(b)
        return numpy.where((numpy.asarray(a) < 0) != (numpy.asarray(b) < 0), -q, q)
    return numpy.true_divide(a, b)


_BINOPS: dict[str, tuple[int, Callable[[Any, Any], Any]]] = {
    "||": (1, numpy.logical_or), "&&": (2, numpy.logical_and), "|": (3, numpy.bitwise_or),
    "^": (4, numpy.bitwise_xor), "&": (5, numpy.bitwise_and), "==": (6, numpy.equal),
    "!=": (6, numpy.not_equal), "<": (7, numpy.less), "<=": (7, numpy.less_equal),
    ">": (7, numpy.greater), ">=": (7, numpy.greater_equal), "<<": (8, numpy.left_shift),
    ">>": (8, numpy.right_shift), "+": (9, numpy.add), "-": (9, numpy.subtract),
    "*": (10, numpy.multiply), "/": (10, _c_div), "%": (10, numpy.fmod),
}


class _Parser:
    def __init__(self, toks: list[str], env: dict[str, Any], types: dict[str, numpy.dtype]):
        self.t, self.i, self.env, self.types = toks, 0, env, types

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise NotSimple(f"expected {want or 'more'}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self, level: int = 0) -> Any:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok == "?" and level == 0:
                self.take()
                a = self.expr()
                self.take(":")
                b = self.expr()
                left = numpy.where(left, a, b)
                continue
            if tok not in _BINOPS or _BINOPS[tok][0] <= level:
                return left
            prec, fn = _BINOPS[self.take()]
            left = fn(left, self.expr(prec))

    def cast_type(self) -> numpy.dtype | None:
        j, words = self.i + 1, []
        while j < len(self.t) and self.t[j] != ")":
            words.append(self.t[j])
            j += 1
        if not words or j >= len(self.t) or not all(w in _TYPE_WORDS or w in self.types
                                                     for w in words):
            return None
        dt = c_type(words, self.types)
        if dt is not None:
            self.i = j + 1
        return dt

    def unary(self) -> Any:
        tok = self.peek()
        if tok == "(":
            dt = self.cast_type()
            if dt is not None:
                return numpy.asarray(self.unary()).astype(dt)
            self.take()
            v = self.expr()
            self.take(")")
            return self.postfix(v)
        if tok in ("-", "+", "!", "~"):
            self.take()
            v = self.unary()
            return {"-": numpy.negative, "+": numpy.positive, "!": numpy.logical_not,
                    "~": numpy.invert}[tok](v)
        return self.postfix(self.atom())

    def atom(self) -> Any:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return _number(tok)
        if tok in ("true", "false"):
            return tok == "true"
        if tok in _KEYWORDS:
            raise NotSimple(f"{tok!r} is not simple elementwise code")
        if self.peek() == "(":
            fn = FUNCS.get(tok)
            if fn is None:
                raise NotSimple(f"unknown function {tok}()")
            self.take("(")
            args = [self.expr()]
            while self.peek() == ",":
                self.take()
                args.append(self.expr())
            self.take(")")
            return fn(*args)
        if tok not in self.env:
            raise NotSimple(f"unknown name {tok!r}")
        return self.env[tok]

    def postfix(self, v: Any) -> Any:
        while self.peek() == "[":
            self.take()
            idx = numpy.asarray(self.expr())
            self.take("]")
            v = numpy.asarray(v).reshape(-1)[idx.astype(numpy.int64)]
        return v


def _number(tok: str) -> Any:
    t = tok.rstrip("uUlL")
    if t.lower().startswith("0x"):
        return int(t, 16)
    if t[-1] in "fF" and not t.lower().startswith("0x"):
        return numpy.float32(float(t[:-1]))
    if any(c in t for c in ".eE"):
        return float(t)
    return int(t)


def strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    return re.sub(r"//[^\n]*", " ", code)


def run(code: str, env: dict[str, Any], types: dict[str, numpy.dtype]) -> dict[str, Any]:
    """Execute the statements of ``code`` on ``env`` (name -> NumPy value); returns ``env``."""
    code = strip_comments(code)
    if any(c in code for c in "{}#"):
        raise NotSimple("blocks and preprocessor lines are not simple elementwise code")
    for stmt in code.split(";"):
        toks = _tokens(stmt)
        if not toks:
            continue
        if toks[0] in _KEYWORDS:
            raise NotSimple(f"{toks[0]!r} is not simple elementwise code")
        j, declared = 0, None
        while j < len(toks) - 1 and (toks[j] in _TYPE_WORDS or toks[j] in types) \
                and toks[j + 1] not in ("=", "+=", "-=", "*=", "/=", "%=", "[", "("):
            j += 1
        if j:
            declared = c_type(toks[:j], types) if toks[j - 1] != "auto" else None
        name = toks[j]
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or j + 1 >= len(toks):
            raise NotSimple(f"cannot read statement {stmt.strip()!r}")
        assign = toks[j + 1]
        if assign not in ("=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^="):
            raise NotSimple(f"cannot read statement {stmt.strip()!r}")
        p = _Parser(toks[j + 2:], env, types)
        value = p.expr()
        if p.peek() is not None:
            raise NotSimple(f"unexpected {p.peek()!r} in {stmt.strip()!r}")
        if assign != "=":
            if name not in env:
                raise NotSimple(f"unknown name {name!r}")
            value = _BINOPS[assign[0]][1](env[name], value)
        dt = declared if declared is not None else types.get(f"<var {name}>")
        if dt is not None:
            value = numpy.asarray(value).astype(dt)
            types[f"<var {name}>"] = dt
        env[name] = value
    return env
