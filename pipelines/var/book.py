"""Books of 10^4-10^6 positions: CSV and HDF5 position files, and a seeded book generator.

A portfolio TOML names its positions file in ``[book] file = "..."`` (or asks for a generated
book with ``[book] generate = {...}``) instead of listing ``[[positions]]``.  The format is in
``README.md``; in short, one row per position with the columns

    kind, factor, quantity, type, strike, expiry, vol, rate, name

where ``kind``, ``factor`` and ``quantity`` are required, ``type``/``strike``/``expiry``/``vol``
are required for options and must be empty for linear rows, ``rate`` defaults to 0 and ``name``
is optional.  CSV has a header line; HDF5 has the columns as equal-length 1-D datasets in the
group ``/positions`` (strings as bytes, empty option fields as NaN or b"").  Validation is
vectorised, and the first bad row is reported with its field:
``book.csv: row 17 (line 19): strike: must be > 0, got -3.0``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "BookError", "read_book", "write_book", "generate_book", "book_columns",
           "portfolio_columns"]

COLUMNS = ("kind", "factor", "quantity", "type", "strike", "expiry", "vol", "rate", "name")
REQUIRED = ("kind", "factor", "quantity")
OPTION_FIELDS = ("type", "strike", "expiry", "vol", "rate")
_NUMERIC = ("quantity", "strike", "expiry", "vol", "rate")
GENERATE_KEYS = {"positions", "seed", "option_fraction"}


class BookError(ValueError):
    """A positions file that cannot be used; the message names the file, row and field."""


class _Where:
    def __init__(self, source: str, csv_lines: bool) -> None:
        self.source, self.csv_lines = source, csv_lines

    def fail(self, row: int, field: str, msg: str) -> None:
        at = f"row {row} (line {row + 2})" if self.csv_lines else f"row {row}"
        raise BookError(f"{self.source}: {at}: {field}: {msg}")


def _text(col: Any) -> np.ndarray:
    a = np.asarray(col)
    if a.dtype.kind == "S":
        try:
            a = a.astype(str)  # ASCII: fast
        except UnicodeDecodeError:
            a = np.char.decode(a, "utf-8")
    elif a.dtype.kind == "O":
        a = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a])
    return np.char.strip(a.astype(str))


def _numbers(col: np.ndarray, field: str, where: _Where) -> np.ndarray:
    """Float column; empty cells are NaN, anything else unparsable fails naming its row."""
    if col.dtype.kind == "f":
        return col.astype(np.float64)
    text = _text(col)
    out = np.full(len(text), np.nan)
    full = text != ""
    try:
        out[full] = text[full].astype(np.float64)
    except ValueError:
        for i in np.flatnonzero(full):
            try:
                float(text[i])
            except ValueError:
                where.fail(int(i), field, f"must be a number, got {str(text[i])!r}")
    return out


def book_columns(cols: dict[str, Any], factors: tuple[str, ...], source: str,
                 csv_lines: bool = False) -> dict[str, Any]:
    """Validate position columns; returns the per-kind arrays a :class:`Portfolio` holds."""
    where = _Where(source, csv_lines)
    unknown = sorted(set(cols) - set(COLUMNS))
    if unknown:
        raise BookError(f"{source}: column {unknown[0]!r}: unknown (known: {', '.join(COLUMNS)})")
    for name in REQUIRED:
        if name not in cols:
            raise BookError(f"{source}: column {name!r}: missing")
    n = len(cols["kind"])
    if n == 0:
        raise BookError(f"{source}: no positions")
    for name, col in cols.items():
        if len(col) != n:
            raise BookError(f"{source}: column {name!r}: {len(col)} rows, column 'kind' has {n}")
    kind = _text(cols["kind"])
    fac = _text(cols["factor"])
    typ = _text(cols["type"]) if "type" in cols else np.full(n, "")
    num = {k: _numbers(cols[k], k, where) if k in cols else np.full(n, np.nan) for k in _NUMERIC}
    is_opt = kind == "option"
    uniq, inv = np.unique(fac, return_inverse=True)
    fidx = {f: i for i, f in enumerate(factors)}
    factor = np.array([fidx.get(str(f), -1) for f in uniq], dtype=np.intp)[inv.reshape(-1)]
    rate_empty = np.isnan(num["rate"])
    # every check as (bad-row mask, field, message for the row); the first bad row is reported
    checks: list[tuple[np.ndarray, str, Any]] = [
        (~np.isin(kind, ["linear", "option"]), "kind",
         lambda i: f"must be 'linear' or 'option', got {str(kind[i])!r}"),
        (factor < 0, "factor",
         lambda i: f"unknown factor {str(fac[i])!r} (factors: {', '.join(factors)})"),
        (~np.isfinite(num["quantity"]), "quantity", lambda i: _bad_number(num["quantity"][i])),
        (is_opt & ~np.isin(typ, ["call", "put"]), "type",
         lambda i: f"must be 'call' or 'put', got {str(typ[i])!r}"),
    ]
    for k in ("strike", "expiry", "vol"):
        v = num[k]
        checks.append((is_opt & ~(np.isfinite(v) & (v > 0)), k,
                       lambda i, v=v: "missing (required for an option)" if np.isnan(v[i])
                       else f"must be > 0, got {float(v[i])!r}"))
    checks.append((is_opt & ~rate_empty & ~np.isfinite(num["rate"]), "rate",
                   lambda i: _bad_number(num["rate"][i])))
    lin = kind == "linear"
    for k in OPTION_FIELDS:
        filled = (typ != "") if k == "type" else ~np.isnan(num[k])
        checks.append((lin & filled, k, lambda i: "only options have it (this row is linear)"))
    first = [(int(np.argmax(bad)), j) for j, (bad, _, _) in enumerate(checks) if bad.any()]
    if first:
        row, j = min(first)
        where.fail(row, checks[j][1], checks[j][2](row))
    opt = np.flatnonzero(is_opt)
    linr = np.flatnonzero(lin)
    names = tuple(_text(cols["name"]).tolist()) if "name" in cols else ()
    return {
        "lin_factor": factor[linr], "lin_quantity": num["quantity"][linr],
        "opt_factor": factor[opt], "opt_quantity": num["quantity"][opt],
        "opt_strike": num["strike"][opt], "opt_expiry": num["expiry"][opt],
        "opt_vol": num["vol"][opt], "opt_rate": np.where(rate_empty, 0.0, num["rate"])[opt],
        "opt_call": (typ[opt] == "call").astype(np.int32),
        "names": tuple(names[i] for i in linr) + tuple(names[i] for i in opt) if names else (),
    }


def _bad_number(x: float) -> str:
    return "missing" if np.isnan(x) else f"must be a finite number, got {float(x)!r}"


def read_book(path: str | Path, factors: tuple[str, ...]) -> dict[str, Any]:
    """Read and validate a positions file (``.csv`` or ``.h5``/``.hdf5``)."""
    p = Path(path)
    source = str(p)
    if not p.exists():
        raise BookError(f"positions file {source!r}: cannot read file (not found)")
    if p.suffix.lower() == ".csv":
        with open(p, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise BookError(f"{source}: empty file (need a header line: {', '.join(COLUMNS)})")
        head = [h.strip() for h in rows[0]]
        body = rows[1:]
        for i, r in enumerate(body):
            if len(r) != len(head):
                raise BookError(f"{source}: row {i} (line {i + 2}): has {len(r)} fields, the "
                                f"header has {len(head)}")
        columns = list(zip(*body, strict=True)) if body else [()] * len(head)
        cols = {h: np.array(c, dtype=str) for h, c in zip(head, columns, strict=True)}
        if len(set(head)) != len(head):
            raise BookError(f"{source}: header: duplicate column names {head}")
        return book_columns(cols, factors, source, csv_lines=True)
    if p.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(p, "r") as f:
                if "positions" not in f:
                    raise BookError(f"{source}: no group /positions")
                cols = {k: f["positions"][k][()] for k in f["positions"]}
        except OSError as e:
            raise BookError(f"{source}: not a readable HDF5 file ({e})") from e
        return book_columns(cols, factors, source)
    raise BookError(f"{source}: positions file must end in .csv, .h5 or .hdf5")


def write_book(path: str | Path, cols: dict[str, Any]) -> Path:
    """Write position columns (as :func:`generate_book` returns them) to CSV or HDF5."""
    p = Path(path)
    n = len(cols["kind"])
    if p.suffix.lower() == ".csv":
        names = [c for c in COLUMNS if c in cols]
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            for i in range(n):
                w.writerow(["" if isinstance(v, float) and math.isnan(v) else
                            repr(v) if isinstance(v, float) else v
                            for v in (_cell(cols[c][i]) for c in names)])
        return p
    import h5py

    with h5py.File(p, "w") as f:
        g = f.create_group("positions")
        g.attrs["format"] = "streampipe-var-book"
        g.attrs["version"] = 1
        for c in COLUMNS:
            if c in cols:
                a = np.asarray(cols[c])
                g.create_dataset(c, data=np.char.encode(a.astype(str)) if a.dtype.kind in "UO"
                                 else a)
    return p


def _cell(v: Any) -> Any:
    return float(v) if isinstance(v, (np.floating, float)) else str(v)


def generate_book(factors: tuple[str, ...], spots: np.ndarray, positions: int, seed: int = 0,
                  option_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """A reproducible book of ``positions`` rows over ``factors`` (the same columns as a file).

    Row ``i`` is an option with probability ``option_fraction``.  Linear rows hold ±(10..1000)
    units; options are calls or puts on ±(10..500) units with strike ``spot·U(0.8, 1.2)``, expiry
    ``U(0.1, 2)`` years, vol ``U(0.15, 0.6)`` and rate 0.03.  Everything is drawn from
    ``numpy.random.default_rng(seed)`` in that order, column by column.
    """
    rng = np.random.default_rng(seed)
    f = rng.integers(0, len(factors), positions)
    opt = rng.random(positions) < option_fraction
    sign = np.where(rng.random(positions) < 0.5, -1.0, 1.0)
    qty = sign * np.where(opt, rng.uniform(10, 500, positions), rng.uniform(10, 1000, positions))
    call = rng.random(positions) < 0.5
    strike = np.asarray(spots)[f] * rng.uniform(0.8, 1.2, positions)
    expiry = rng.uniform(0.1, 2.0, positions)
    vol = rng.uniform(0.15, 0.6, positions)
    nan = np.full(positions, np.nan)
    return {
        "kind": np.where(opt, "option", "linear"),
        "factor": np.asarray(factors)[f],
        "quantity": np.round(qty, 2),
        "type": np.where(opt, np.where(call, "call", "put"), ""),
        "strike": np.where(opt, np.round(strike, 2), nan),
        "expiry": np.where(opt, np.round(expiry, 4), nan),
        "vol": np.where(opt, np.round(vol, 4), nan),
        "rate": np.where(opt, 0.03, nan),
    }


def portfolio_columns(pf: Any) -> dict[str, np.ndarray]:
    """A portfolio's positions as file columns (linear rows first, then options)."""
    n_l, n_o = len(pf.lin_factor), len(pf.opt_factor)
    nan_l = np.full(n_l, np.nan)
    f = np.asarray(pf.factors)
    cols = {
        "kind": np.array(["linear"] * n_l + ["option"] * n_o),
        "factor": np.concatenate([f[pf.lin_factor], f[pf.opt_factor]]),
        "quantity": np.concatenate([pf.lin_quantity, pf.opt_quantity]),
        "type": np.array([""] * n_l + ["call" if c else "put" for c in pf.opt_call]),
    }
    for k, a in (("strike", pf.opt_strike), ("expiry", pf.opt_expiry), ("vol", pf.opt_vol),
                 ("rate", pf.opt_rate)):
        cols[k] = np.concatenate([nan_l, a])
    if pf.names:
        cols["name"] = np.array(pf.names)
    return cols
