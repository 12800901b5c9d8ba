"""Adaptive binary arithmetic coding: LZMA's range coder.

Each context is an 11-bit probability that the next bin is 0, starting at 1/2 and moved 1/32 of
the way towards every bin coded with it.  The coder keeps a 32-bit range; the encoder's low end
has a carry byte (``cache``) so that no bit is ever re-emitted.  *Bypass* bins (probability 1/2,
no context) halve the range.  The encoder leaves out its first byte (always 0, the initial
cache) and the zero bytes at the end of its flush: the decoder reads zeros past the end.

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
    """Codes bins into bytes.  Bins are collected as ``(context, bit)`` pairs (context -1:
    bypass) and coded in one pass by :meth:`finish`, which keeps the coder's state in local
    variables: several times faster in Python than coding bin by bin."""

    def __init__(self, n_contexts: int) -> None:
        self.n_contexts = n_contexts
        self.ctxs: list[int] = []
        self.bits: list[int] = []

    def bit(self, ctx: int, b: int) -> None:
        """Code bin ``b`` (0 or 1) with context ``ctx``."""
        self.ctxs.append(ctx)
        self.bits.append(b)

    def bypass(self, value: int, n: int) -> None:
        """Code the ``n`` low bits of ``value``, most significant first, at probability 1/2."""
        for i in range(n - 1, -1, -1):
            self.ctxs.append(-1)
            self.bits.append(value >> i & 1)

    def exp_golomb(self, value: int, k: int = 0) -> None:
        """Exp-Golomb code of order ``k`` of ``value >= 0``, in bypass bins."""
        v = value + (1 << k)
        n = v.bit_length()
        self.bypass(0, n - 1 - k)  # the prefix zeros
        self.bypass(v, n)

    def finish(self) -> bytes:
        probs = [_HALF] * self.n_contexts
        low, rng = 0, _MASK32
        state = [0, 1]  # the carry byte (cache) and how many bytes wait behind it
        out = bytearray()

        def shift(low: int) -> int:
            # shift the low end's top byte out: a byte is final once no carry can reach it
            if low < 0xFF000000 or low > _MASK32:
                carry = low >> 32
                out.append((state[0] + carry) & 0xFF)
                if state[1] > 1:
                    out.extend(bytes([(0xFF + carry) & 0xFF]) * (state[1] - 1))
                state[0], state[1] = (low >> 24) & 0xFF, 0
            state[1] += 1
            return (low & 0x00FFFFFF) << 8

        for ctx, b in zip(self.ctxs, self.bits):  # noqa: B905 - same length by construction
            if ctx < 0:
                rng >>= 1
                if b:
                    low += rng
            else:
                p = probs[ctx]
                bound = (rng >> PROB_BITS) * p
                if b:
                    low += bound
                    rng -= bound
                    probs[ctx] = p - (p >> _MOVE)
                else:
                    rng = bound
                    probs[ctx] = p + ((_ONE - p) >> _MOVE)
            while rng < _TOP:
                rng <<= 8
                low = shift(low)
        for _ in range(5):
            low = shift(low)
        return bytes(out[1:]).rstrip(b"\0")


class Decoder:
    """Reads the bins :class:`Encoder` coded, from ``data[start:]``."""

    def __init__(self, data: bytes, n_contexts: int, start: int = 0,
                 where: str = "stream") -> None:
        self.probs = [_HALF] * n_contexts
        self.data = data
        self.where = where
        self.code = int.from_bytes(data[start : start + 4].ljust(4, b"\0"), "big")
        self.pos = start + 4
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
        """Bytes read past the end of the data (the zeros the encoder left out; many more mean
        the data is corrupt)."""
        return max(0, self.pos - len(self.data))
