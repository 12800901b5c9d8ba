"""The stage-worker protocol: what one pipeline stage must do for the schedule executor.

The executor (:mod:`streampipe.train.executor`) runs a rank's actions and moves values between
ranks; everything numerical is a stage worker's. Any object with these methods is one;
:class:`~streampipe.train.layer_worker.LayerWorker` (streampipe's NumPy/CuPy layers) and
:class:`~streampipe.train.torch_adapter.TorchWorker` (a slice of a ``torch.nn.Sequential``)
implement it.

Per minibatch step the executor calls :meth:`~StageWorker.begin`, then for each microbatch
key ``mb`` in the schedule's order ``forward`` and either ``backward`` or (zero-bubble
schedules) ``backward_input`` followed later by ``backward_weight``, and finally ``step``.
Gradient convention: a worker *adds* each microbatch's summed-loss gradient into its parameter
gradients, and ``step`` divides the total by the minibatch size once before the optimizer
update, so that any schedule gives the same weights as single-process training on the mean loss.

Values crossing :meth:`forward` / :meth:`backward` are the worker's own array type (NumPy, CuPy,
torch tensors); :meth:`to_wire` / :meth:`from_wire` turn them into what the transport carries
(host NumPy arrays) and back.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

__all__ = ["StageWorker", "SumFn"]

SumFn = Callable[[Any], Any]
"""All-reduce of one flat host (NumPy) vector over a stage's replicas: returns the sum."""


@runtime_checkable
class StageWorker(Protocol):
    """One stage copy's side of pipelined training (see the module docstring)."""

    loss: float
    """The summed loss of the current minibatch's microbatches so far (last stage only)."""

    def begin(self, n_samples: int) -> None:
        """Start a minibatch of ``n_samples`` samples: zero the gradients and the loss."""

    def forward(self, mb: Hashable, x: Any, target: Any = None) -> Any:
        """Forward microbatch ``mb``, keeping what its backward needs; returns the output.

        On the last stage ``target`` is given: the worker computes the summed loss, keeps its
        gradient for :meth:`backward`, adds the loss to :attr:`loss` and returns None.
        """

    def backward(self, mb: Hashable, grad: Any = None) -> Any:
        """Backward ``mb`` with the gradient of the stage output (None on the last stage);
        adds the parameter gradients, frees what ``mb`` kept, returns the input gradient."""

    def backward_input(self, mb: Hashable, grad: Any = None) -> Any:
        """First half of a split backward: return the input gradient, keep what the weight
        gradients need."""

    def backward_weight(self, mb: Hashable) -> None:
        """Second half: add ``mb``'s parameter gradients and free what it kept."""

    def step(self, reduce: SumFn | None = None) -> None:
        """``reduce`` the summed gradients over replicas (data parallel) when given, divide
        by the minibatch size, take the optimizer step."""

    def held(self) -> tuple[int, int]:
        """(microbatches whose backward is pending, bytes of arrays kept for them)."""

    def state(self) -> dict[str, Any]:
        """Weights and optimizer state as nested dicts of host arrays and scalars (the
        checkpoint; :func:`streampipe.train.checkpoint.save` writes it as HDF5 groups)."""

    def load_state(self, state: dict[str, Any], where: str) -> None:
        """Restore :meth:`state`'s output; errors name ``where`` and the mismatching field."""

    def predict(self, x: Any) -> Any:
        """Inference: the stage output for ``x`` without keeping anything."""

    def to_wire(self, value: Any) -> Any:
        """A worker value as host NumPy arrays (what crosses ranks)."""

    def from_wire(self, value: Any) -> Any:
        """A received host value as this worker's array type, on its device."""
