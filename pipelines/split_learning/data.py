"""Data for the split-learning built-in: the 8x8 digits set, splits, and per-client shards.

:func:`load_digits` uses scikit-learn's copy of the UCI digits (1797 images) when scikit-learn is
installed; ``source="synthetic"`` (or ``"auto"`` without scikit-learn) draws a digits-like set
from ten fixed 8x8 glyphs with pixel noise and one-pixel shifts, so the pipeline runs anywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streampipe.train.data import Dataset

__all__ = ["Dataset", "load_digits", "synthetic_digits", "train_test_split", "shard"]


def load_digits(source: str = "auto", dtype: Any = np.float32) -> Dataset:
    """The digits set as ``Dataset(X in [0, 1], y)``; source "auto", "sklearn" or "synthetic"."""
    if source not in ("auto", "sklearn", "synthetic"):
        raise ValueError(f"source: must be 'auto', 'sklearn' or 'synthetic', got {source!r}")
    if source != "synthetic":
        try:
            from sklearn.datasets import load_digits as sk_load
        except ImportError:
            if source == "sklearn":
                raise ValueError(
                    "source='sklearn' needs scikit-learn (pip install scikit-learn)"
                ) from None
        else:
            d = sk_load()
            return Dataset((d.data / 16.0).astype(dtype), d.target.astype(np.int64))
    return synthetic_digits(dtype=dtype)


_GLYPHS = """
.####... ...#.... .####... .####... ....#... ######.. ..###... ######.. .####... .####...
#....#.. ..##.... #....#.. #....#.. ...##... #....... .#...... .....#.. #....#.. #....#..
#...##.. .#.#.... .....#.. .....#.. ..#.#... #####... #....... ....#... #....#.. #....#..
#..#.#.. ...#.... ....#... ..###... .#..#... .....#.. #####... ...#.... .####... .#####..
#.#..#.. ...#.... ...#.... .....#.. ######.. .....#.. #....#.. ..#..... #....#.. .....#..
##...#.. ...#.... ..#..... .....#.. ....#... .....#.. #....#.. ..#..... #....#.. ....#...
#....#.. ...#.... .#...... #....#.. ....#... #....#.. #....#.. ..#..... #....#.. ...#....
.####... .#####.. ######.. .####... ....#... .####... .####... ..#..... .####... ..#.....
"""


def _glyphs() -> np.ndarray:
    rows = [line.split() for line in _GLYPHS.strip().splitlines()]
    return np.array([[[c == "#" for c in rows[r][d]] for r in range(8)] for d in range(10)],
                    dtype=np.float64)


def synthetic_digits(n: int = 1800, *, noise: float = 0.25, seed: int = 0,
                     dtype: Any = np.float32) -> Dataset:
    """``n`` noisy, randomly shifted (by up to one pixel) copies of ten 8x8 digit glyphs."""
    if n < 10:
        raise ValueError(f"n: must be >= 10, got {n}")
    rng = np.random.default_rng(seed)
    g = _glyphs()
    y = np.arange(n) % 10
    rng.shuffle(y)
    imgs = g[y]
    shifts = rng.integers(-1, 2, size=(n, 2))
    imgs = np.stack([np.roll(im, tuple(s), axis=(0, 1))
                     for im, s in zip(imgs, shifts, strict=True)])
    ink = rng.uniform(0.6, 1.0, (n, 1, 1))
    imgs = np.clip(imgs * ink + noise * rng.standard_normal(imgs.shape), 0, 1)
    return Dataset(imgs.reshape(n, 64).astype(dtype), y.astype(np.int64))


def train_test_split(data: Dataset, test_fraction: float = 0.25, seed: int = 0,
                     shuffle: bool = True) -> tuple[Dataset, Dataset]:
    """Shuffle with ``seed`` and split off ``test_fraction`` of the samples.

    ``shuffle=False`` keeps file order: the last ``test_fraction`` of the rows are the test set.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    n = len(data.y)
    n_test = int(round(n * test_fraction))
    if shuffle:
        perm = np.random.default_rng(seed).permutation(n)
        te, tr = perm[:n_test], perm[n_test:]
    else:
        tr, te = np.arange(n - n_test), np.arange(n - n_test, n)
    return Dataset(data.X[tr], data.y[tr]), Dataset(data.X[te], data.y[te])


def shard(data: Dataset, n_clients: int, mode: str = "iid", *, alpha: float = 0.5,
          seed: int = 0, shuffle: bool = True) -> list[Dataset]:
    """Split ``data`` among ``n_clients``.

    ``mode="iid"``: a random permutation cut into near-equal parts (``shuffle=False``: the rows
    in order, cut into near-equal contiguous parts). ``mode="label_skew"``: for
    each class, client shares drawn from Dirichlet(``alpha``) (smaller alpha, more skew), the
    common non-IID benchmark recipe. Every sample goes to exactly one client; no client is empty.
    """
    if not isinstance(n_clients, int) or not 1 <= n_clients <= len(data.y):
        raise ValueError(f"n_clients: must be an integer in 1..{len(data.y)}, got {n_clients!r}")
    rng = np.random.default_rng(seed)
    if mode == "iid":
        order = rng.permutation(len(data.y)) if shuffle else np.arange(len(data.y))
        parts = np.array_split(order, n_clients)
    elif mode == "label_skew":
        if not alpha > 0:
            raise ValueError(f"alpha: must be > 0, got {alpha}")
        buckets: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in np.unique(data.y):
            idx = rng.permutation(np.flatnonzero(data.y == c))
            share = rng.dirichlet([alpha] * n_clients)
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
            for k, part in enumerate(np.split(idx, cuts)):
                buckets[k].append(part)
        parts = [np.sort(np.concatenate(b)) for b in buckets]
        # a client the draw left empty takes one sample from the largest one
        for k in range(n_clients):
            if len(parts[k]) == 0:
                big = max(range(n_clients), key=lambda j: len(parts[j]))
                parts[k], parts[big] = parts[big][-1:], parts[big][:-1]
    else:
        raise ValueError(f"mode: must be 'iid' or 'label_skew', got {mode!r}")
    return [Dataset(data.X[p], data.y[p]) for p in parts]
