"""The layers moved to the framework (:mod:`streampipe.train.layers`); this name stays for
existing imports (``from pipelines.split_learning.layers import Linear``)."""

from streampipe.train.layers import GELU, Conv2d, Flatten, Layer, Linear, ReLU, Reshape, Sequential

__all__ = ["GELU", "Conv2d", "Flatten", "Layer", "Linear", "ReLU", "Reshape", "Sequential"]
