"""Synthetic read-mapping data: a seeded random genome with deliberate repeats, and reads drawn
from it with known positions and a few mismatches, stored as sharded HDF5 (layout: README.md).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streampipe.io import INDEX_NAME, HDF5Sink
from streampipe.stage import Context

__all__ = ["Genome", "make_genome", "draw_reads", "make_dataset", "load_reference",
           "ensure_dataset", "BASES"]

BASES = np.frombuffer(b"ACGT", dtype=np.uint8)  # code c is the base BASES[c]
REFERENCE = "reference.h5"
READS = "reads"


@dataclass(frozen=True)
class Genome:
    """Base codes 0..3 (``uint8``) and the repeat families: ``repeats[f]`` = start of each copy."""

    seq: np.ndarray
    repeats: np.ndarray  # (families, copies) int64
    repeat_len: int


def make_genome(length: int, seed: int, n_repeats: int = 4, copies: int = 2,
                repeat_len: int = 300) -> Genome:
    """A uniform random genome in which ``n_repeats`` segments are copied ``copies`` times.

    Copies never overlap each other, so a read inside one copy matches every copy exactly.
    """
    if length < 1:
        raise ValueError(f"genome_len: must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 4, size=length, dtype=np.uint8)
    slots = length // repeat_len if repeat_len > 0 else 0
    need = n_repeats * copies
    if need and slots < need:
        raise ValueError(f"genome_len: {length} holds {slots} repeat slots of {repeat_len}, "
                         f"need n_repeats*copies = {need}")
    # Non-overlapping copies: distinct slots of the genome cut into repeat_len pieces.
    starts = np.sort(rng.choice(slots, size=need, replace=False)) * repeat_len if need else []
    starts = rng.permutation(np.asarray(starts, dtype=np.int64)).reshape(n_repeats, copies)
    for fam in starts:
        src = seq[fam[0]:fam[0] + repeat_len].copy()
        for s in fam[1:]:
            seq[s:s + repeat_len] = src
    return Genome(seq, np.sort(starts, axis=1), repeat_len)


def draw_reads(genome: np.ndarray, n_reads: int, read_len: int, mismatch_rate: float,
               seed: int) -> dict[str, np.ndarray]:
    """Reads at uniform positions; each base is replaced by another base with ``mismatch_rate``."""
    if not 0 < read_len <= len(genome):
        raise ValueError(f"read_len: must be in 1..genome_len={len(genome)}, got {read_len}")
    if not 0.0 <= mismatch_rate < 1.0:
        raise ValueError(f"mismatch_rate: must be in [0, 1), got {mismatch_rate}")
    rng = np.random.default_rng([seed, 1])  # independent of the genome's stream
    pos = rng.integers(0, len(genome) - read_len + 1, size=n_reads, dtype=np.int64)
    reads = np.lib.stride_tricks.sliding_window_view(genome, read_len)[pos].copy()
    flip = rng.random(reads.shape) < mismatch_rate
    shift = rng.integers(1, 4, size=reads.shape, dtype=np.uint8)  # never the same base
    reads[flip] = (reads[flip] + shift[flip]) % 4
    return {"reads": reads, "true_pos": pos, "read_id": np.arange(n_reads, dtype=np.int64)}


def make_dataset(out_dir: str | os.PathLike[str], genome_len: int = 100_000,
                 n_reads: int = 20_000, read_len: int = 64, n_shards: int = 4,
                 mismatch_rate: float = 0.01, seed: int = 0, n_repeats: int = 4,
                 copies: int = 2, repeat_len: int = 300) -> Path:
    """Write the reference and the sharded reads under ``out_dir`` (see README.md); return it.

    Files are written to a temporary sibling directory and renamed into place, so a reader never
    sees a half-written dataset.
    """
    out = Path(out_dir)
    g = make_genome(genome_len, seed, n_repeats, copies, repeat_len)
    data = draw_reads(g.seq, n_reads, read_len, mismatch_rate, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        import h5py

        with h5py.File(tmp / REFERENCE, "w") as f:
            f.create_dataset("genome", data=g.seq, compression="gzip")
            f.create_dataset("repeats", data=g.repeats)
            f.attrs.update(repeat_len=repeat_len, seed=seed, read_len=read_len,
                           mismatch_rate=mismatch_rate)
        for s, rows in enumerate(np.array_split(np.arange(n_reads), n_shards)):
            sink = HDF5Sink()
            sink.setup(Context(params={"path": str(tmp / READS)}, stage="make_dataset",
                               replica=s, replicas=n_shards))
            sink.consume({k: v[rows] for k, v in data.items()})
            sink.finish()
        (tmp / MADE_WITH).write_text(json.dumps(_generate_params(
            genome_len=genome_len, n_reads=n_reads, read_len=read_len, n_shards=n_shards,
            mismatch_rate=mismatch_rate, seed=seed, n_repeats=n_repeats, copies=copies,
            repeat_len=repeat_len), sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_reference(path: str | os.PathLike[str]) -> Genome:
    """Read ``reference.h5`` (or the dataset directory that holds it)."""
    import h5py

    p = Path(path)
    if p.is_dir():
        p = p / REFERENCE
    try:
        with h5py.File(p, "r") as f:
            return Genome(f["genome"][...], f["repeats"][...], int(f.attrs["repeat_len"]))
    except (OSError, KeyError) as exc:
        raise ValueError(f"{p}: not a genomics reference (needs datasets genome, repeats): "
                         f"{exc}") from exc


MADE_WITH = "generate.json"  # the make_dataset arguments a dataset directory was made with


def _generate_params(**given: Any) -> dict[str, Any]:
    """make_dataset's arguments with its defaults filled in."""
    sig = inspect.signature(make_dataset)
    params = {k: p.default for k, p in sig.parameters.items() if k != "out_dir"}
    params.update(given)
    return params


def _check_made_with(out: Path, spec: dict[str, Any]) -> None:
    """A dataset made with other ``generate`` values must not be reused silently."""
    path = out / MADE_WITH
    if not path.exists():
        return
    made = json.loads(path.read_text())
    want = _generate_params(**spec)
    for key in sorted(want):
        if made.get(key) != want[key]:
            raise ValueError(
                f"params.generate.{key}: the dataset in {out} was made with {made.get(key)!r} "
                f"but the job asks for {want[key]!r}; delete {out} or point params.dir elsewhere")


def ensure_dataset(out_dir: str | os.PathLike[str], spec: dict[str, Any], replica: int,
                   timeout_s: float = 600.0) -> Path:
    """Create the dataset once: replica 0 generates it if absent, other replicas wait for it."""
    out = Path(out_dir)
    ready = out / READS / INDEX_NAME
    if ready.exists():
        _check_made_with(out, spec)
        return out
    if replica == 0:
        return make_dataset(out, **spec)
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{out}: replica 0 did not create the dataset in {timeout_s} s")
        time.sleep(0.1)
    return out
