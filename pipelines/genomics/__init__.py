"""Read mapping built-in: read shards -> Mapper -> CoordinateSorter -> MappedWriter (README.md)."""

from .data import draw_reads, load_reference, make_dataset, make_genome
from .mapper import KmerIndex, Mapper, map_reads
from .sorter import CoordinateSorter
from .source import ReadShards
from .writer import MappedWriter, MappingResult

__all__ = ["make_dataset", "make_genome", "draw_reads", "load_reference", "KmerIndex",
           "map_reads", "Mapper", "CoordinateSorter", "ReadShards",
           "MappedWriter", "MappingResult"]
