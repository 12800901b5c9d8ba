"""Adaptive binary arithmetic coding: LZMA's range coder.

Each context is an 11-bit probability that the next bin is 0, starting at 1/2 and moved 1/32 of
the way towards every bin coded with it.  The coder keeps a 32-bit range; the encoder's low end
has a carry byte (``cache``) so that no bit is ever re-emitted.  *Bypass* bins (probability 1/2,
no context) halve the range.  ``Encoder.finish()`` flushes five bytes; the decoder reads zeros
past the end (its first byte is always 0, the encoder's initial cache).

The methods are the building blocks the syntax uses: :meth:`Encoder.bit` / :meth:`Decoder.bit`
for context-coded bins, ``bypass`` for equiprobable ones, and ``exp_golomb`` (order ``k``, all
bypass) for escape values.
"""

from __future__ import annotations

from .golomb import BitstreamError

__all__ = ["Encoder", "Decoder", "PROB_BITS"]

PROB_BITS = 11
_ONE = 1 << PROB_BITS
_HALF = _ONE >> 1
_MOVE = 5
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF


class Encoder:
    """Codes bins into bytes; ``probs`` holds one probability per context."""

    def __init__(self, n_contexts: int) -> None:
        self.probs = [_HALF] * n_contexts
        self.low = 0
        self.range = _MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        low = self.low
        if low < 0xFF000000 or low > _MASK32:
            carry = low >> 32
            out = self.out
            out.append((self.cache + carry) & 0xFF)
            if self.cache_size > 1:
                out.extend(bytes([(0xFF + carry) & 0xFF]) * (self.cache_size - 1))
            self.cache_size = 0
            self.cache = (low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (low & 0x00FFFFFF) << 8

    def bit(self, ctx: int, b: int) -> None:
        """Code bin ``b`` (0 or 1) with context ``ctx``."""
        p = self.probs[ctx]
        bound = (self.range >> PROB_BITS) * p
        if b:
            self.low += bound
            self.range -= bound
            self.probs[ctx] = p - (p >> _MOVE)
        else:
            self.range = bound
            self.probs[ctx] = p + ((_ONE - p) >> _MOVE)
        while self.range < _TOP:
            self.range <<= 8
            self._shift_low()

    def bypass(self, value: int, n: int) -> None:
        """Code the ``n`` low bits of ``value``, most significant first, at probability 1/2."""
        for i in range(n - 1, -1, -1):
            self.range >>= 1
            if value >> i & 1:
                self.low += self.range
            while self.range < _TOP:
                self.range <<= 8
                self._shift_low()

    def exp_golomb(self, value: int, k: int = 0) -> None:
        """Exp-Golomb code of order ``k`` of ``value >= 0``, in bypass bins."""
        v = value + (1 << k)
        n = v.bit_length()
        self.bypass(0, n - 1 - k)  # the prefix zeros
        self.bypass(v, n)

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


class Decoder:
    """Reads the bins :class:`Encoder` coded, from ``data[start:]``."""

    def __init__(self, data: bytes, n_contexts: int, start: int = 0,
                 where: str = "stream") -> None:
        self.probs = [_HALF] * n_contexts
        self.data = data
        self.where = where
        if len(data) - start < 5 or data[start] != 0:
            raise BitstreamError(f"{where}: arithmetic-coded data is missing or corrupt")
        self.code = int.from_bytes(data[start + 1 : start + 5], "big")
        self.pos = start + 5
        self.range = _MASK32

    def _next(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def bit(self, ctx: int) -> int:
        p = self.probs[ctx]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            self.probs[ctx] = p + ((_ONE - p) >> _MOVE)
            b = 0
        else:
            self.code -= bound
            self.range -= bound
            self.probs[ctx] = p - (p >> _MOVE)
            b = 1
        while self.range < _TOP:
            self.range <<= 8
            self.code = (self.code << 8) | self._next()
        return b

    def bypass(self, n: int) -> int:
        v = 0
        for _ in range(n):
            self.range >>= 1
            if self.code >= self.range:
                self.code -= self.range
                v = (v << 1) | 1
            else:
                v <<= 1
            while self.range < _TOP:
                self.range <<= 8
                self.code = (self.code << 8) | self._next()
        return v

    def exp_golomb(self, k: int = 0) -> int:
        zeros = 0
        while not self.bypass(1):
            zeros += 1
            if zeros > 32:
                raise BitstreamError(f"{self.where}: Exp-Golomb escape longer than 32 bits")
        v = (1 << (zeros + k)) | self.bypass(zeros + k)
        return v - (1 << k)

    def overrun(self) -> int:
        """Bytes read past the end of the data (more than the 4 the encoder's flush allows
        means the data was truncated)."""
        return max(0, self.pos - len(self.data))
