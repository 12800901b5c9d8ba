"""Split learning built-in: hospitals (clients) keep their data and the bottom (and head) layers,
server ranks run the middle, trained with microbatch pipeline schedules.

It is one user of :mod:`streampipe.train`: the :class:`SplitLearning` layout (clients, U-shape,
round-robin turns, the privacy audit) plus its data (the 8x8 digits, client shards), the serial
round-robin oracle and distance correlation. Layers, losses, optimizers and the executor are the
framework's (``streampipe.train.layers`` etc.).
"""

from streampipe.train.layers import GELU, Conv2d, Flatten, Layer, Linear, ReLU, Reshape, Sequential
from streampipe.train.local import microbatch_bounds, run_schedule_local
from streampipe.train.losses import softmax_cross_entropy
from streampipe.train.model_spec import build_model, mlp
from streampipe.train.optim import SGD, Adam, make_optimizer
from streampipe.train.partition import balance_by_time, measure_layer_times, stage_times

from .data import Dataset, load_digits, shard, synthetic_digits, train_test_split
from .dcor import dcor2_biased, dcor2_u
from .splitnn import parse_train, train_round_robin_serial
from .topology import SplitLearning, round_robin
from .trainer import TrainResult, accumulate_minibatch, evaluate, minibatches, train_serial

__all__ = [
    "Dataset", "load_digits", "shard", "synthetic_digits", "train_test_split",
    "dcor2_biased", "dcor2_u", "SplitLearning", "parse_train", "round_robin",
    "train_round_robin_serial", "TrainResult", "accumulate_minibatch", "evaluate",
    "minibatches", "train_serial",
    # the framework's numerical parts, re-exported for split-learning users
    "GELU", "Conv2d", "Flatten", "Layer", "Linear", "ReLU", "Reshape", "Sequential",
    "softmax_cross_entropy", "build_model", "mlp", "SGD", "Adam", "make_optimizer",
    "balance_by_time", "measure_layer_times", "stage_times", "microbatch_bounds",
    "run_schedule_local",
]
