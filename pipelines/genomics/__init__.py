"""Read mapping built-in: FASTQ (or HDF5 shards) -> Mapper -> CoordinateSorter -> BAM/SAM (or
HDF5).  Layout, algorithm and error model: README.md."""

from .align import Scoring
from .bam import AlignmentWriter
from .data import load_truth, make_dataset, make_genome, repeat_overlap, simulate_reads
from .fastq import FastqError, read_fastq, write_fastq
from .index import KmerIndex
from .mapper import DeviceReference, MapParams, Mapper, map_reads
from .reference import Reference, ReferenceError, load_reference, read_fasta, write_fasta
from .sorter import CoordinateSorter
from .source import FastqReads, ReadShards
from .writer import MappedWriter, MappingResult

__all__ = ["AlignmentWriter", "CoordinateSorter", "DeviceReference", "FastqError", "FastqReads",
           "KmerIndex", "MapParams", "MappedWriter", "Mapper", "MappingResult", "ReadShards",
           "Reference", "ReferenceError", "Scoring", "load_reference", "load_truth",
           "make_dataset", "make_genome", "map_reads", "read_fasta", "read_fastq",
           "repeat_overlap", "simulate_reads", "write_fasta", "write_fastq"]
