"""SAM/BAM through the sink, read back with pysam: header, coordinate order, index, the read's
own bases and qualities on both strands, and NM recomputed by pysam from CIGAR + reference."""

from __future__ import annotations

import numpy as np
import pysam
import pytest

from pipelines.genomics import (
    AlignmentWriter,
    CoordinateSorter,
    Mapper,
    load_truth,
    make_dataset,
    read_fastq,
)
from pipelines.genomics.data import FASTA_NAME, FASTQ_NAME
from pipelines.genomics.seqcodes import BASES, PAD
from streampipe.stage import Context


@pytest.fixture(scope="module")
def mapped_chunks(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("bam") / "data", genome_len=60_000,
                        n_reads=3000, read_len=80, n_contigs=2, indel_rate=0.3, seed=9)
    mapper = Mapper()
    mapper.setup(Context(params={"reference": str(data / FASTA_NAME)}, stage="map"))
    sorter = CoordinateSorter()
    sorter.setup(Context(params={"max_rows_in_memory": 700, "chunk_rows": 500}, stage="sort"))
    fastq_rows = {}
    for chunk in read_fastq([data / FASTQ_NAME], 400):
        for i, name in enumerate(chunk["name"]):
            n = chunk["read_len"][i]
            fastq_rows[name.decode()] = (BASES[chunk["reads"][i, :n]].tobytes().decode(),
                                         chunk["qual"][i, :n].tolist())
        sorter.process(mapper.process(chunk))
    return data, list(sorter.finish()), fastq_rows


def _write(path, data, chunks, **params):
    w = AlignmentWriter()
    w.setup(Context(params={"path": str(path), "reference": str(data / FASTA_NAME), **params},
                    stage="write"))
    for c in chunks:
        w.consume(c)
    w.finish()
    return w.result()


def test_bam_reads_back_sorted_indexed_and_true_to_the_reads(tmp_path, mapped_chunks):
    data, chunks, fastq_rows = mapped_chunks
    res = _write(tmp_path / "out.bam", data, chunks)
    assert res["files"] == [str(tmp_path / "out.bam"), str(tmp_path / "out.bam.bai")]
    assert res["rows"] == 3000 and res["mapped"] + res["unmapped"] == 3000
    fasta = pysam.FastaFile(str(data / FASTA_NAME))
    truth = load_truth(data)
    with pysam.AlignmentFile(str(tmp_path / "out.bam")) as f:
        assert f.header["HD"]["SO"] == "coordinate"
        assert list(f.references) == list(fasta.references)
        assert list(f.lengths) == list(fasta.lengths)
        assert f.has_index() and f.check_index()
        assert f.mapped == res["mapped"] and f.unmapped == res["unmapped"]
        seen, last, spans = set(), (-1, -1), []
        for a in f.fetch(until_eof=True):
            seen.add(a.query_name)
            seq, qual = fastq_rows[a.query_name]
            # SEQ/QUAL are stored reference-forward; the original read comes back forward.
            assert a.get_forward_sequence() == seq
            assert list(a.get_forward_qualities()) == qual
            if a.is_unmapped:
                last = (1 << 30, 0)
                continue
            key = (a.reference_id, a.reference_start)
            assert key >= last
            last = key
            spans.append((a.query_name, a.reference_name, a.reference_start, a.reference_end))
            assert a.query_alignment_length == len(seq)
            # NM from pysam's own walk of the CIGAR against the reference.
            ref = fasta.fetch(a.reference_name).upper()
            pairs = a.get_aligned_pairs()
            nm = sum(1 for q, r in pairs if q is None or r is None) + sum(
                1 for q, r in pairs if q is not None and r is not None
                and a.query_sequence[q] != ref[r])
            assert nm == a.get_tag("NM")
            i = int(a.query_name[3:])
            if a.mapping_quality > 0:  # a confident placement is the simulator's own
                assert (a.reference_id, a.reference_start, a.is_reverse) == (
                    truth["true_tid"][i], truth["true_pos"][i], truth["true_rev"][i])
        assert len(seen) == 3000
        # The index answers region queries exactly as a scan of the records does.
        for contig, start, stop in [("chr1", 1000, 5000), ("chr2", 20_000, 20_500)]:
            by_index = {a.query_name for a in f.fetch(contig, start, stop)}
            by_scan = {name for name, c, lo, hi in spans
                       if c == contig and lo < stop and hi > start}
            assert by_index == by_scan and by_index


def _same_records(tmp_path, data, chunks):
    """Our BAM encoder against pysam's records (the SAM path), field by field and by bin."""
    _write(tmp_path / "a.bam", data, chunks)
    res = _write(tmp_path / "a.sam", data, chunks)
    assert res["files"] == [str(tmp_path / "a.sam")]  # SAM text is not indexed
    with pysam.AlignmentFile(str(tmp_path / "a.sam")) as s, \
            pysam.AlignmentFile(str(tmp_path / "p.bam"), "wb", template=s) as p:
        for r in s.fetch(until_eof=True):
            p.write(r)  # pysam/htslib encode these, bins included
    with pysam.AlignmentFile(str(tmp_path / "a.bam")) as b, \
            pysam.AlignmentFile(str(tmp_path / "p.bam")) as p:
        ours, theirs = list(b.fetch(until_eof=True)), list(p.fetch(until_eof=True))
    assert [r.to_string() for r in ours] == [r.to_string() for r in theirs]
    assert [r.bin for r in ours] == [r.bin for r in theirs]
    return ours


def test_sam_output_and_pysam_encoding_have_the_same_records(tmp_path, mapped_chunks):
    data, chunks, _ = mapped_chunks
    assert len(_same_records(tmp_path, data, chunks)) == 3000


def test_bam_encoder_on_odd_lengths_n_bases_no_names_no_qualities(tmp_path, mapped_chunks):
    data, _, _ = mapped_chunks
    c = next(read_fastq([data / FASTQ_NAME], 600))
    c["read_len"][::3] -= 7  # odd lengths: a half-filled last byte of SEQ
    c["reads"][np.arange(c["reads"].shape[1])[None, :] >= c["read_len"][:, None]] = PAD
    c["reads"][::5, 10] = 4  # N
    c["reads"][::11] = np.random.default_rng(0).integers(0, 4, c["reads"][::11].shape)  # no hit
    del c["name"], c["qual"]
    mapper = Mapper()
    mapper.setup(Context(params={"reference": str(data / FASTA_NAME)}, stage="map"))
    sorter = CoordinateSorter()
    sorter.setup(Context(params={}, stage="sort"))
    sorter.process(mapper.process(c))
    chunks = list(sorter.finish())
    assert np.count_nonzero(chunks[0]["flag"] & 4) >= 50
    recs = _same_records(tmp_path, data, chunks)
    assert {r.query_name for r in recs} == {f"read{i}" for i in c["read_id"]}
    assert all(r.query_qualities is None for r in recs)


def test_unsorted_input_is_refused_and_leaves_no_file(tmp_path, mapped_chunks):
    data, chunks, _ = mapped_chunks
    w = AlignmentWriter()
    w.setup(Context(params={"path": str(tmp_path / "x.bam"),
                            "reference": str(data / FASTA_NAME)}, stage="write"))
    w.consume(chunks[1])
    with pytest.raises(ValueError, match=r"stage 'write': rows are not in coordinate order "
                                         r"\(row 500\); put the sort stage first"):
        w.consume(chunks[0])
    w.close()
    assert not (tmp_path / "x.bam").exists() and not (tmp_path / "x.bam.tmp").exists()
    # With sorted = false the same stream is written, marked unsorted and not indexed.
    res = _write(tmp_path / "u.bam", data, chunks[::-1], sorted=False, index=False)
    with pysam.AlignmentFile(res["files"][0]) as f:
        assert f.header["HD"]["SO"] == "unsorted"
        assert sum(1 for _ in f.fetch(until_eof=True)) == 3000


@pytest.mark.parametrize("params, message", [
    ({"path": "x.cram"}, r"params.path: must end in .bam or .sam"),
    ({"path": "x.sam", "index": True}, r"params.index: an index needs a coordinate-sorted BAM"),
    ({"path": "x.bam", "level": 3}, r"params: unknown keys \['level'\]"),
])
def test_writer_params_errors(params, message):
    with pytest.raises(ValueError, match=message):
        AlignmentWriter().setup(Context(params={"reference": "r.fa", **params}, stage="write"))
