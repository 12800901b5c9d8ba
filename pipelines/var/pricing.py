"""Black–Scholes prices of European options, vectorised for NumPy and CuPy.

NumPy has no ``erf``, and scipy must not be a runtime dependency, so the normal CDF is the
Cephes ``ndtr`` rational approximation: relative error below 3e-14 for |a| < 10 and 3e-13
down to the underflow limit (exp(-x²) magnifies the rounding of x²), checked against
:func:`math.erfc` in the tests.  On a GPU the same formula runs as one
``cupy.ElementwiseKernel`` using CUDA's ``normcdf`` (a few ulp), so the two paths agree far
inside the 1e-10 relative bound the pipeline promises.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from streampipe import gpu

__all__ = ["norm_cdf", "bs_price", "bs_pnl"]

_SQRTH = math.sqrt(0.5)

# Cephes ndtr.c coefficients (Moshier, Cephes Math Library 2.x): erfc on [1, 8) and [8, inf),
# erf on [0, 1).  Highest power first, as polevl expects.
_P = (
    2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
    4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
    9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2,
)  # fmt: skip
_Q = (
    1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
    9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
    1.65666309194161350182e3, 5.57535340817727675546e2,
)  # fmt: skip
_R = (
    5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
    6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0,
)  # fmt: skip
_S = (
    1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
    1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0,
)  # fmt: skip
_T = (
    9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
    7.00332514112805075473e3, 5.55923013010394962768e4,
)  # fmt: skip
_U = (
    1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
    2.26290000613890934246e4, 4.92673942608635921086e4,
)  # fmt: skip


def _polevl(x: np.ndarray, coef: tuple[float, ...]) -> np.ndarray:
    out = np.full_like(x, coef[0])
    for c in coef[1:]:
        out = out * x + c
    return out


def _erfc_pos(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z >= 1 (a Cephes branch; underflows to 0 past exp(-MAXLOG))."""
    e = np.exp(-z * z)
    z = np.minimum(z, 27.0)  # erfc(27) underflows anyway; keeps the polynomials finite
    big = z >= 8.0
    p = np.where(big, _polevl(z, _R), _polevl(z, _P))
    q = np.where(big, _polevl(z, _S), _polevl(z, _Q))
    return e * p / q


def norm_cdf(a: Any) -> np.ndarray:
    """Standard normal CDF Φ(a), elementwise, to <3e-14 relative for |a| < 10 (see module doc)."""
    x = np.asarray(a, dtype=np.float64) * _SQRTH
    z = np.abs(x)
    out = np.empty_like(x)
    # |x| < 1: 0.5 + 0.5 erf(x) (no cancellation worth naming); beyond, erfc of |x| keeps the
    # relative precision of tiny lower-tail probabilities, reflected for the upper half.
    near = z < 1.0
    xn = x[near]
    xx = xn * xn
    out[near] = 0.5 + 0.5 * (xn * _polevl(xx, _T) / _polevl(xx, _U))
    far = ~near
    y = 0.5 * _erfc_pos(z[far])
    out[far] = np.where(x[far] > 0, 1.0 - y, y)
    return out


# Parameter names avoid single capitals: CuPy reads those as type placeholders.
_BS_BODY = """
    double sq = sqrt(tau);
    double vs = vol * sq;
    double d1 = (log(spot / strike) + (rate + 0.5 * vol * vol) * tau) / vs;
    double d2 = d1 - vs;
    double kd = strike * exp(-rate * tau);
    if (is_call) {
        price = spot * normcdf(d1) - kd * normcdf(d2);
    } else {
        price = kd * normcdf(-d2) - spot * normcdf(-d1);
    }
"""


@lru_cache(maxsize=4)
def _bs_kernel(cp: Any) -> Any:
    """The kernel on the CuPy module ``cp`` (real CuPy or the stand-in, whose NumPy reference
    is :func:`bs_price` on NumPy)."""
    return cp.ElementwiseKernel(
        "float64 spot, float64 strike, float64 tau, float64 vol, float64 rate, int32 is_call",
        "float64 price",
        _BS_BODY,
        "streampipe_var_bs_price",
    )


def bs_price(
    xp: Any,
    S: Any,
    K: Any,
    T: Any,
    sigma: Any,
    r: Any,
    is_call: Any,
) -> Any:
    """Black–Scholes value of one European option; arguments broadcast elementwise.

    ``is_call`` is 1 for a call, 0 for a put.  ``S = 0`` gives the limits (call 0, put
    ``K*exp(-rT)``).  With ``xp`` = cupy the arrays must be on the device and the result is too.
    """
    if xp is not np:
        return _bs_kernel(xp)(S, K, T, sigma, r, xp.asarray(is_call, dtype=xp.int32))
    S, K, T, sigma, r = (np.asarray(v, dtype=np.float64) for v in (S, K, T, sigma, r))
    call = np.asarray(is_call) != 0
    sq = np.sqrt(T)
    vs = sigma * sq
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right limit for S = 0
        d1 = (np.log(S / K) + (r + 0.5 * sigma * sigma) * T) / vs
    d2 = d1 - vs
    kd = K * np.exp(-r * T)
    # Φ(-d) is computed directly (not 1 - Φ(d)) so out-of-the-money puts keep their precision.
    d1c, d2c = np.broadcast_arrays(np.where(call, d1, -d1), np.where(call, d2, -d2))
    n1, n2 = norm_cdf(d1c), norm_cdf(d2c)
    with np.errstate(invalid="ignore"):  # 0 * Φ(±inf) at S = 0; fixed up below
        price = np.where(call, S * n1 - kd * n2, kd * n2 - S * n1)
    return np.where(S == 0, np.where(call, 0.0, kd), price)


# The valuation kernel: one thread per (scenario, option) of an (m, n_options) output; the
# scenario's shocked factor levels are a raw (m, F) array read at the option's factor.
_BS_PNL_BODY = """
    const ptrdiff_t row = i / n_options;
    const double spot = levels[row * n_factors + factor];
    double price;
""" + _BS_BODY + """
    value = quantity * (price - base);
"""


@lru_cache(maxsize=4)
def _bs_pnl_kernel(cp: Any) -> Any:
    return cp.ElementwiseKernel(
        "raw float64 levels, int32 n_factors, int32 n_options, int32 factor, float64 strike, "
        "float64 tau, float64 vol, float64 rate, int32 is_call, float64 quantity, float64 base",
        "float64 value",
        _BS_PNL_BODY,
        "streampipe_var_bs_pnl",
    )


def bs_pnl(xp: Any, levels: Any, factor: Any, strike: Any, expiry: Any, vol: Any, rate: Any,
           is_call: Any, quantity: Any, base: Any) -> Any:
    """``quantity_j * (BS(levels[:, factor_j], option j) - base_j)``, shape ``(m, n_options)``.

    ``levels`` is ``(m, F)``; the option arrays are ``(n_options,)`` (``factor`` and ``is_call``
    int32 on a GPU).  On CuPy one kernel launch computes the whole matrix.
    """
    if xp is not np:
        m, n = levels.shape[0], factor.shape[0]
        out = xp.empty((m, n), dtype=xp.float64)
        return _bs_pnl_kernel(xp)(levels, np.int32(levels.shape[1]), np.int32(n), factor,
                                  strike, expiry, vol, rate, is_call, quantity, base, out)
    # C order: a gather along axis 1 comes out in F order, and NumPy sums rows of an F-order
    # matrix in another order than rows of a C-order one (or one row alone)
    lv = np.ascontiguousarray(levels[:, factor])
    price = bs_price(np, lv, strike, expiry, vol, rate, is_call)
    return quantity * (price - base)


def _bs_pnl_reference(levels: np.ndarray, n_factors: Any, n_options: Any, factor: np.ndarray,
                      *rest: np.ndarray) -> np.ndarray:
    """What the kernel computes, as the NumPy path computes it (for the CuPy stand-in)."""
    rows = np.arange(levels.size // int(n_factors))[:, None]
    strike, expiry, vol, rate, is_call, quantity, base = (a[0] for a in rest)
    lv = levels.reshape(-1, int(n_factors))[rows, factor[0]]
    return quantity * (bs_price(np, lv, strike, expiry, vol, rate, is_call) - base)


# the CuPy stand-in runs the kernels as the NumPy path
gpu.register_kernel_reference("streampipe_var_bs_price", lambda *args: bs_price(np, *args))
gpu.register_kernel_reference("streampipe_var_bs_pnl", _bs_pnl_reference)
