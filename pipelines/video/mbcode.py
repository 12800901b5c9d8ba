"""The macroblock layer of a frame payload, coded with the adaptive arithmetic coder of
:mod:`.arith` (see README.md, "Bitstream", for the binarisation and the contexts).

Per macroblock in raster order: in P and B frames a *skip* bin, then the macroblock type, the
vector differences of the directions it uses and the coded block pattern; then each coded
block's levels as a significance map with *last* flags in zig-zag order, each level's magnitude
as a unary prefix with an Exp-Golomb escape, and its sign.  Every context starts at 1/2 in
every frame, so frames decode independently.

:func:`encode_macroblocks` and :func:`decode_macroblocks` mirror each other line by line; the
context choices they share are the small functions at the top.
"""

from __future__ import annotations

import numpy as np

from .arith import Decoder, Encoder
from .golomb import BitstreamError
from .motion import BACKWARD, BIDIR, FORWARD, INTRA
from .transform import INTER_LUMA, INTRA_LUMA

__all__ = ["N_CONTEXTS", "encode_macroblocks", "decode_macroblocks", "mb_directions",
           "skip_mode"]

# ---- context layout (indices into the coder's probability list)
SKIP = 0  # 3: skipped neighbours (left, upper)
P_INTRA = 3  # 3: intra neighbours
B_TYPE = 6  # 3 for "bi-directional?" by bi-directional neighbours, 1 "forward?", 1 "backward?"
MVD = 11  # per component (y, x): 3 for "zero?" by the neighbours' magnitude, 7 prefix bins
_MVD_SET = 10
CBP_Y = MVD + 2 * _MVD_SET  # 4: coded left / upper luma neighbour
CBP_C = CBP_Y + 4  # 2 for U by "any luma coded", 2 for V by "U coded"
COEF = CBP_C + 4
_SIG, _LAST, _GT1, _GTN = 0, 64, 128, 134  # per block kind: 64 + 64 + 6 + 6 contexts
_KIND_SET = 140
N_CONTEXTS = COEF + 4 * _KIND_SET

_MVD_PREFIX = 8  # unary bins of |d| - 1 before the Exp-Golomb (order 3) escape
_LEVEL_PREFIX = 13  # unary bins of |level| - 2 before the Exp-Golomb (order 0) escape
MAX_LEVEL = 1 << 15  # |level| and |vector difference| a stream may carry (valid ones are
MAX_MVD = 1 << 14  # far below: |DC difference| <= 4080, vectors within the picture's reach)
_MAX_OVERRUN = 64  # zero bytes read past a payload's end before it counts as corrupt


def mb_directions(ftype: str, mode: int) -> tuple[int, ...]:
    """The vector directions a macroblock mode codes."""
    if mode == INTRA:
        return ()
    if ftype == "P":
        return (0,)
    return {FORWARD: (0,), BACKWARD: (1,), BIDIR: (0, 1)}[mode]


def skip_mode(ftype: str, prev_mode: int | None) -> int:
    """The mode of a skipped macroblock: forward in P frames; in B frames the previous
    macroblock's mode in the row when it was inter, else bi-directional."""
    if ftype == "P":
        return FORWARD
    return prev_mode if prev_mode in (FORWARD, BACKWARD, BIDIR) else BIDIR


class _Neighbours:
    """What the contexts look at: per macroblock skip, mode, coded block pattern and vector
    difference magnitudes, with the left and upper neighbours' values (0 when absent)."""

    def __init__(self, rows: int, cols: int) -> None:
        n = rows * cols
        self.cols = cols
        self.skip = [0] * n
        self.mode = [INTRA] * n
        self.cbp = [0] * n
        self.mvd = [[0, 0, 0, 0] for _ in range(n)]  # |dy|, |dx| forward, |dy|, |dx| backward

    def left(self, m: int) -> int:
        return m - 1 if m % self.cols else -1

    def up(self, m: int) -> int:
        return m - self.cols

    def count(self, table: list, m: int, value: int) -> int:
        a, b = self.left(m), self.up(m)
        return (a >= 0 and table[a] == value) + (b >= 0 and table[b] == value)

    def mvd_ctx(self, m: int, d: int, comp: int) -> int:
        a, b = self.left(m), self.up(m)
        s = (self.mvd[a][2 * d + comp] if a >= 0 else 0) + (
            self.mvd[b][2 * d + comp] if b >= 0 else 0)
        return 0 if s < 3 else 1 if s <= 32 else 2

    def luma_coded(self, m: int, k: int, side: str) -> int:
        """Whether the left/upper neighbour of luma block ``k`` (0..3) of macroblock ``m`` has
        levels."""
        if side == "left":
            if k & 1:
                return self.cbp[m] >> (k - 1) & 1
            a = self.left(m)
            return self.cbp[a] >> (k + 1) & 1 if a >= 0 else 0
        if k & 2:
            return self.cbp[m] >> (k - 2) & 1
        b = self.up(m)
        return self.cbp[b] >> (k + 2) & 1 if b >= 0 else 0


def _kind_base(kind: int) -> int:
    return COEF + kind * _KIND_SET


# ------------------------------------------------------------------------ encoder
def _encode_mvd(enc: Encoder, v: int, ctx0: int, comp: int) -> None:
    base = MVD + comp * _MVD_SET
    if v == 0:
        enc.bit(base + ctx0, 0)
        return
    enc.bit(base + ctx0, 1)
    a = abs(v) - 1
    for i in range(_MVD_PREFIX):
        more = a > i
        enc.bit(base + 3 + min(i, 6), more)
        if not more:
            break
    else:
        enc.exp_golomb(a - _MVD_PREFIX, 3)
    enc.bypass(v < 0, 1)


def _encode_block(enc: Encoder, row: list[int], kind: int) -> None:
    base = _kind_base(kind)
    last = max(i for i, v in enumerate(row) if v)
    n_gt1 = n_eq1 = 0
    bit = enc.bit
    for pos in range(last + 1):
        v = row[pos]
        if pos < 63:
            bit(base + _SIG + pos, v != 0)
        if not v:
            continue
        a = abs(v)
        g = 5 if pos == 0 and kind < INTER_LUMA else 0 if n_gt1 else min(1 + n_eq1, 4)
        bit(base + _GT1 + g, a > 1)
        if a > 1:
            g2 = 5 if pos == 0 and kind < INTER_LUMA else min(n_gt1, 4)
            e = a - 2
            for i in range(_LEVEL_PREFIX):
                more = e > i
                bit(base + _GTN + g2, more)
                if not more:
                    break
            else:
                enc.exp_golomb(e - _LEVEL_PREFIX, 0)
            n_gt1 += 1
        else:
            n_eq1 += 1
        enc.bypass(v < 0, 1)
        if pos < 63:
            bit(base + _LAST + pos, pos == last)


def encode_macroblocks(enc: Encoder, ftype: str, rows: int, cols: int, modes: np.ndarray,
                       mvds: np.ndarray, skip: np.ndarray, levels: np.ndarray,
                       order: np.ndarray, kinds: np.ndarray) -> None:
    """Code every macroblock.  ``mvds`` ``(n_mb, 2, 2)`` are the vector differences from the
    predictors, ``skip`` which macroblocks are skipped (their mode, vectors and levels are
    implied), ``levels`` the blocks (intra DC as differences), ``order``/``kinds`` each
    macroblock's block indices and every block's kind."""
    nb = _Neighbours(rows, cols)
    coded = np.any(levels != 0, axis=1)
    for m in range(rows * cols):
        cbp = sum(1 << k for k in range(6) if coded[order[m, k]])
        if ftype != "I":
            s = int(skip[m])
            enc.bit(SKIP + nb.count(nb.skip, m, 1), s)
            nb.skip[m] = s
            mode = int(modes[m])
            nb.mode[m] = mode
            if s:
                continue
            if ftype == "P":
                enc.bit(P_INTRA + nb.count(nb.mode, m, INTRA), mode == INTRA)
            else:
                enc.bit(B_TYPE + nb.count(nb.mode, m, BIDIR), mode != BIDIR)
                if mode != BIDIR:
                    enc.bit(B_TYPE + 3, mode != FORWARD)
                    if mode != FORWARD:
                        enc.bit(B_TYPE + 4, mode != BACKWARD)
            for d in mb_directions(ftype, mode):
                for comp in (0, 1):
                    v = int(mvds[m, d, comp])
                    _encode_mvd(enc, v, nb.mvd_ctx(m, d, comp), comp)
                    nb.mvd[m][2 * d + comp] = abs(v)
        nb.cbp[m] = cbp
        for k in range(4):
            enc.bit(CBP_Y + nb.luma_coded(m, k, "left") + 2 * nb.luma_coded(m, k, "up"),
                    cbp >> k & 1)
        enc.bit(CBP_C + (cbp & 15 != 0), cbp >> 4 & 1)
        enc.bit(CBP_C + 2 + (cbp >> 4 & 1), cbp >> 5 & 1)
        for k in range(6):
            if cbp >> k & 1:
                b = int(order[m, k])
                _encode_block(enc, levels[b].tolist(), int(kinds[b]))


# ------------------------------------------------------------------------ decoder
def _decode_mvd(dec: Decoder, ctx0: int, comp: int) -> int:
    base = MVD + comp * _MVD_SET
    if not dec.bit(base + ctx0):
        return 0
    a = 0
    while a < _MVD_PREFIX and dec.bit(base + 3 + min(a, 6)):
        a += 1
    if a == _MVD_PREFIX:
        a += dec.exp_golomb(3)
        if a >= MAX_MVD:
            raise BitstreamError(f"{dec.where}: vector difference {a + 1} out of range")
    return -(a + 1) if dec.bypass(1) else a + 1


def _decode_block(dec: Decoder, out: np.ndarray, kind: int) -> None:
    base = _kind_base(kind)
    n_gt1 = n_eq1 = 0
    bit = dec.bit
    for pos in range(64):
        if pos < 63 and not bit(base + _SIG + pos):
            continue
        g = 5 if pos == 0 and kind < INTER_LUMA else 0 if n_gt1 else min(1 + n_eq1, 4)
        if bit(base + _GT1 + g):
            g2 = 5 if pos == 0 and kind < INTER_LUMA else min(n_gt1, 4)
            e = 0
            while e < _LEVEL_PREFIX and bit(base + _GTN + g2):
                e += 1
            if e == _LEVEL_PREFIX:
                e += dec.exp_golomb(0)
                if e >= MAX_LEVEL:
                    raise BitstreamError(f"{dec.where}: level {e + 2} out of range")
            a = e + 2
            n_gt1 += 1
        else:
            a = 1
            n_eq1 += 1
        out[pos] = -a if dec.bypass(1) else a
        if pos == 63 or bit(base + _LAST + pos):
            return


def decode_macroblocks(dec: Decoder, ftype: str, rows: int, cols: int, order: np.ndarray,
                       kinds_of: object, levels: np.ndarray, where: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of :func:`encode_macroblocks`: fills ``levels`` and returns ``(modes,
    mvds, skip)``.  ``kinds_of(intra)`` gives a macroblock's six block kinds."""
    n = rows * cols
    nb = _Neighbours(rows, cols)
    modes = np.full(n, INTRA, np.int8)
    mvds = np.zeros((n, 2, 2), np.int64)
    skip = np.zeros(n, bool)
    prev_mode: int | None = None
    for m in range(n):
        if m % cols == 0:
            prev_mode = None
        if ftype != "I":
            s = dec.bit(SKIP + nb.count(nb.skip, m, 1))
            nb.skip[m] = s
            if s:
                mode = skip_mode(ftype, prev_mode)
                skip[m] = True
            elif ftype == "P":
                mode = INTRA if dec.bit(P_INTRA + nb.count(nb.mode, m, INTRA)) else FORWARD
            elif not dec.bit(B_TYPE + nb.count(nb.mode, m, BIDIR)):
                mode = BIDIR
            elif not dec.bit(B_TYPE + 3):
                mode = FORWARD
            else:
                mode = BACKWARD if not dec.bit(B_TYPE + 4) else INTRA
            modes[m] = nb.mode[m] = prev_mode = mode
            if s:
                continue
            for d in mb_directions(ftype, mode):
                for comp in (0, 1):
                    v = _decode_mvd(dec, nb.mvd_ctx(m, d, comp), comp)
                    mvds[m, d, comp] = v
                    nb.mvd[m][2 * d + comp] = abs(v)
        nb.cbp[m] = 0  # filled bit by bit: later luma bits look at earlier ones
        for k in range(4):
            nb.cbp[m] |= dec.bit(CBP_Y + nb.luma_coded(m, k, "left")
                                 + 2 * nb.luma_coded(m, k, "up")) << k
        cbp = nb.cbp[m]
        cbp |= dec.bit(CBP_C + (cbp & 15 != 0)) << 4
        cbp |= dec.bit(CBP_C + 2 + (cbp >> 4 & 1)) << 5
        nb.cbp[m] = cbp
        kinds = kinds_of(modes[m] == INTRA)
        for k in range(6):
            if cbp >> k & 1:
                _decode_block(dec, levels[order[m, k]], kinds[k])
        if dec.overrun() > _MAX_OVERRUN:
            raise BitstreamError(f"{where}: macroblock {m}: data ends early")
    return modes, mvds, skip


_KINDS = {True: [INTRA_LUMA] * 4 + [INTRA_LUMA + 1] * 2,
          False: [INTER_LUMA] * 4 + [INTER_LUMA + 1] * 2}


def mb_kinds(intra: bool) -> list[int]:
    """The six block kinds of a macroblock (four luma, U, V)."""
    return _KINDS[bool(intra)]
