"""Read-mapping built-in: data generator, mapper, external sort and the whole chain, each
checked against an independent answer (true positions, brute-force Hamming scan, np.lexsort)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import h5py
import numpy as np
import pytest
import tomllib

from pipelines.genomics import (
    CoordinateSorter,
    KmerIndex,
    MappedWriter,
    Mapper,
    ReadShards,
    load_reference,
    make_dataset,
    map_reads,
)
from pipelines.genomics.sorter import sort_order
from streampipe.io import HDF5Sink, HDF5Source, read_index
from streampipe.stage import Context

SPEC = dict(genome_len=20_000, n_reads=3_000, read_len=48, n_shards=3, mismatch_rate=0.01,
            seed=7, n_repeats=4, copies=2, repeat_len=300)
MAX_MM = 3
K = 12  # 48 // 12 = 4 seeds > MAX_MM: pigeonhole keeps one exact seed per read


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = make_dataset(tmp_path_factory.mktemp("g") / "data", **SPEC)
    src = HDF5Source()
    src.setup(Context(params={"path": str(out / "reads" / "index.json"), "chunk_rows": 10**6,
                              "datasets": ["reads", "true_pos", "read_id"]}))
    cols = [c for c in src.generate()]
    data = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
    return out, load_reference(out), data


def _hamming_to_all(genome: np.ndarray, read: np.ndarray) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(genome, len(read))
    return np.count_nonzero(win != read, axis=1)


def test_dataset_layout_and_mismatches(dataset):
    out, ref, data = dataset
    assert [n for _, n in read_index(out / "reads" / "index.json")] == [1000, 1000, 1000]
    with h5py.File(out / "reads" / "shard-00001.h5") as f:
        assert f["reads"].dtype == np.uint8 and f["reads"].shape == (1000, 48)
        assert f["true_pos"].dtype == np.int64 and f["read_id"][0] == 1000
    np.testing.assert_array_equal(data["read_id"], np.arange(3000))
    # Repeat copies are exact duplicates.
    for fam in ref.repeats:
        for s in fam[1:]:
            np.testing.assert_array_equal(ref.seq[s:s + 300], ref.seq[fam[0]:fam[0] + 300])
    win = np.lib.stride_tricks.sliding_window_view(ref.seq, 48)[data["true_pos"]]
    d = np.count_nonzero(win != data["reads"], axis=1)
    # Mismatches ~ Binomial(3000*48, 0.01): mean 1440, sd 37.7; 5 sd keeps false alarms < 1e-6.
    assert abs(d.sum() - 1440) < 5 * 37.7
    # Same seed, same bytes: the job's generate step is reproducible.
    again = make_dataset(out.parent / "again", **SPEC)
    with h5py.File(again / "reads" / "shard-00002.h5") as f:
        np.testing.assert_array_equal(f["reads"][...], data["reads"][2000:])


def _classify(ref, true_pos, L):
    """inside: read lies in one repeat copy (ambiguous); touching: overlaps a copy; shift: the
    offsets that move a repeat position onto its other copies."""
    inside = np.zeros(len(true_pos), bool)
    touching = np.zeros(len(true_pos), bool)
    lowest = true_pos.copy()  # the lowest equivalent position of an inside read
    for fam in ref.repeats:
        for s in fam:
            ins = (true_pos >= s) & (true_pos <= s + ref.repeat_len - L)
            inside |= ins
            lowest[ins] = true_pos[ins] - s + fam.min()
            touching |= (true_pos + L > s) & (true_pos < s + ref.repeat_len)
    return inside, touching & ~inside, lowest


def test_mapper_against_true_positions_and_brute_force(dataset):
    out, ref, data = dataset
    mapper = Mapper()
    mapper.setup(Context(params={"reference": str(out), "k": K, "max_mismatches": MAX_MM}))
    res = mapper.process(dict(data))
    L = 48
    win = np.lib.stride_tricks.sliding_window_view(ref.seq, L)
    d_true = np.count_nonzero(win[data["true_pos"]] != data["reads"], axis=1)
    inside, touching, lowest = _classify(ref, data["true_pos"], L)
    unique = ~inside & ~touching
    mapped, mm, nb = res["mapped_pos"], res["mismatches"], res["n_best"]

    ok = d_true <= MAX_MM
    # Unique reads: exactly their true position, one best hit, the true mismatch count.
    u = unique & ok
    np.testing.assert_array_equal(mapped[u], data["true_pos"][u])
    np.testing.assert_array_equal(mm[u], d_true[u])
    assert np.all(nb[u] == 1)
    # Reads inside a repeat tie between the 2 copies; ties go to the lowest copy.
    i = inside & ok
    assert np.all(nb[i] == 2)
    np.testing.assert_array_equal(mapped[i], lowest[i])
    # Reads with more mismatches than allowed are unmapped (no other window is that close).
    assert np.all(mapped[~ok & unique] == -1) and np.all(mm[mapped == -1] == -1)
    # Every mapped read: the reported distance is real and never worse than the truth.
    m = mapped >= 0
    np.testing.assert_array_equal(np.count_nonzero(win[mapped[m]] != data["reads"][m], axis=1),
                                  mm[m])
    assert np.all(mm[m] <= d_true[m])

    # Stated fraction: only reads inside repeats may land off their true position, and about
    # half of them do (those on the upper copy). Inside fraction expected from geometry:
    # 8 copies * (300 - 48 + 1) / (20000 - 48 + 1) = 10.1 %; binomial sd over 3000 reads 0.55 %.
    off = ok & (mapped != data["true_pos"])
    assert np.all(inside[off] | touching[off])
    assert abs(inside.mean() - 8 * 253 / 19953) < 5 * 0.0055
    assert off.sum() <= inside.sum()

    # Brute force: scan every genome window for 150 reads plus every unmapped/touching read.
    rng = np.random.default_rng(0)
    pick = np.union1d(rng.choice(3000, 150, replace=False), np.flatnonzero(~m | touching))
    for r in pick:
        dist = _hamming_to_all(ref.seq, data["reads"][r])
        best = dist.min()
        if best > MAX_MM:
            assert mapped[r] == -1
        else:
            assert (mapped[r], mm[r], nb[r]) == (np.argmin(dist), best, (dist == best).sum())


def test_mapper_rejects_seedless_setting(dataset):
    out, _, data = dataset
    mapper = Mapper()
    mapper.setup(Context(params={"reference": str(out), "k": 16, "max_mismatches": 3},
                         stage="map"))
    with pytest.raises(ValueError, match=r"stages.map.params.max_mismatches: 3 must be < L // k"):
        mapper.process({"reads": data["reads"][:5]})


def _sort(items, **params):
    s = CoordinateSorter()
    s.setup(Context(params=params))
    for it in items:
        assert s.process(it) is None
    runs = len(s.runs) + (1 if s.runs and s.buffered else 0)
    return list(s.finish()), runs, s


@pytest.mark.parametrize("max_rows, chunk_rows", [(10**6, 500), (100, 64), (37, 1000)])
def test_sorter_external_merge_equals_lexsort(max_rows, chunk_rows):
    rng = np.random.default_rng(max_rows)
    n = 2000
    pos = rng.integers(-1, 300, n)  # many duplicate keys and unmapped (-1) rows
    rid = rng.permutation(n).astype(np.int64)
    payload = rng.integers(0, 4, (n, 5), dtype=np.uint8)
    items = [{"mapped_pos": pos[i:i + 130], "read_id": rid[i:i + 130],
              "reads": payload[i:i + 130]} for i in range(0, n, 130)]
    out, runs, sorter = _sort(items, max_rows_in_memory=max_rows, chunk_rows=chunk_rows)
    if max_rows < n:
        assert runs >= n // (max_rows + 130)  # the tiny limit really spilled many runs
    else:
        assert runs == 0
    assert sorter.tmp is None  # spill files removed
    got = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
    # Oracle: one in-memory lexsort (unmapped last, ties by read_id).
    key = np.where(pos < 0, np.iinfo(np.int64).max, pos)
    order = np.lexsort((rid, key))
    np.testing.assert_array_equal(got["mapped_pos"], pos[order])
    np.testing.assert_array_equal(got["read_id"], rid[order])
    np.testing.assert_array_equal(got["reads"], payload[order])
    assert all(len(o["read_id"]) == chunk_rows for o in out[:-1])


def test_whole_chain_with_replicas_and_tiny_memory(tmp_path):
    spec = {k: v for k, v in SPEC.items()} | {"n_reads": 1500, "seed": 11}
    data_dir = tmp_path / "data"
    # Source replica 0 generates; both replicas then split the chunks.
    mapped_items = []
    mapper = Mapper()
    for r in range(2):
        src = ReadShards()
        src.setup(Context(params={"dir": str(data_dir), "generate": spec, "chunk_rows": 200},
                          replica=r, replicas=2, stage="reads"))
        if r == 0:
            mapper.setup(Context(params={"reference": str(data_dir), "k": K}))
        mapped_items += [mapper.process(it) for it in src.generate()]
    out, runs, _ = _sort(mapped_items, max_rows_in_memory=250, chunk_rows=300)
    assert runs >= 5
    sink = HDF5Sink()
    sink.setup(Context(params={"path": str(tmp_path / "out")}))
    for o in out:
        sink.consume(o)
    sink.finish()
    with h5py.File(tmp_path / "out" / "shard-00000.h5") as f:
        res = {k: f[k][...] for k in f}
    # No read lost or duplicated, output sorted, mapping identical to mapping all reads at once.
    np.testing.assert_array_equal(np.sort(res["read_id"]), np.arange(1500))
    np.testing.assert_array_equal(sort_order(res["mapped_pos"], res["read_id"]), np.arange(1500))
    ref = load_reference(data_dir)
    with h5py.File(data_dir / "reads" / "shard-00000.h5") as f:
        assert f["reads"].shape[0] == 500
    direct = map_reads(KmerIndex(ref.seq, K), res["reads"], 3)
    np.testing.assert_array_equal(direct["mapped_pos"], res["mapped_pos"])


def test_read_shards_rejects_unknown_generate_key(tmp_path):
    with pytest.raises(ValueError, match=r"params.generate: unknown keys \['nreads'\]"):
        ReadShards().setup(Context(params={"dir": str(tmp_path), "generate": {"nreads": 5}},
                                   stage="reads"))


def test_job_file_names_real_stages_and_valid_generate():
    job = tomllib.loads((Path(__file__).parents[2] / "jobs" / "genomics.toml").read_text())
    classes = []
    for st in job["stages"]:
        mod, cls = st["uses"].split(":")
        classes.append(getattr(import_module(mod), cls))
    assert classes == [ReadShards, Mapper, CoordinateSorter, MappedWriter]
    assert issubclass(MappedWriter, HDF5Sink)
    gen = job["stages"][0]["params"]["generate"]
    assert set(gen) <= set(SPEC)
    # The mapper's seeds cover the reads: max_mismatches < read_len // k.
    mp = job["stages"][1]["params"]
    assert mp["max_mismatches"] < gen["read_len"] // mp["k"]


def test_reusing_a_dataset_made_with_other_generate_values_is_an_error(tmp_path):
    from pipelines.genomics.data import ensure_dataset

    spec = {"genome_len": 5000, "n_reads": 200, "read_len": 32, "n_shards": 2}
    ensure_dataset(tmp_path / "d", spec, replica=0)
    ensure_dataset(tmp_path / "d", spec, replica=0)  # same values: reused
    with pytest.raises(ValueError, match=r"params.generate.n_reads: the dataset in .* was made "
                                         r"with 200 but the job asks for 300"):
        ensure_dataset(tmp_path / "d", {**spec, "n_reads": 300}, replica=1)
