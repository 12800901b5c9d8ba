"""jobs/genomics.toml under real MPI, checked from its HDF5 output against the truth the data
generator knows: every read is written once, sorted by coordinate, and maps to its true
position unless an identical copy of its genome window lies earlier (the repeats)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from pipelines.genomics import load_reference
from tests.builtin_jobs import run_job

GEN = {"genome_len": 50_000, "n_reads": 20_000, "read_len": 64, "n_shards": 3,
       "mismatch_rate": 0.01, "seed": 5, "n_repeats": 4, "copies": 2, "repeat_len": 300}
MAX_MM = 3


def read_output(tmp_path, files: list[str]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {}
    for name in files:
        with h5py.File(tmp_path / name, "r") as f:
            for k, ds in f.items():
                cols.setdefault(k, []).append(ds[...])
    return {k: np.concatenate(v) for k, v in cols.items()}


def best_placement(genome, reads: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, ...]:
    """Brute force over each read's true window and its homologs (the same offset in every
    other copy of each repeat it overlaps): (best position, its mismatches, number of tied
    positions).  Ties go to the lowest position, as the mapper documents."""
    n, L = reads.shape
    cands = [true]
    for fam in genome.repeats:
        for si in fam:
            inside = (true < si + genome.repeat_len) & (true + L > si)
            for sj in fam:
                if sj != si:
                    q = true + (sj - si)
                    cands.append(np.where(inside & (q >= 0) & (q <= len(genome.seq) - L), q, -1))
    q = np.sort(np.stack(cands, axis=1), axis=1)
    q[:, 1:][q[:, 1:] == q[:, :-1]] = -1  # the same position reached twice counts once
    windows = np.lib.stride_tricks.sliding_window_view(genome.seq, L)
    dist = np.count_nonzero(windows[np.maximum(q, 0)] != reads[:, None, :], axis=2)
    dist[q < 0] = L + 1
    best = dist.min(axis=1)
    at_best = dist == best[:, None]
    pos = np.where(at_best, q, np.iinfo(np.int64).max).min(axis=1)
    return pos, best, at_best.sum(axis=1)


@pytest.mark.parametrize("replicas", [1, 2])
def test_every_read_maps_where_the_truth_says(tmp_path, replicas):
    sets = [f"stages.reads.params.generate.{k}={json.dumps(v)}" for k, v in GEN.items()]
    run = run_job(
        "genomics", tmp_path, *sets,
        "stages.reads.params.chunk_rows=1500",
        f"stages.map.replicas={replicas}",
        f"stages.map.params.max_mismatches={MAX_MM}",
        "stages.sort.params.max_rows_in_memory=6000",  # < n_reads: the external merge runs
        "stages.sort.params.chunk_rows=4000",
    )
    res = run["meta"]["result"]
    out = read_output(tmp_path, res["files"])
    n, L = GEN["n_reads"], GEN["read_len"]

    # no read lost or duplicated
    assert res["rows"] == n
    np.testing.assert_array_equal(np.sort(out["read_id"]), np.arange(n))

    # coordinate order: mapped reads by (mapped_pos, read_id), unmapped (-1) last
    pos, rid = out["mapped_pos"], out["read_id"]
    mapped = pos >= 0
    n_mapped = int(mapped.sum())
    assert mapped[:n_mapped].all() and not mapped[n_mapped:].any()
    key = pos[:n_mapped] * n + rid[:n_mapped]
    assert np.all(np.diff(key) > 0)

    # The oracle, from the reference and the generator's true positions: the best of the
    # read's true window and its repeat homologs (lowest on ties), unmapped beyond MAX_MM
    # mismatches.  In a random genome a 64-mer is never within 3 mismatches of an unrelated
    # window (p ~ 1e-30 per pair), so no other window can win and exact equality is the test.
    genome = load_reference(tmp_path / "out/genomics/data")
    true = out["true_pos"]
    best_pos, best_dist, n_best = best_placement(genome, out["reads"], true)
    np.testing.assert_array_equal(pos, np.where(best_dist <= MAX_MM, best_pos, -1))
    np.testing.assert_array_equal(out["mismatches"][mapped], best_dist[mapped])
    np.testing.assert_array_equal(out["n_best"][mapped], n_best[mapped])

    # The justified misplacement: reads inside a non-lowest repeat copy.  Expected fraction
    # n_repeats*(copies-1)*(repeat_len-L+1)/(genome_len-L+1) (README); binomial, 4 sigma.
    off = np.count_nonzero(mapped & (pos != true))
    p = (GEN["n_repeats"] * (GEN["copies"] - 1) * (GEN["repeat_len"] - L + 1)
         / (GEN["genome_len"] - L + 1))
    assert abs(off - n * p) < 4 * math.sqrt(n * p * (1 - p)), (off, n * p)
    # unmapped: reads with > MAX_MM of 64 bases flipped at rate 0.01 (binomial tail), 4 sigma
    q = 1 - sum(math.comb(L, j) * 0.01**j * 0.99 ** (L - j) for j in range(MAX_MM + 1))
    assert abs((n - n_mapped) - n * q) < 4 * math.sqrt(n * q * (1 - q)) + 1
    # and the sink's own counts agree with its file
    assert res["mapped"] == n_mapped and res["unmapped"] == n - n_mapped
    assert res["ambiguous"] == int(np.count_nonzero(out["n_best"] >= 2))
    assert res["mapping_rate"] == n_mapped / n
