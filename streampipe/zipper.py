"""``join = "zip"``: the items of one source item from every input, handed over together."""

from __future__ import annotations

from typing import Any

__all__ = ["Zipper"]


class Zipper:
    """``join = "zip"``: the records of one source item from every input, handed over together.

    Records arrive re-keyed ``(seq, input, *rest)`` in position order, so all records of source
    item ``seq`` come together, input by input. Records with the same ``rest`` on every input
    become one item ``(value_0, value_1, ...)`` with key ``(seq, *rest)``; a record missing on
    any input (dropped there, or a different fan-out) drops the others.
    """

    def __init__(self, n_inputs: int) -> None:
        self.n = n_inputs
        self.root: Any = None
        self.parts: dict[tuple, list[Any]] = {}

    def add(self, keys: list[tuple], values: list[Any], out: list[tuple[tuple, Any]]) -> None:
        for key, value in zip(keys, values, strict=True):
            if key[0] != self.root:
                self._emit(out)
                self.root = key[0]
            part = self.parts.setdefault(key[2:], [_MISSING] * self.n)
            part[key[1]] = value

    def complete(self, low: tuple | None, out: list[tuple[tuple, Any]]) -> None:
        """Emit the current group once no record of it can still come (``low`` is past it)."""
        if self.parts and low is not None and low >= (self.root, self.n):
            self._emit(out)

    def _emit(self, out: list[tuple[tuple, Any]]) -> None:
        root = self.root
        for rest in sorted(self.parts):
            vals = self.parts[rest]
            if all(v is not _MISSING for v in vals):
                out.append(((root, *rest), tuple(vals)))
        self.parts.clear()

    @property
    def pending(self) -> tuple | None:
        """The lowest output key still held back (None: nothing held)."""
        return (self.root,) if self.parts else None


_MISSING = object()
