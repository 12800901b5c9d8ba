"""Parareal built-in for the 1-D heat equation: coarse predictor, distributed fine solves on
group stages, sequential correction over a feedback edge (README.md)."""

from .distributed import fine_solve_distributed
from .heat import HeatProblem, coarse, fine, fine_serial, parareal_serial
from .stages import (
    CoarsePredictor,
    FineCorrector,
    PararealCollector,
    PararealResult,
    PararealUpdate,
    PararealWork,
)

__all__ = ["HeatProblem", "coarse", "fine", "fine_serial", "parareal_serial",
           "fine_solve_distributed", "PararealWork", "CoarsePredictor", "FineCorrector",
           "PararealUpdate", "PararealCollector", "PararealResult"]
