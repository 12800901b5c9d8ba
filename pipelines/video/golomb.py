"""Exp-Golomb codes: a bit writer and a bit reader.

``ue(v)`` for ``v >= 0`` writes ``v + 1`` in binary preceded by one zero per bit after the
first (``0 -> 1``, ``1 -> 010``, ``2 -> 011``, ``3 -> 00100``).  ``se(v)`` maps signed values
``0, 1, -1, 2, -2, ...`` to ``0, 1, 2, 3, 4, ...`` and writes that with ``ue`` (as in H.264).
Bits are kept as a ``'0'/'1'`` string: joins and ``str.find`` run in C, which keeps a pure
Python codec fast enough.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

__all__ = ["BitstreamError", "BitWriter", "BitReader", "ue_code", "se_code"]


class BitstreamError(ValueError):
    """A stream that is truncated or does not follow the syntax."""


@lru_cache(maxsize=4096)
def ue_code(v: int) -> str:
    """The unsigned Exp-Golomb code of ``v >= 0`` as a bit string."""
    if v < 0:
        raise ValueError(f"ue: value must be >= 0, got {v}")
    s = bin(v + 1)[2:]
    return "0" * (len(s) - 1) + s


def se_code(v: int) -> str:
    """The signed Exp-Golomb code of ``v``."""
    return ue_code(2 * v - 1 if v > 0 else -2 * v)


class BitWriter:
    """Collects codes; :meth:`getvalue` pads with zero bits to a whole byte."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def ue(self, v: int) -> None:
        self._parts.append(ue_code(int(v)))

    def se(self, v: int) -> None:
        self._parts.append(se_code(int(v)))

    def ue_many(self, values: Iterable[int]) -> None:
        self._parts.extend(ue_code(v) for v in values)

    def raw(self, bits: str) -> None:
        """Append already-formed codes (a '0'/'1' string)."""
        self._parts.append(bits)

    def bits(self) -> str:
        return "".join(self._parts)

    def getvalue(self) -> bytes:
        bits = self.bits()
        nbytes = (len(bits) + 7) // 8
        if not nbytes:
            return b""
        return int(bits.ljust(8 * nbytes, "0"), 2).to_bytes(nbytes, "big")


class BitReader:
    """Reads Exp-Golomb codes from bytes; raises :class:`BitstreamError` past the end."""

    def __init__(self, data: bytes, where: str = "stream") -> None:
        self._bits = bin(int.from_bytes(data, "big"))[2:].zfill(8 * len(data)) if data else ""
        self.pos = 0
        self.where = where

    def ue(self) -> int:
        bits, pos = self._bits, self.pos
        first = bits.find("1", pos)
        if first < 0:
            raise BitstreamError(f"{self.where}: truncated (no code at bit {pos} of {len(bits)})")
        end = 2 * first - pos + 1
        if end > len(bits):
            raise BitstreamError(f"{self.where}: truncated (code at bit {pos} runs past the end)")
        self.pos = end
        return int(bits[first:end], 2) - 1

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)

    def remaining(self) -> int:
        """Bits left after the current position."""
        return len(self._bits) - self.pos
