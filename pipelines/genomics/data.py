"""Simulated sequencing data with a known truth: a seeded random genome of one or more contigs
with exact repeats, and reads drawn from both strands with substitutions and 1..max_indel-base
indels.  Written as FASTA + FASTQ (gzip) + a truth table, or in the HDF5 layout (README.md).
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

from streampipe.io import HDF5Sink
from streampipe.stage import Context

from .fastq import write_fastq
from .reference import REFERENCE_H5, write_fasta
from .seqcodes import COMPLEMENT

__all__ = ["Genome", "make_genome", "simulate_reads", "make_dataset", "ensure_dataset",
           "load_truth", "repeat_overlap", "FASTA_NAME", "FASTQ_NAME", "TRUTH_NAME",
           "READS_DIR", "END_GUARD"]

FASTA_NAME = "reference.fa"
FASTQ_NAME = "reads.fastq.gz"
TRUTH_NAME = "truth.npz"
READS_DIR = "reads"  # HDF5 layout: reads/shard-*.h5 + index.json
MADE_WITH = "generate.json"
END_GUARD = 10  # indels stay this many bases from either read end (so the true start is defined)


@dataclass(frozen=True)
class Genome:
    """Contigs (codes 0..3) and the repeat copies: ``repeats[f, c] = (contig, start)``."""

    names: tuple[str, ...]
    contigs: tuple[np.ndarray, ...]
    repeats: np.ndarray  # (families, copies, 2) int64
    repeat_len: int


def make_genome(length: int, seed: int, n_repeats: int = 4, copies: int = 2,
                repeat_len: int = 300, n_contigs: int = 1) -> Genome:
    """A uniform random genome of ``n_contigs`` contigs (``length`` bases in all) in which
    ``n_repeats`` segments of ``repeat_len`` bases are copied ``copies`` times.

    Copies lie in distinct ``repeat_len`` slots of the contigs, so they never overlap and a read
    inside one copy matches every copy exactly.
    """
    if length < 1 or n_contigs < 1 or length < n_contigs:
        raise ValueError(f"genome_len: must be >= n_contigs >= 1, got {length}, {n_contigs}")
    rng = np.random.default_rng(seed)
    sizes = np.diff(np.linspace(0, length, n_contigs + 1).astype(np.int64))
    contigs = [rng.integers(0, 4, size=int(s), dtype=np.uint8) for s in sizes]
    slots = [(t, j * repeat_len) for t, s in enumerate(sizes)
             for j in range(int(s) // repeat_len)] if repeat_len > 0 else []
    need = n_repeats * copies
    if need > len(slots):
        raise ValueError(f"genome_len: {length} holds {len(slots)} repeat slots of "
                         f"{repeat_len}, need n_repeats*copies = {need}")
    pick = rng.choice(len(slots), size=need, replace=False) if need else np.zeros(0, int)
    reps = np.array([slots[i] for i in pick], dtype=np.int64).reshape(n_repeats, copies, 2)
    for fam in reps:
        src = contigs[fam[0, 0]][fam[0, 1]:fam[0, 1] + repeat_len].copy()
        for t, s in fam[1:]:
            contigs[t][s:s + repeat_len] = src
    order = np.lexsort((reps[..., 1], reps[..., 0]), axis=-1) if need else None
    if order is not None:
        reps = np.take_along_axis(reps, order[..., None], axis=1)
    names = tuple(f"chr{t + 1}" for t in range(n_contigs))
    return Genome(names, tuple(contigs), reps, repeat_len)


def simulate_reads(g: Genome, n_reads: int, read_len: int, sub_rate: float, indel_rate: float,
                   max_indel: int, seed: int) -> dict[str, np.ndarray]:
    """Reads with a known origin.

    Each read comes from a uniform position of a contig (contigs weighted by length) and from
    either strand with probability 1/2; with probability ``indel_rate`` it carries one
    insertion or deletion of 1..``max_indel`` bases at least ``END_GUARD`` bases from both
    ends; then every base is substituted with probability ``sub_rate``.  Truth: ``true_tid``,
    ``true_pos`` (0-based leftmost reference base), ``true_rev``, ``true_indel`` (+size for an
    insertion, -size for a deletion, 0), ``true_subs``.  Qualities are Phred 20..40.
    """
    if read_len < 2 * END_GUARD + max_indel + 1:
        raise ValueError(f"read_len: must be >= {2 * END_GUARD + max_indel + 1} for indels "
                         f"{END_GUARD} bases from the ends, got {read_len}")
    if not 0.0 <= sub_rate < 1.0 or not 0.0 <= indel_rate <= 1.0:
        raise ValueError(f"mismatch_rate, indel_rate: must be in [0, 1), got {sub_rate}, "
                         f"{indel_rate}")
    lens = np.array([len(c) for c in g.contigs], dtype=np.int64)
    room = lens - read_len - max_indel + 1
    if np.any(room < 1):
        raise ValueError(f"read_len: {read_len} + max_indel does not fit in the shortest contig"
                         f" ({lens.min()} bases)")
    rng = np.random.default_rng([seed, 1])  # independent of the genome's stream
    tid = rng.choice(len(lens), size=n_reads, p=room / room.sum())
    pos = (rng.random(n_reads) * room[tid]).astype(np.int64)
    has = rng.random(n_reads) < indel_rate
    size = rng.integers(1, max_indel + 1, size=n_reads) * has
    ins = rng.random(n_reads) < 0.5
    indel = np.where(ins, size, -size)
    at = rng.integers(END_GUARD, read_len - END_GUARD - max_indel, size=n_reads)
    j = np.arange(read_len)[None, :]
    # Reference offset of each read base: after the indel, shifted by its size (a deletion
    # skips bases, an insertion resumes after its inserted run).
    off = np.where(j < at[:, None], j, j - indel[:, None])
    inserted = (indel[:, None] > 0) & (j >= at[:, None]) & (j < at[:, None] + indel[:, None])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    flat = np.concatenate(g.contigs)
    reads = flat[starts[tid][:, None] + pos[:, None] + np.maximum(off, 0)]
    reads[inserted] = rng.integers(0, 4, size=int(inserted.sum()), dtype=np.uint8)
    flip = rng.random(reads.shape) < sub_rate
    shift = rng.integers(1, 4, size=reads.shape, dtype=np.uint8)  # never the same base
    reads[flip] = (reads[flip] + shift[flip]) % 4
    rev = rng.random(n_reads) < 0.5
    reads[rev] = COMPLEMENT[reads[rev][:, ::-1]]
    qual = rng.integers(20, 41, size=reads.shape, dtype=np.uint8)
    return {"reads": reads, "read_len": np.full(n_reads, read_len, dtype=np.int32),
            "qual": qual, "read_id": np.arange(n_reads, dtype=np.int64),
            "true_tid": tid.astype(np.int32), "true_pos": pos, "true_rev": rev,
            "true_indel": indel.astype(np.int32), "true_subs": flip.sum(axis=1).astype(np.int32)}


def make_dataset(out_dir: str | os.PathLike[str], genome_len: int = 100_000,
                 n_reads: int = 20_000, read_len: int = 100, n_contigs: int = 2,
                 mismatch_rate: float = 0.01, indel_rate: float = 0.1, max_indel: int = 3,
                 seed: int = 0, n_repeats: int = 4, copies: int = 2, repeat_len: int = 300,
                 format: str = "fastq", n_shards: int = 4) -> Path:
    """Write a simulated dataset under ``out_dir`` (README.md) and return it.

    ``format = "fastq"``: reference.fa, reads.fastq.gz (names ``sim{read_id}``), truth.npz.
    ``format = "hdf5"``: reference.h5 and reads/shard-*.h5 (``n_shards``) with the truth
    columns next to the reads.  Files go to a temporary sibling directory that is renamed into
    place, so a reader never sees half a dataset.
    """
    if format not in ("fastq", "hdf5"):
        raise ValueError(f"format: 'fastq' or 'hdf5', got {format!r}")
    out = Path(out_dir)
    g = make_genome(genome_len, seed, n_repeats, copies, repeat_len, n_contigs)
    data = simulate_reads(g, n_reads, read_len, mismatch_rate, indel_rate, max_indel, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        truth = {k: v for k, v in data.items() if k.startswith("true_") or k == "read_id"}
        np.savez(tmp / TRUTH_NAME, repeats=g.repeats, repeat_len=g.repeat_len, **truth)
        if format == "fastq":
            write_fasta(tmp / FASTA_NAME, list(g.names), list(g.contigs))
            write_fastq(tmp / FASTQ_NAME, [f"sim{i}" for i in range(n_reads)], data["reads"],
                        data["read_len"], data["qual"])
        else:
            _write_h5(tmp, g, data, n_shards)
        (tmp / MADE_WITH).write_text(json.dumps(_generate_params(
            genome_len=genome_len, n_reads=n_reads, read_len=read_len, n_contigs=n_contigs,
            mismatch_rate=mismatch_rate, indel_rate=indel_rate, max_indel=max_indel,
            seed=seed, n_repeats=n_repeats, copies=copies, repeat_len=repeat_len,
            format=format, n_shards=n_shards), sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_h5(tmp: Path, g: Genome, data: dict[str, np.ndarray], n_shards: int) -> None:
    import h5py

    with h5py.File(tmp / REFERENCE_H5, "w") as f:
        grp = f.create_group("contigs")
        for name, c in zip(g.names, g.contigs, strict=True):
            grp.create_dataset(name, data=c, compression="gzip")
        f.create_dataset("contig_names", data=np.array(g.names, dtype=bytes))
    cols = {k: data[k] for k in ("reads", "read_len", "read_id", "true_tid", "true_pos",
                                 "true_rev")}
    for s, rows in enumerate(np.array_split(np.arange(len(data["read_id"])), n_shards)):
        sink = HDF5Sink()
        sink.setup(Context(params={"path": str(tmp / READS_DIR)}, stage="make_dataset",
                           replica=s, replicas=n_shards))
        sink.consume({k: v[rows] for k, v in cols.items()})
        sink.finish()


def repeat_overlap(truth: dict[str, np.ndarray], read_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique, inside) masks of the reads of a truth table: ``unique`` reads touch no repeat
    copy (one true placement), ``inside`` reads lie wholly inside one copy (every copy of
    their family fits them as well)."""
    span = read_len - truth["true_indel"]  # reference bases the read covers
    lo, hi = truth["true_pos"], truth["true_pos"] + span
    touch = np.zeros(len(lo), dtype=bool)
    inside = np.zeros(len(lo), dtype=bool)
    rl = int(truth["repeat_len"])
    for t, s in truth["repeats"].reshape(-1, 2):
        here = truth["true_tid"] == t
        touch |= here & (hi > s) & (lo < s + rl)
        inside |= here & (lo >= s) & (hi <= s + rl)
    return ~touch, inside


def load_truth(out_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The truth table of a dataset directory (``truth.npz``)."""
    with np.load(Path(out_dir) / TRUTH_NAME) as z:
        return {k: z[k] for k in z.files}


def _generate_params(**given: Any) -> dict[str, Any]:
    """make_dataset's arguments with its defaults filled in."""
    sig = inspect.signature(make_dataset)
    params = {k: p.default for k, p in sig.parameters.items() if k != "out_dir"}
    params.update(given)
    return params


GENERATE_KEYS = frozenset(_generate_params())


def _ready_marker(out: Path) -> Path:
    return out / MADE_WITH


def _check_made_with(out: Path, spec: dict[str, Any]) -> None:
    """A dataset made with other ``generate`` values must not be reused silently."""
    made = json.loads(_ready_marker(out).read_text())
    want = _generate_params(**spec)
    for key in sorted(want):
        if made.get(key) != want[key]:
            raise ValueError(
                f"params.generate.{key}: the dataset in {out} was made with {made.get(key)!r} "
                f"but the job asks for {want[key]!r}; delete {out} or point the paths elsewhere")


def ensure_dataset(out_dir: str | os.PathLike[str], spec: dict[str, Any], replica: int,
                   timeout_s: float = 600.0) -> Path:
    """Create the dataset once: replica 0 generates it if absent, other replicas wait for it.

    The directory appears whole (renamed into place), with ``generate.json`` in it.
    """
    out = Path(out_dir)
    unknown = set(spec) - GENERATE_KEYS
    if unknown:
        raise ValueError(f"params.generate: unknown keys {sorted(unknown)} "
                         f"(known: {sorted(GENERATE_KEYS)})")
    if _ready_marker(out).exists():
        _check_made_with(out, spec)
        return out
    if replica == 0:
        return make_dataset(out, **spec)
    deadline = time.monotonic() + timeout_s
    while not _ready_marker(out).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{out}: replica 0 did not create the dataset in {timeout_s} s")
        time.sleep(0.1)
    return out

