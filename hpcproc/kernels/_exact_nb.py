"""Numba kernels of the exact (reproducible) moment state.

The sum of the values and the sum of their squares are accumulated *exactly* in
fixed-point superaccumulators: ``NB`` signed int64 bins, bin ``i`` weighing
``2**(32 * i + BASE)``, each addition adding at most ``2**33`` to a bin, carries
propagated (:func:`normalize`) long before a bin could overflow. Integer addition is
associative, so the accumulated value does not depend on the order of the values, the
block size, the thread split or the number of ranks: the statistics derived from it are
bit-identical for any decomposition.

Fast path, per chunk of at most 1024 finite values (in cache): *error-free folds*.
With ``C = 1.5 * 2**k`` and every ``|r| < 2**(k-10)``, ``q = (r + C) - C`` is ``r``
rounded to a multiple of ``2**(k-52)`` and ``r - q`` is exact; the sum of 1024 such
``q`` (integers times ``2**(k-52)`` below ``2**43``) is exact in float64 and goes into
the bins as one number. Folding repeats on the remainders until they are all zero
(2 folds for typical data; values too large or too small for the fold go to the bins one
by one). Squares are split error-free, ``x*x = hi + lo`` (Dekker), and both parts are
summed exactly; float32 (and small integer) inputs have exact float64 squares, ``lo = 0``.
Values whose square would overflow or underflow are scaled by a power of two first.

The state row (int64): count of finite values, NaN count, +inf count, -inf count,
min and max (float64 bit patterns), then the ``NB`` bins of the sum and the ``NB`` bins
of the sum of squares.
"""

from __future__ import annotations

import math

import numpy as np

from ._aot import REALS, signatures
from ._numba import kernel

COUNT, NAN, PINF, NINF, MIN, MAX = range(6)
NB = 144
BASE = -2304  # weight of bin 0: 2**BASE (below the lowest bit of a scaled square)
S1 = 6
S2 = S1 + NB
WIDTH = S2 + NB
CHUNK = 1024
_MASK = np.int64(0xFFFFFFFF)
_BIG = 2.0 ** 500  # squares of values up to here neither overflow...
_TINY = 2.0 ** -480  # ...nor lose their low part below 2**-1074 (down to here)
_SPLIT = 134217729.0  # 2**27 + 1: Dekker's splitter


def empty_state(k: int) -> np.ndarray:
    """The exact state of zero elements for ``k`` columns."""
    s = np.zeros((k, WIDTH), dtype=np.int64)
    s[:, MIN] = np.array(np.inf).view(np.int64)
    s[:, MAX] = np.array(-np.inf).view(np.int64)
    return s


@kernel
def _add(acc, j, c0, v, eshift):
    """Add ``v * 2**eshift`` exactly to the bins ``acc[j, c0:c0+NB]`` (v finite)."""
    if v == 0.0:
        return
    m, e = math.frexp(v)
    mant = np.int64(m * 9007199254740992.0)  # |m| * 2**53 < 2**53, exact
    sign = np.int64(1)
    if mant < 0:
        mant = -mant
        sign = np.int64(-1)
    p = e - 53 + eshift - BASE
    b = c0 + (p >> 5)
    sh = p & 31
    t = (mant & _MASK) << sh
    u = (mant >> 32) << sh
    acc[j, b] += sign * (t & _MASK)
    acc[j, b + 1] += sign * ((t >> 32) + (u & _MASK))
    acc[j, b + 2] += sign * (u >> 32)


@kernel
def _normalize_row(acc, j, c0):
    """Propagate carries: every bin but the top one in ``[0, 2**32)``."""
    for i in range(c0, c0 + NB - 1):
        c = acc[j, i] >> 32
        acc[j, i] -= c << 32
        acc[j, i + 1] += c


@kernel
def _fold(buf, m, amax, acc, j, c0):
    """Add the exact sum of ``buf[:m]`` (finite, ``max |buf| == amax``) to the bins.

    ``buf`` is overwritten. Returns the number of additions made to the bins. After a
    fold every remainder is below ``2**(k-52)``, so the next fold can use ``k - 42``
    without a max pass (the max is recomputed only from the third fold on).
    """
    adds = 0
    if amax == 0.0:
        return 0
    k = math.frexp(amax)[1] + 10  # amax < 2**(k-10)
    folds = 0
    while True:
        if k > 1023 or k < -950:  # fold constant out of range: add one by one
            for i in range(m):
                if buf[i] != 0.0:
                    _add(acc, j, c0, buf[i], 0)
            return adds + m
        c = math.ldexp(1.5, k)
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        nz = False
        i = 0
        while i + 4 <= m:
            r0 = buf[i]
            r1 = buf[i + 1]
            r2 = buf[i + 2]
            r3 = buf[i + 3]
            q0 = (r0 + c) - c
            q1 = (r1 + c) - c
            q2 = (r2 + c) - c
            q3 = (r3 + c) - c
            s0 += q0
            s1 += q1
            s2 += q2
            s3 += q3
            r0 -= q0
            r1 -= q1
            r2 -= q2
            r3 -= q3
            buf[i] = r0
            buf[i + 1] = r1
            buf[i + 2] = r2
            buf[i + 3] = r3
            nz |= (r0 != 0.0) | (r1 != 0.0) | (r2 != 0.0) | (r3 != 0.0)
            i += 4
        while i < m:
            r0 = buf[i]
            q0 = (r0 + c) - c
            s0 += q0
            r0 -= q0
            buf[i] = r0
            nz |= r0 != 0.0
            i += 1
        _add(acc, j, c0, (s0 + s1) + (s2 + s3), 0)  # exact: see the module docstring
        adds += 1
        folds += 1
        if not nz:
            return adds
        if folds == 1:
            k -= 42
        else:
            amax = 0.0
            for i in range(m):
                amax = max(amax, abs(buf[i]))
            k = math.frexp(amax)[1] + 10


@kernel
def _squares(xb, m, amax, sq_exact, hb, lb, acc, j):
    """Add the exact sum of squares of ``xb[:m]`` (finite) to the S2 bins."""
    if amax == 0.0:
        return 0
    adds = 0
    if sq_exact:  # float32 / small integer data: float64 squares are exact
        for i in range(m):
            hb[i] = xb[i] * xb[i]
        return _fold(hb, m, amax * amax, acc, j, S2)
    tiny = False
    if amax < _BIG:  # bounds of the parts, for the folds: hi <= amax**2, lo <= ulp/2
        hmax = amax * amax
        lmax = hmax * 2.0 ** -52
        for i in range(m):
            v = xb[i]
            h = v * v
            t = _SPLIT * v
            vh = t - (t - v)
            vl = v - vh
            lo = ((vh * vh - h) + 2.0 * vh * vl) + vl * vl
            hb[i] = h
            lb[i] = lo
            tiny |= (v != 0.0) & (abs(v) < _TINY)
        if not tiny:
            adds += _fold(hb, m, hmax, acc, j, S2)
            adds += _fold(lb, m, lmax, acc, j, S2)
            return adds
    for i in range(m):  # scale each value by a power of two: v = f * 2**e, f in [0.5, 1)
        v = xb[i]
        if v == 0.0:
            continue
        f, e = math.frexp(v)
        h = f * f
        t = _SPLIT * f
        fh = t - (t - f)
        fl = f - fh
        lo = ((fh * fh - h) + 2.0 * fh * fl) + fl * fl
        _add(acc, j, S2, h, 2 * e)
        _add(acc, j, S2, lo, 2 * e)
        adds += 2
    return adds


@kernel
def _chunk(xb, m, mn, mx, sq_exact, hb, lb, acc, mm, j):
    """Account ``m`` finite values ``xb[:m]`` (min ``mn``, max ``mx``) in row ``j``."""
    if m == 0:
        return 0
    acc[j, COUNT] += m
    if mn < mm[j, 0]:
        mm[j, 0] = mn
    if mx > mm[j, 1]:
        mm[j, 1] = mx
    amax = max(abs(mn), abs(mx))
    adds = _squares(xb, m, amax, sq_exact, hb, lb, acc, j)
    adds += _fold(xb, m, amax, acc, j, S1)
    return adds


@kernel(aot=signatures("{x}[:, ::1], i8[:, ::1], f8[:, ::1], b1", x=REALS))
def exact_2d(x, out, mm, sq_exact):
    """Accumulate every column of the 2-D array ``x`` into the rows of ``out`` (min and
    max into the float64 rows of ``mm``)."""
    n, k = x.shape
    xb = np.empty(CHUNK)
    hb = np.empty(CHUNK)
    lb = np.empty(CHUNK)
    adds = np.zeros(k, dtype=np.int64)
    rows = max(8, CHUNK // k)  # a chunk of all k columns stays in cache
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for j in range(k):
            m = 0
            mn = np.inf
            mx = -np.inf
            s = 0.0
            for i in range(r0, r1):  # fast copy: no NaN/inf checks
                v = np.float64(x[i, j])
                xb[m] = v
                m += 1
                s += v
                mn = min(mn, v)
                mx = max(mx, v)
            if s - s != 0.0:  # a NaN or an infinity (or a sum overflow): recount
                m = 0
                mn = np.inf
                mx = -np.inf
                for i in range(r0, r1):
                    v = np.float64(x[i, j])
                    if v != v:
                        out[j, NAN] += 1
                    elif v == np.inf:
                        out[j, PINF] += 1
                    elif v == -np.inf:
                        out[j, NINF] += 1
                    else:
                        xb[m] = v
                        m += 1
                        mn = min(mn, v)
                        mx = max(mx, v)
            adds[j] += _chunk(xb, m, mn, mx, sq_exact, hb, lb, out, mm, j)
            if adds[j] > (1 << 28):
                _normalize_row(out, j, S1)
                _normalize_row(out, j, S2)
                adds[j] = 0
    for j in range(k):
        _normalize_row(out, j, S1)
        _normalize_row(out, j, S2)
