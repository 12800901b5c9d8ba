"""FASTQ and FASTA readers against pysam's own parsers (an independent implementation of the
same formats), and every malformation refused with the file, record and line."""

from __future__ import annotations

import gzip

import numpy as np
import pysam
import pytest

from pipelines.genomics import fastq
from pipelines.genomics.fastq import FastqError, read_fastq, write_fastq
from pipelines.genomics.reference import ReferenceError, read_fasta, write_fasta
from pipelines.genomics.seqcodes import BASES, PAD, encode


def _random_records(n: int, seed: int, min_len: int = 20, max_len: int = 120):
    rng = np.random.default_rng(seed)
    lens = rng.integers(min_len, max_len + 1, n).astype(np.int32)
    width = int(lens.max())
    reads = rng.integers(0, 5, (n, width), dtype=np.uint8)  # N included
    qual = rng.integers(0, 94, (n, width), dtype=np.uint8)
    names = [f"r{i}/{seed}" for i in range(n)]
    return names, reads, lens, qual


def _all(paths, chunk_rows):
    chunks = list(read_fastq(paths, chunk_rows))
    return chunks, {k: [row for c in chunks for row in
                        (c[k] if c[k].ndim == 1 else list(c[k]))] for k in chunks[0]}


@pytest.mark.parametrize("suffix", [".fastq", ".fastq.gz"])
def test_fastq_matches_pysam_fastx(tmp_path, suffix, monkeypatch):
    monkeypatch.setattr(fastq, "BLOCK_BYTES", 1000)  # records straddle many read blocks
    names, reads, lens, qual = _random_records(700, 1)
    path = tmp_path / f"r{suffix}"
    write_fastq(path, names, reads, lens, qual)
    chunks, got = _all([path], chunk_rows=128)
    assert [len(c["read_id"]) for c in chunks] == [128] * 5 + [60]
    np.testing.assert_array_equal(np.concatenate([c["read_id"] for c in chunks]), np.arange(700))
    with pysam.FastxFile(str(path)) as f:
        for i, rec in enumerate(f):
            n = int(lens[i])
            assert got["name"][i].decode() == rec.name
            assert BASES[got["reads"][i][:n]].tobytes().decode() == rec.sequence
            np.testing.assert_array_equal(got["qual"][i][:n], rec.get_quality_array())
            assert got["read_len"][i] == n
            assert np.all(got["reads"][i][n:] == PAD)  # padding past the read
    assert i == 699


def test_fastq_header_comments_crlf_lowercase_and_several_files(tmp_path):
    text = b"@a extra words\r\nacgtN\r\n+a\r\nIIII#\r\n@b\r\nGG\r\n+\r\n!!\r\n"
    (tmp_path / "1.fq").write_bytes(text)
    with gzip.open(tmp_path / "2.fq.gz", "wb") as f:
        f.write(b"@c\nT\n+\n~")  # no final newline
    chunks = list(read_fastq([tmp_path / "1.fq", tmp_path / "2.fq.gz"], chunk_rows=10))
    assert [list(c["name"]) for c in chunks] == [[b"a", b"b"], [b"c"]]
    np.testing.assert_array_equal(chunks[0]["reads"][0], encode(b"ACGTN"))
    np.testing.assert_array_equal(chunks[0]["qual"][0], [40, 40, 40, 40, 2])
    np.testing.assert_array_equal(chunks[1]["read_id"], [2])  # numbering runs across files
    assert chunks[1]["qual"][0, 0] == 93


@pytest.mark.parametrize("text, message", [
    (b"@a\nACGT\n+\nIIII\nb\nAC\n+\nII\n", r"record 2 \(line 5\): header must start with '@'"),
    (b"@a\nACGT\nIIII\n+\n", r"record 1 \(line 3\): expected the '\+' separator"),
    (b"@a\nACGT\n+\nIIII\n@b\nACXT\n+\nIIII\n", r"record 2 \(line 6\): 'X' is not a sequence"),
    (b"@a\nACGT\n+\nIII\n", r"record 1 \(line 4\): 3 quality bytes for 4 bases"),
    (b"@a\nAC\n+\nI \n", r"record 1 \(line 4\): quality byte 32 outside"),
    (b"@a\nACGT\n+\nIIII\n@b\nAC\n", r"record 2 \(line 5\): file ends inside the record"),
    (b"@ \nAC\n+\nII\n", r"record 1 \(line 1\): header has no read name"),
])
def test_fastq_errors_name_file_record_and_line(tmp_path, text, message):
    path = tmp_path / "bad.fq"
    path.write_bytes(text)
    with pytest.raises(FastqError, match=rf"bad\.fq: {message}"):
        list(read_fastq([path], chunk_rows=1))


def test_fastq_truncated_gzip_is_an_error(tmp_path):
    names, reads, lens, qual = _random_records(3000, 2)
    good = tmp_path / "r.fq.gz"
    write_fastq(good, names, reads, lens, qual)
    data = good.read_bytes()
    bad = tmp_path / "cut.fq.gz"
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(FastqError, match=r"cut\.fq\.gz: corrupt or truncated compressed data"):
        list(read_fastq([bad], chunk_rows=500))


def test_fasta_matches_pysam_faidx(tmp_path):
    rng = np.random.default_rng(3)
    contigs = [rng.integers(0, 5, n, dtype=np.uint8) for n in (1000, 61, 2500)]
    path = tmp_path / "ref.fa"
    write_fasta(path, ["c1", "c2", "c3"], contigs, width=60)
    ref = read_fasta(path)
    with pysam.FastaFile(str(path)) as fa:
        assert list(ref.names) == list(fa.references)
        assert list(ref.lengths) == list(fa.lengths)
        for t, name in enumerate(fa.references):
            assert BASES[ref.contig(t)].tobytes().decode() == fa.fetch(name)
    # Contigs are laid out with EDGE margins; locate() undoes the layout.
    tid, pos = ref.locate(ref.starts + [5, 0, 2499], np.array([10, 61, 1]))
    np.testing.assert_array_equal(tid, [0, 1, 2])
    np.testing.assert_array_equal(pos, [5, 0, 2499])
    tid, pos = ref.locate(ref.starts[:1] + 995, np.array([10]))  # runs off contig 0
    assert tid[0] == -1 and pos[0] == -1


def test_fasta_soft_mask_and_errors(tmp_path):
    p = tmp_path / "r.fa"
    p.write_bytes(b">x desc\nacgtRY\nAC\n")
    ref = read_fasta(p)
    np.testing.assert_array_equal(ref.contig(0), [0, 1, 2, 3, 4, 4, 0, 1])
    for text, message in [(b"ACGT\n", r"line 1: sequence before the first '>'"),
                          (b">a\nAC\n>a\nGG\n", r"line 3: contig name 'a' appears twice"),
                          (b">a\nAC\n>b\n", r"line 3: contig 'b' has no sequence"),
                          (b">a\nAJ\n", r"contig 'a' \(header line 1\): 'J' is not"),
                          (b"", r"no '>' header")]:
        p.write_bytes(text)
        with pytest.raises(ReferenceError, match=message):
            read_fasta(p)
