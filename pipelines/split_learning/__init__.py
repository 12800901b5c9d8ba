"""Split learning built-in: a model cut into pipeline stages and trained with microbatches.

Numerical parts (NumPy, or CuPy through ``xp``): layers, loss, optimizers, data and client
shards, the serial reference trainer, a single-process schedule executor (the oracle for the
MPI one), distance correlation for the privacy audit, and the layer-partition planner.
"""

from .data import Dataset, load_digits, shard, synthetic_digits, train_test_split
from .dcor import dcor2_biased, dcor2_u
from .layers import GELU, Conv2d, Flatten, Layer, Linear, ReLU, Reshape, Sequential
from .loss import softmax_cross_entropy
from .model import build_model, mlp
from .optim import SGD, Adam, make_optimizer
from .partition import balance_by_time, measure_layer_times, stage_times
from .pipelined import StageWorker, run_schedule_local
from .splitnn import TrainConfig, parse_train, round_robin, train_round_robin_serial
from .topology import Topology
from .trainer import (
    TrainResult,
    accumulate_minibatch,
    evaluate,
    microbatch_bounds,
    minibatches,
    train_serial,
)

__all__ = [
    "Dataset", "load_digits", "shard", "synthetic_digits", "train_test_split",
    "dcor2_biased", "dcor2_u",
    "GELU", "Conv2d", "Flatten", "Layer", "Linear", "ReLU", "Reshape", "Sequential",
    "softmax_cross_entropy", "build_model", "mlp", "SGD", "Adam", "make_optimizer",
    "StageWorker", "run_schedule_local",
    "TrainConfig", "parse_train", "round_robin", "train_round_robin_serial", "Topology",
    "balance_by_time", "measure_layer_times", "stage_times",
    "TrainResult", "accumulate_minibatch", "evaluate", "microbatch_bounds", "minibatches",
    "train_serial",
]
