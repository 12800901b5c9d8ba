"""jobs/genomics.toml (FASTQ.gz -> sorted, indexed BAM) and jobs/genomics-hdf5.toml under real
MPI, each checked against a single-process mapping of the same reads and the simulator's truth.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pysam

from pipelines.genomics import (
    DeviceReference,
    MapParams,
    load_reference,
    load_truth,
    map_reads,
    read_fastq,
    repeat_overlap,
)
from tests.builtin_jobs import run_job

GEN = {"genome_len": 150_000, "n_contigs": 2, "n_reads": 12_000, "read_len": 100,
       "indel_rate": 0.3, "seed": 5, "n_repeats": 6, "copies": 2, "repeat_len": 300}


def _sets(stage: str, spec: dict) -> list[str]:
    return [f"stages.{stage}.params.generate.{k}={json.dumps(v)}" for k, v in spec.items()]


def _single_process(data_dir, chunks) -> dict[str, np.ndarray]:
    dref = DeviceReference(load_reference(data_dir), MapParams().k)
    out: dict[str, list] = {}
    for c in chunks:
        for k, v in {**c, **map_reads(dref, c["reads"], c["read_len"], MapParams())}.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) if k != "cigar" else v for k, v in out.items()}


def _cigar_rows(blocks) -> list[list[int]]:
    return [[int(x) for x in row if x] for b in blocks for row in b]


def test_fastq_gz_to_sorted_indexed_bam(tmp_path):
    run = run_job("genomics", tmp_path, *_sets("reads", GEN),
                  "stages.reads.params.chunk_rows=1500",
                  "stages.sort.params.max_rows_in_memory=4000",  # < n_reads: external merge
                  "stages.sort.params.chunk_rows=2500")
    res = run["meta"]["result"]
    data = tmp_path / "out/genomics/data"
    bam = tmp_path / "out/genomics/mapped.bam"
    assert res["files"] == ["out/genomics/mapped.bam", "out/genomics/mapped.bam.bai"]
    # The oracle: the same reads mapped in this process, one chunk at a time.
    want = _single_process(data, read_fastq([data / "reads.fastq.gz"], 1500))
    cig = _cigar_rows(want["cigar"])
    by_name = {n.decode(): i for i, n in enumerate(want["name"])}
    n = GEN["n_reads"]
    with pysam.AlignmentFile(str(bam)) as f:
        assert f.header["HD"]["SO"] == "coordinate" and f.check_index()
        assert (f.mapped, f.unmapped) == (res["mapped"], res["unmapped"])
        got_pos = np.full(n, -2)
        last = (-1, -1)
        for a in f.fetch(until_eof=True):
            i = by_name[a.query_name]
            assert got_pos[i] == -2  # each read exactly once
            key = (a.reference_id if not a.is_unmapped else 1 << 30, a.reference_start)
            assert key >= last
            last = key
            assert a.flag == want["flag"][i]
            got_pos[i] = a.reference_start
            if not a.is_unmapped:
                assert (a.reference_id, a.mapping_quality) == (want["tid"][i], want["mapq"][i])
                assert [op | (ln << 4) for op, ln in a.cigartuples] == cig[i]
                assert a.get_tag("AS") == want["score"][i]
        assert np.all(got_pos > -2) and res["rows"] == n
    np.testing.assert_array_equal(got_pos[want["flag"] & 4 == 0],
                                  want["pos"][want["flag"] & 4 == 0])
    truth = load_truth(data)
    unique, _ = repeat_overlap(truth, GEN["read_len"])
    rid = want["read_id"]
    right = ((want["tid"] == truth["true_tid"][rid]) & (want["pos"] == truth["true_pos"][rid])
             & (((want["flag"] & 16) != 0) == truth["true_rev"][rid]))
    assert right[unique[rid]].mean() >= 0.99
    # The run file accounts reading, the sort's spills and writing as I/O.
    for stage in ("reads", "sort", "write"):
        assert run["summary"][stage]["io_bytes"] > 0, stage


def test_hdf5_option_with_replicated_mapper(tmp_path):
    gen = {**GEN, "n_reads": 6000, "n_shards": 3}
    run = run_job("genomics-hdf5", tmp_path, *_sets("reads", gen),
                  "stages.reads.params.chunk_rows=1000", "stages.map.replicas=2",
                  "stages.sort.params.max_rows_in_memory=2500")
    res = run["meta"]["result"]
    cols: dict[str, list] = {}
    for name in res["files"]:
        with h5py.File(tmp_path / name, "r") as f:
            for k, ds in f.items():
                cols.setdefault(k, []).append(ds[...])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    assert res["rows"] == 6000
    np.testing.assert_array_equal(np.sort(out["read_id"]), np.arange(6000))
    key = np.where(out["coord"] < 0, np.iinfo(np.int64).max, out["coord"])
    assert np.all(np.diff(key) >= 0)
    data = tmp_path / "out/genomics-hdf5/data"
    order = np.argsort(out["read_id"])
    want = _single_process(data, [{"reads": out["reads"][order],
                                   "read_len": out["read_len"][order],
                                   "read_id": out["read_id"][order]}])
    for k in ("flag", "tid", "pos", "mapq", "score", "nm"):
        np.testing.assert_array_equal(out[k][order], want[k], err_msg=k)
    w = want["cigar"][0].shape[1]
    np.testing.assert_array_equal(out["cigar"][order][:, :w], want["cigar"][0])
    ok = (out["pos"] == out["true_pos"]) & (out["tid"] == out["true_tid"])
    assert ok.mean() >= 0.98  # repeats included; the unique-read bar is tested above
