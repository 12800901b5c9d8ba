"""The mapper on the device path (``ctx.xp`` = CuPy) gives the CPU run's integers exactly, in
process and as ``device = "gpu"`` in the shipped job under MPI: on the strict CuPy stand-in (no
implicit host conversions, device arrays only) here, unchanged on a GPU (tests/gpu_harness.py).
Integer arithmetic only, so exact equality holds on a real GPU too."""

from __future__ import annotations

import json

import numpy as np
import pysam
import pytest

from pipelines.genomics import (
    DeviceReference,
    MapParams,
    Reference,
    load_reference,
    make_genome,
    map_reads,
    read_fastq,
    simulate_reads,
)
from tests.builtin_jobs import run_job
from tests.gpu_harness import device_session, standin_env

pytestmark = pytest.mark.gpu


@pytest.fixture
def cp():
    with device_session() as module:
        yield module


def _on_device(cp, x) -> bool:
    return isinstance(x, cp.ndarray)


def test_device_mapping_is_bit_exact_with_numpy(cp):
    g = make_genome(120_000, seed=8, n_repeats=6, copies=3, repeat_len=300, n_contigs=2)
    d = simulate_reads(g, 3000, 100, sub_rate=0.02, indel_rate=0.4, max_indel=3, seed=8)
    d["reads"][::50, 40] = 4  # some N bases: the table-scoring path of the DP
    lens = d["read_len"].copy()
    lens[::7] -= 25  # ragged lengths: the per-length end rows
    ref = Reference.from_contigs(list(g.names), list(g.contigs))
    cpu = map_reads(DeviceReference(ref, 15), d["reads"], lens, MapParams())
    dev = map_reads(DeviceReference(ref, 15, cp), cp.asarray(d["reads"]), cp.asarray(lens),
                    MapParams())
    assert set(dev) == set(cpu)
    for k, v in cpu.items():
        assert _on_device(cp, dev[k]), k  # the results stay on the device
        np.testing.assert_array_equal(cp.asnumpy(dev[k]), v, err_msg=k)
    assert np.count_nonzero(cpu["flag"] & 4) < 50  # a real mapping, not an empty one


def test_genomics_job_with_gpu_mapper(tmp_path):
    gen = {"genome_len": 100_000, "n_contigs": 2, "n_reads": 2000, "read_len": 100,
           "indel_rate": 0.3, "seed": 6}
    with standin_env():
        run = run_job("genomics", tmp_path,
                      *[f"stages.reads.params.generate.{k}={json.dumps(v)}"
                        for k, v in gen.items()],
                      "stages.reads.params.chunk_rows=1000", "stages.map.replicas=1",
                      'stages.map.device="gpu"')
    data = tmp_path / "out/genomics/data"
    dref = DeviceReference(load_reference(data / "reference.fa"), 15)
    want = {}
    for c in read_fastq([data / "reads.fastq.gz"], 1000):
        m = map_reads(dref, c["reads"], c["read_len"], MapParams())
        for i, name in enumerate(c["name"]):
            cig = [(int(v) & 15, int(v) >> 4) for v in m["cigar"][i] if v]
            want[name.decode()] = (int(m["flag"][i]), int(m["pos"][i]), int(m["mapq"][i]), cig)
    got = {}
    with pysam.AlignmentFile(str(tmp_path / "out/genomics/mapped.bam")) as f:
        for a in f.fetch(until_eof=True):
            got[a.query_name] = (a.flag, a.reference_start, a.mapping_quality,
                                 [tuple(t) for t in a.cigartuples or []])
    assert got == want
    assert run["meta"]["result"]["rows"] == 2000
    mapper = next(r for r in run["ranks"] if r["stage"] == "map")
    assert mapper.get("gpu_peak_bytes", 0) > 0  # the map rank really ran on the device module
