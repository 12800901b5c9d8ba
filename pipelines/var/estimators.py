"""Loss distributions seen one batch at a time: exact (all losses) or streaming (histogram).

Both answer the same four questions that :mod:`.risk` turns into VaR, ES and their errors:
``quantile(k)`` (the k-th smallest loss), ``tail_sums(v)`` (sums of ``max(L - v, 0)`` and its
square), ``density(v, h)`` (Gaussian KDE at ``v``) and the P&L moments.

Streaming error.  :class:`StreamLosses` fixes ``bins`` equal bins over ``mean ± range_sigmas·std``
of the first batch and keeps every loss outside that range exactly (overflow lists).  Per bin
it stores the count and the sums of ``u`` and ``u²``, ``u`` being the offset from the bin's left
edge.  Then:

* VaR: the k-th smallest loss lies in the bin where the cumulative count reaches k, and the
  estimate (linear interpolation inside that bin) lies in the same bin, so
  ``|VaR_stream - VaR_exact| <= bin_width`` (zero when the quantile falls in an overflow list).
* ES = VaR + Σ max(L - VaR, 0) / (n (1-α)): bins above the VaR bin contribute exactly (from
  their sums), the VaR bin is taken as uniform.  With ``c`` losses in the VaR bin,
  ``|ES_stream - ES_exact| <= bin_width · (1 + 2c) / (n (1-α))`` (see ``tail_sums``).
* The KDE uses bin centroids; its error is O((bin_width / h)²), negligible at the defaults.

With 65536 bins over ±10σ the bin width is 3e-4 σ: below the Monte Carlo standard error of
the 99% VaR up to n ≈ 10⁸ scenarios.  Memory is 1.5 MB plus the overflow losses (beyond 10σ
of a first batch: none for a normal-like P&L, a few for heavy tails).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Moments", "ExactLosses", "StreamLosses"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


class Moments:
    """Count, mean, sum of squared deviations, min and max, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: np.ndarray) -> None:
        nb = x.size
        if nb == 0:
            return
        mb = float(x.mean())
        m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    def state(self) -> tuple[int, float, float, float, float]:
        return (self.n, self.mean, self.m2, self.min, self.max)

    @classmethod
    def from_state(cls, state: tuple) -> Moments:
        m = cls()
        m.n, m.mean, m.m2, m.min, m.max = state
        return m


def _kde(points: np.ndarray, weights: np.ndarray | None, v: float, h: float) -> float:
    """Σ w·φ((v - x)/h) / h, the unnormalised Gaussian kernel sum at ``v``."""
    t = (v - points) / h
    k = np.exp(-0.5 * t * t)
    s = float(k.sum() if weights is None else (k * weights).sum())
    return s / (h * _SQRT_2PI)


class ExactLosses:
    """Keeps every loss; batches must be added in batch order (the Aggregator sees to that)."""

    mode = "exact"

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._sorted: np.ndarray | None = None

    def add(self, losses: np.ndarray) -> None:
        self._parts.append(losses)
        self._sorted = None

    @property
    def losses(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(np.concatenate(self._parts)) if self._parts else np.empty(0)
        return self._sorted

    @property
    def n(self) -> int:
        return sum(p.size for p in self._parts)

    def moments(self) -> Moments:
        m = Moments()
        if self._parts:
            m.add(np.concatenate(self._parts))
        return m

    def quantile(self, k: int) -> tuple[float, int]:
        """The k-th smallest loss (1-based) and the count of the bin it came from (0: exact)."""
        return float(self.losses[k - 1]), 0

    def tail_sums(self, v: float) -> tuple[float, float]:
        excess = self.losses[np.searchsorted(self.losses, v, side="right") :] - v
        return float(excess.sum()), float((excess * excess).sum())

    def density(self, v: float, h: float) -> float:
        return _kde(self.losses, None, v, h) / self.n

    def info(self) -> dict[str, object]:
        return {}

    def state(self) -> dict[str, object]:
        """Everything added so far, exactly (for checkpoints)."""
        parts = np.concatenate(self._parts) if self._parts else np.empty(0)
        return {"mode": self.mode, "losses": parts}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> ExactLosses:
        est = cls()
        losses = np.asarray(state["losses"], dtype=np.float64)
        if losses.size:
            est._parts.append(losses)
        return est


class StreamLosses:
    """Fixed-bin histogram with exact overflow lists; bounded memory for any number of losses."""

    mode = "stream"

    def __init__(self, bins: int = 65536, range_sigmas: float = 10.0) -> None:
        self.bins = bins
        self.range_sigmas = range_sigmas
        self.lo = self.width = math.nan
        self.count = np.zeros(bins, dtype=np.int64)
        self.su = np.zeros(bins)
        self.su2 = np.zeros(bins)
        self._below: list[np.ndarray] = []
        self._above: list[np.ndarray] = []
        self._mom = Moments()
        self._cache: dict[str, np.ndarray] = {}

    def add(self, losses: np.ndarray) -> None:
        if not losses.size:
            return
        if math.isnan(self.lo):
            self._learn_range(losses)
        self._mom.add(losses)
        self._cache.clear()
        pos = (losses - self.lo) / self.width
        idx = np.floor(pos).astype(np.int64)
        inside = (idx >= 0) & (idx < self.bins)
        self._below.append(losses[idx < 0])
        self._above.append(losses[idx >= self.bins])
        i = idx[inside]
        u = losses[inside] - (self.lo + i * self.width)
        self.count += np.bincount(i, minlength=self.bins)
        self.su += np.bincount(i, weights=u, minlength=self.bins)
        self.su2 += np.bincount(i, weights=u * u, minlength=self.bins)

    def _learn_range(self, first: np.ndarray) -> None:
        m, s = float(first.mean()), float(first.std())
        if not s > 0:  # a constant first batch: any positive scale will do
            s = max(abs(m), 1.0) * 1e-6
        self.lo = m - self.range_sigmas * s
        self.width = 2.0 * self.range_sigmas * s / self.bins

    @property
    def n(self) -> int:
        return self._mom.n

    def moments(self) -> Moments:
        return self._mom

    def _overflow(self, side: str) -> np.ndarray:
        if side not in self._cache:
            parts = self._below if side == "below" else self._above
            self._cache[side] = np.sort(np.concatenate(parts)) if parts else np.empty(0)
        return self._cache[side]

    def _cum(self) -> np.ndarray:
        if "cum" not in self._cache:
            self._cache["cum"] = np.cumsum(self.count)
        return self._cache["cum"]

    def _locate(self, k: int) -> tuple[str, int, int]:
        """Where the k-th smallest loss is: ("below"|"above", index) or ("bin", bin, rank in it)."""
        below = self._overflow("below")
        if k <= below.size:
            return "below", k - 1, 0
        j = k - below.size
        cum = self._cum()
        if j > cum[-1]:
            return "above", int(j - cum[-1] - 1), 0
        b = int(np.searchsorted(cum, j))
        return "bin", b, int(j - (cum[b] - self.count[b]))

    def quantile(self, k: int) -> tuple[float, int]:
        where, i, r = self._locate(k)
        if where != "bin":
            return float(self._overflow(where)[i]), 0
        c = int(self.count[i])
        # the r-th of c losses in bin i, placed at the middle of its 1/c slice of the bin
        return self.lo + self.width * (i + (r - 0.5) / c), c

    def tail_sums(self, v: float) -> tuple[float, float]:
        s1 = s2 = 0.0
        for side in ("below", "above"):
            x = self._overflow(side)
            d = x[x > v] - v
            s1 += float(d.sum())
            s2 += float((d * d).sum())
        pos = (v - self.lo) / self.width
        b = int(math.floor(pos))
        first_full = min(max(b + 1, 0), self.bins)
        if 0 <= b < self.bins and self.count[b]:
            # losses of the VaR bin above v, taken as uniform on (v, right edge]; a count of
            # those above v is the bin's share above v, at most count[b] -> error <= c·width.
            right = self.lo + (b + 1) * self.width - v
            m = float(self.count[b]) * right / self.width
            s1 += m * right / 2.0
            s2 += m * right * right / 3.0
        c = slice(first_full, self.bins)
        e = self.lo + np.arange(first_full, self.bins) * self.width - v  # left edge - v >= 0
        cnt = self.count[c]
        s1 += float((self.su[c] + cnt * e).sum())
        s2 += float((self.su2[c] + 2.0 * e * self.su[c] + cnt * e * e).sum())
        return s1, s2

    def density(self, v: float, h: float) -> float:
        nz = self.count > 0
        cnt = self.count[nz]
        centroid = self.lo + np.flatnonzero(nz) * self.width + self.su[nz] / cnt
        s = _kde(centroid, cnt.astype(np.float64), v, h)
        for side in ("below", "above"):
            s += _kde(self._overflow(side), None, v, h)
        return s / self.n

    def state(self) -> dict[str, object]:
        """The histogram, the overflow losses and the moments, exactly (for checkpoints)."""
        return {"mode": self.mode, "bins": self.bins, "range_sigmas": self.range_sigmas,
                "lo": self.lo, "width": self.width, "count": self.count.copy(),
                "su": self.su.copy(), "su2": self.su2.copy(),
                "below": self._overflow("below").copy(), "above": self._overflow("above").copy(),
                "moments": self._mom.state()}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> StreamLosses:
        est = cls(int(state["bins"]), float(state["range_sigmas"]))
        est.lo, est.width = float(state["lo"]), float(state["width"])
        est.count = np.array(state["count"], dtype=np.int64)
        est.su, est.su2 = np.array(state["su"]), np.array(state["su2"])
        est._below = [np.array(state["below"])]
        est._above = [np.array(state["above"])]
        est._mom = Moments.from_state(tuple(state["moments"]))
        return est

    def info(self) -> dict[str, object]:
        return {
            "bins": self.bins,
            "bin_width": self.width,
            "range": [self.lo, self.lo + self.bins * self.width],
            "overflow": int(self._overflow("below").size + self._overflow("above").size),
        }
