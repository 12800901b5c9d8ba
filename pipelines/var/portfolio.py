"""Portfolio files: TOML -> validated :class:`Portfolio` (plain arrays ready for valuation).

The schema is documented in ``pipelines/var/README.md``.  Every error is a
:class:`PortfolioError` whose message starts with the file and names the bad field,
e.g. ``portfolio.toml: positions[3].vol: must be > 0, got -0.2``.  Large books keep their
positions in a CSV or HDF5 file named by ``[book]`` (or generated from a seed), see
:mod:`.book`; their errors name the file, row and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .book import GENERATE_KEYS, BookError, book_columns, generate_book, read_book
from .pricing import bs_price

__all__ = ["PortfolioError", "Portfolio", "load_portfolio", "parse_portfolio", "resolve_path"]

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_PORTFOLIO = DATA_DIR / "portfolio.toml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

_MODEL_KEYS = {"horizon_days", "confidence", "returns"}
_TOP_KEYS = {"model", "factors", "correlation", "covariance", "positions", "book"}
_FACTOR_KEYS = {"name", "spot", "daily_vol"}
_LINEAR_KEYS = {"kind", "name", "factor", "quantity"}
_OPTION_KEYS = _LINEAR_KEYS | {"type", "strike", "expiry", "vol", "rate"}
_OPTION_REQUIRED = ("factor", "quantity", "type", "strike", "expiry", "vol")


class PortfolioError(ValueError):
    """A portfolio file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Portfolio:
    """A validated portfolio, as arrays indexed by factor and by position.

    Attributes:
        factors: factor names, in covariance order.
        spots: spot level of each factor, shape (F,).
        cov_daily: daily covariance of the factor returns, shape (F, F).
        chol_daily: lower Cholesky factor of ``cov_daily``.
        horizon_days: risk horizon; shocks have covariance ``horizon_days * cov_daily``.
        confidence: default confidence levels for VaR/ES.
        returns: ``"log"`` (shocked spot ``S*exp(r)``) or ``"arithmetic"`` (``S*(1+r)``).
        lin_factor, lin_quantity: factor index and quantity of each linear position.
        opt_factor, opt_quantity, opt_strike, opt_expiry, opt_vol, opt_rate, opt_call:
            per-option arrays (``opt_call`` is 1 for a call, 0 for a put).
        opt_base: Black–Scholes value of one unit of each option at today's spots.
        names: position names in file order (linear first, then options, as in the arrays);
            empty for a book file without a ``name`` column.
        lin_weight: ``sum(quantity * spot)`` of the linear positions on each factor, shape (F,),
            added in file order: the linear P&L is ``sum_f lin_weight[f] * g_f``.
    """

    factors: tuple[str, ...]
    spots: np.ndarray
    cov_daily: np.ndarray
    chol_daily: np.ndarray
    horizon_days: float
    confidence: tuple[float, ...]
    returns: str
    lin_factor: np.ndarray
    lin_quantity: np.ndarray
    opt_factor: np.ndarray
    opt_quantity: np.ndarray
    opt_strike: np.ndarray
    opt_expiry: np.ndarray
    opt_vol: np.ndarray
    opt_rate: np.ndarray
    opt_call: np.ndarray
    opt_base: np.ndarray
    names: tuple[str, ...]
    lin_weight: np.ndarray

    @property
    def n_factors(self) -> int:
        return len(self.factors)

    @property
    def n_positions(self) -> int:
        return len(self.lin_factor) + len(self.opt_factor)

    def shock_chol(self, horizon_days: float | None = None) -> np.ndarray:
        """Lower Cholesky factor of the horizon covariance (square-root-of-time scaling)."""
        h = self.horizon_days if horizon_days is None else horizon_days
        return self.chol_daily * math.sqrt(h)


def resolve_path(path: str | Path | None) -> Path:
    """The file for a ``portfolio`` param: as given, else relative to the project root or ``data/``.

    The fallbacks let a job file say ``portfolio = "pipelines/var/data/linear.toml"`` (or just
    ``"linear.toml"``) and still run from another working directory.
    """
    if path is None:
        return DEFAULT_PORTFOLIO
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    for base in (PROJECT_ROOT, DATA_DIR):
        if (base / p).exists():
            return base / p
    return p


def load_portfolio(path: str | Path | None = None, positions: bool = True) -> Portfolio:
    """Read and validate a portfolio TOML file (default: the shipped example).

    ``positions=False`` reads the model and factors only (the scenario generator and the
    aggregator need no positions, which for a book file saves reading it).
    """
    p = resolve_path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PortfolioError(f"portfolio {str(p)!r}: cannot read file ({e.strerror})") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PortfolioError(f"{p}: not valid TOML: {e}") from e
    return parse_portfolio(doc, source=str(p), base_dir=p.parent, positions=positions)


def parse_portfolio(doc: dict[str, Any], source: str = "portfolio",
                    base_dir: str | Path | None = None, positions: bool = True) -> Portfolio:
    """Validate a parsed portfolio document; errors are prefixed with ``source``.

    ``base_dir`` is where a relative ``[book] file`` is looked up (the TOML's directory).
    """
    v = _Validator(source)
    v.unknown(doc, _TOP_KEYS, "")

    model = v.table(doc, "model", required=False)
    v.unknown(model, _MODEL_KEYS, "model.")
    horizon = v.number(model, "horizon_days", "model.", default=1.0, positive=True)
    conf = model.get("confidence", [0.99, 0.975])
    if not isinstance(conf, list) or not conf:
        v.fail("model.confidence", f"must be a non-empty list of levels, got {conf!r}")
    levels = tuple(v.level(c, f"model.confidence[{i}]") for i, c in enumerate(conf))
    returns = model.get("returns", "log")
    if returns not in ("log", "arithmetic"):
        v.fail("model.returns", f"must be 'log' or 'arithmetic', got {returns!r}")

    factors = doc.get("factors")
    if not isinstance(factors, list) or not factors:
        v.fail("factors", "missing or empty: give at least one [[factors]] table")
    names: list[str] = []
    spots, vols = [], []
    has_cov = "covariance" in doc
    for i, f in enumerate(factors):
        where = f"factors[{i}]."
        if not isinstance(f, dict):
            v.fail(f"factors[{i}]", "must be a table")
        v.unknown(f, _FACTOR_KEYS, where)
        name = f.get("name")
        if not isinstance(name, str) or not name:
            v.fail(where + "name", f"must be a non-empty string, got {name!r}")
        if name in names:
            v.fail(where + "name", f"duplicate factor name {name!r}")
        names.append(name)
        spots.append(v.number(f, "spot", where, positive=True))
        if not has_cov:
            vols.append(v.number(f, "daily_vol", where, positive=True))
        elif "daily_vol" in f:  # two sources of the same variance: refuse rather than pick one
            v.fail(
                where + "daily_vol", "not used with [covariance]; remove it or use [correlation]"
            )
    n = len(names)
    cov = _covariance(doc, v, n, np.array(vols) if not has_cov else None)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        which = "covariance.matrix" if has_cov else "correlation.matrix"
        low = float(np.linalg.eigvalsh(cov).min())
        v.fail(which, f"not positive definite (smallest eigenvalue of the covariance {low:.3g})")

    spots_a = np.array(spots, dtype=np.float64)
    names_t = tuple(names)
    if "book" in doc and "positions" in doc:
        v.fail("book", "give either [book] or [[positions]], not both")
    if not positions:
        cols = _no_positions()
    elif "book" in doc:
        cols = _book(doc, v, names_t, spots_a, Path(base_dir or "."))
    else:
        cols = _toml_positions(doc, v, names)
    opt_factor = cols["opt_factor"]
    base = bs_price(np, spots_a[opt_factor], cols["opt_strike"], cols["opt_expiry"],
                    cols["opt_vol"], cols["opt_rate"], cols["opt_call"])
    weight = np.zeros(len(names))
    np.add.at(weight, cols["lin_factor"], cols["lin_quantity"] * spots_a[cols["lin_factor"]])
    return Portfolio(
        factors=names_t,
        spots=spots_a,
        cov_daily=cov,
        chol_daily=chol,
        horizon_days=horizon,
        confidence=levels,
        returns=returns,
        lin_factor=cols["lin_factor"],
        lin_quantity=cols["lin_quantity"],
        opt_factor=opt_factor,
        opt_quantity=cols["opt_quantity"],
        opt_strike=cols["opt_strike"],
        opt_expiry=cols["opt_expiry"],
        opt_vol=cols["opt_vol"],
        opt_rate=cols["opt_rate"],
        opt_call=cols["opt_call"],
        opt_base=np.asarray(base, dtype=np.float64),
        names=cols["names"],
        lin_weight=weight,
    )


def _no_positions() -> dict[str, Any]:
    e = np.empty(0)
    return {"lin_factor": np.empty(0, np.intp), "lin_quantity": e, "opt_factor":
            np.empty(0, np.intp), "opt_quantity": e, "opt_strike": e, "opt_expiry": e,
            "opt_vol": e, "opt_rate": e, "opt_call": np.empty(0, np.int32), "names": ()}


def _book(doc: dict[str, Any], v: _Validator, names: tuple[str, ...], spots: np.ndarray,
          base_dir: Path) -> dict[str, Any]:
    """Positions from ``[book] file = ...`` or ``[book] generate = {...}``."""
    book = v.table(doc, "book", required=True)
    v.exactly_one(book, "book", {"file": 'file = "positions.csv"', "generate": "generate = {...}"})
    if "file" in book:
        f = book["file"]
        if not isinstance(f, str) or not f:
            v.fail("book.file", f"must be a file name, got {f!r}")
        path = Path(f) if Path(f).is_absolute() else base_dir / f
        try:
            return read_book(path, names)
        except BookError as e:
            raise PortfolioError(str(e)) from None
    g = book["generate"]
    if not isinstance(g, dict):
        v.fail("book.generate", f"must be a table, got {g!r}")
    v.unknown(g, GENERATE_KEYS, "book.generate.")
    n = g.get("positions")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        v.fail("book.generate.positions", f"must be an integer >= 1, got {n!r}")
    seed = g.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        v.fail("book.generate.seed", f"must be an integer >= 0, got {seed!r}")
    frac = g.get("option_fraction", 0.1)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
        v.fail("book.generate.option_fraction", f"must be in [0, 1], got {frac!r}")
    cols = generate_book(names, spots, n, seed, float(frac))
    return book_columns(cols, names, f"{v.source} [book.generate]")


def _toml_positions(doc: dict[str, Any], v: _Validator, names: list[str]) -> dict[str, Any]:
    positions = doc.get("positions")
    if not isinstance(positions, list) or not positions:
        v.fail("positions", "missing or empty: give at least one [[positions]] table "
               "(or a [book])")
    lin: list[tuple[int, float, str]] = []
    opt: list[tuple[Any, ...]] = []
    for i, pos in enumerate(positions):
        where = f"positions[{i}]."
        if not isinstance(pos, dict):
            v.fail(f"positions[{i}]", "must be a table")
        kind = pos.get("kind")
        if kind not in ("linear", "option"):
            v.fail(where + "kind", f"must be 'linear' or 'option', got {kind!r}")
        v.unknown(pos, _LINEAR_KEYS if kind == "linear" else _OPTION_KEYS, where)
        for key in ("factor", "quantity") if kind == "linear" else _OPTION_REQUIRED:
            if key not in pos:
                v.fail(where + key, f"missing (required for a {kind} position)")
        fac = pos["factor"]
        if fac not in names:
            v.fail(where + "factor", f"unknown factor {fac!r} (factors: {', '.join(names)})")
        label = str(pos.get("name", f"{kind}[{i}] on {fac}"))
        qty = v.number(pos, "quantity", where)
        if kind == "linear":
            lin.append((names.index(fac), qty, label))
            continue
        typ = pos["type"]
        if typ not in ("call", "put"):
            v.fail(where + "type", f"must be 'call' or 'put', got {typ!r}")
        opt.append(
            (
                names.index(fac),
                qty,
                v.number(pos, "strike", where, positive=True),
                v.number(pos, "expiry", where, positive=True),
                v.number(pos, "vol", where, positive=True),
                v.number(pos, "rate", where, default=0.0),
                1 if typ == "call" else 0,
                label,
            )
        )
    cols = list(zip(*opt, strict=True)) if opt else [()] * 8
    arrays = [np.array(c, dtype=np.float64) for c in cols[1:6]]
    return {
        "lin_factor": np.array([p[0] for p in lin], dtype=np.intp),
        "lin_quantity": np.array([p[1] for p in lin], dtype=np.float64),
        "opt_factor": np.array(cols[0], dtype=np.intp),
        "opt_quantity": arrays[0], "opt_strike": arrays[1], "opt_expiry": arrays[2],
        "opt_vol": arrays[3], "opt_rate": arrays[4],
        "opt_call": np.array(cols[6], dtype=np.int32),
        "names": tuple(p[2] for p in lin) + tuple(o[7] for o in opt),
    }


def _covariance(doc: dict[str, Any], v: _Validator, n: int, vols: np.ndarray | None) -> np.ndarray:
    """Daily covariance from ``[covariance] matrix`` or from factor vols and ``[correlation]``."""
    if vols is None:
        if "correlation" in doc:
            v.fail("correlation", "give either [covariance] or [correlation] with daily_vol")
        table = v.table(doc, "covariance", required=True)
        v.unknown(table, {"matrix"}, "covariance.")
        cov = v.matrix(table, "covariance.matrix", n)
        if np.any(np.diag(cov) <= 0):
            i = int(np.argmin(np.diag(cov)))
            v.fail(f"covariance.matrix[{i}][{i}]", f"variance must be > 0, got {cov[i, i]!r}")
        return cov
    if "correlation" not in doc:
        if n == 1:
            return np.array([[vols[0] ** 2]])
        v.fail(
            "correlation", "missing: several factors need [correlation] matrix (or [covariance])"
        )
    table = v.table(doc, "correlation", required=True)
    v.exactly_one(table, "correlation", {"matrix": "matrix = [[...]]", "uniform": "uniform = rho"})
    if "uniform" in table:
        rho = table["uniform"]
        low = -1.0 / (n - 1) if n > 1 else -1.0
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not low < rho < 1:
            v.fail("correlation.uniform", f"must be in ({low:.4g}, 1) for {n} factors (positive "
                   f"definite), got {rho!r}")
        corr = np.full((n, n), float(rho))
        np.fill_diagonal(corr, 1.0)
        return corr * np.outer(vols, vols)
    corr = v.matrix(table, "correlation.matrix", n)
    for i in range(n):
        if corr[i, i] != 1.0:
            v.fail(f"correlation.matrix[{i}][{i}]", f"diagonal must be 1, got {corr[i, i]!r}")
        for j in range(n):
            if abs(corr[i, j]) > 1.0:
                v.fail(f"correlation.matrix[{i}][{j}]", f"must be in [-1, 1], got {corr[i, j]!r}")
    return corr * np.outer(vols, vols)


class _Validator:
    """Small typed getters that raise :class:`PortfolioError` naming ``source`` and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, msg: str) -> None:
        raise PortfolioError(f"{self.source}: {field}: {msg}")

    def unknown(self, table: dict[str, Any], known: set[str], where: str) -> None:
        extra = sorted(set(table) - known)
        if extra:
            self.fail(where + extra[0], f"unknown key (known: {', '.join(sorted(known))})")

    def exactly_one(self, table: dict[str, Any], where: str, keys: dict[str, str]) -> None:
        """``table`` holds exactly one of ``keys`` (key -> how to write it) and nothing else."""
        self.unknown(table, set(keys), where + ".")
        if sum(k in table for k in keys) != 1:
            self.fail(where, f"give exactly one of {' and '.join(keys.values())}")

    def table(self, doc: dict[str, Any], key: str, required: bool) -> dict[str, Any]:
        t = doc.get(key)
        if t is None:
            if required:
                self.fail(key, "missing table")
            return {}
        if not isinstance(t, dict):
            self.fail(key, f"must be a table, got {type(t).__name__}")
        return t

    def number(
        self,
        table: dict[str, Any],
        key: str,
        where: str,
        default: float | None = None,
        positive: bool = False,
    ) -> float:
        if key not in table:
            if default is None:
                self.fail(where + key, "missing")
            return float(default)
        x = table[key]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            self.fail(where + key, f"must be a finite number, got {x!r}")
        if positive and x <= 0:
            self.fail(where + key, f"must be > 0, got {x!r}")
        return float(x)

    def level(self, x: Any, field: str) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 < x < 1.0:
            self.fail(field, f"must be a confidence level in (0, 1), got {x!r}")
        return float(x)

    def matrix(self, table: dict[str, Any], field: str, n: int) -> np.ndarray:
        m = table.get("matrix")
        if (
            not isinstance(m, list)
            or len(m) != n
            or not all(isinstance(row, list) and len(row) == n for row in m)
        ):
            self.fail(field, f"must be a {n}x{n} list of rows (one per factor, in factor order)")
        for i, row in enumerate(m):
            for j, x in enumerate(row):
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                    self.fail(f"{field}[{i}][{j}]", f"must be a finite number, got {x!r}")
        a = np.array(m, dtype=np.float64)
        asym = np.abs(a - a.T)
        if asym.max() > 1e-12 * max(1.0, np.abs(a).max()):
            i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
            self.fail(
                f"{field}[{i}][{j}]", f"matrix must be symmetric ({a[i, j]!r} vs {a[j, i]!r})"
            )
        return 0.5 * (a + a.T)
