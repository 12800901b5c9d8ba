"""A small PyTorch CNN on the 8x8 digits, for jobs/digits-cnn-torch.toml.

``build()`` returns the model to cut (a ``torch.nn.Sequential``: cuts index its children);
``load()`` the data (scikit-learn's digits when installed, else the synthetic glyphs), split
3:1 into training and test sets with seed 0.
"""

from __future__ import annotations

from torch import nn

from pipelines.split_learning.data import load_digits, train_test_split


def build(width: int = 64) -> nn.Sequential:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),                   # 0
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),     # 1, 2
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),    # 3, 4
        nn.Flatten(),                                 # 5
        nn.Linear(16 * 64, width), nn.ReLU(),         # 6, 7
        nn.Linear(width, 10),                         # 8
    )


def load() -> dict:
    train, test = train_test_split(load_digits("auto"), 0.25, seed=0)
    return {"x_train": train.X, "y_train": train.y, "x_test": test.X, "y_test": test.y}
