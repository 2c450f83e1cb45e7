"""Numba kernels of the moment state: count, NaN count, compensated sum, mean, M2, min, max.

A state is a float64 array of shape ``(k, 8)`` (one row per column; ``k == 1`` for all
elements). Rows are processed in chunks of about ``CHUNK`` elements: a chunk's sum is a
plain sum, its M2 a second pass around the chunk mean (in cache), and chunks are merged
into the running state with Chan, Golub & LeVeque's update; chunk sums are added with
Neumaier's compensated summation. NaNs are counted and left out of everything else.
"""

from __future__ import annotations

import numpy as np

from ._aot import INTS, signatures
from ._kernel import kernel

COUNT, NAN, SUM, COMP, MEAN, M2, MIN, MAX = range(8)
WIDTH = 8
CHUNK = 1024


def empty_state(k: int) -> np.ndarray:
    """The state of zero elements for ``k`` columns."""
    s = np.zeros((k, WIDTH))
    s[:, MIN], s[:, MAX] = np.inf, -np.inf
    return s


@kernel
def _merge_row(out, j, cnt, nan, s, mean, m2, mn, mx):
    out[j, NAN] += nan
    if cnt == 0:
        return
    na = out[j, COUNT]
    if na == 0:
        out[j, MEAN] = mean
        out[j, M2] = m2
    else:
        n = na + cnt
        delta = mean - out[j, MEAN]
        out[j, MEAN] += delta * (cnt / n)
        out[j, M2] += m2 + delta * delta * (na * cnt / n)
    out[j, COUNT] = na + cnt
    a = out[j, SUM]
    t = a + s
    if abs(a) >= abs(s):
        out[j, COMP] += (a - t) + s
    else:
        out[j, COMP] += (s - t) + a
    out[j, SUM] = t
    if mn < out[j, MIN]:
        out[j, MIN] = mn
    if mx > out[j, MAX]:
        out[j, MAX] = mx


@kernel
def chunk_fast(x, r0, r1):
    """Sum, min, max of ``x[r0:r1]`` assuming no NaN (4 independent accumulators)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    mn0 = np.inf
    mn1 = np.inf
    mx0 = -np.inf
    mx1 = -np.inf
    i = r0
    while i + 4 <= r1:
        u = np.uint64(i)  # an unsigned index: no code for negative ones
        a = np.float64(x[u])
        b = np.float64(x[u + np.uint64(1)])
        c = np.float64(x[u + np.uint64(2)])
        d = np.float64(x[u + np.uint64(3)])
        s0 += a
        s1 += b
        s2 += c
        s3 += d
        if a < mn0:
            mn0 = a
        if b < mn1:
            mn1 = b
        if c < mn0:
            mn0 = c
        if d < mn1:
            mn1 = d
        if a > mx0:
            mx0 = a
        if b > mx1:
            mx1 = b
        if c > mx0:
            mx0 = c
        if d > mx1:
            mx1 = d
        i += 4
    while i < r1:
        a = np.float64(x[np.uint64(i)])
        s0 += a
        if a < mn0:
            mn0 = a
        if a > mx0:
            mx0 = a
        i += 1
    return (s0 + s1) + (s2 + s3), min(mn0, mn1), max(mx0, mx1)


@kernel
def chunk_nan(x, r0, r1):
    """Sum, count and NaN count, min and max of ``x[r0:r1]`` with NaNs left out (the
    slow path of a chunk whose fast sum came out NaN)."""
    s = 0.0
    cnt = 0.0
    nan = 0.0
    mn = np.inf
    mx = -np.inf
    for i in range(r0, r1):
        v = np.float64(x[i])
        if v != v:
            nan += 1.0
        else:
            s += v
            cnt += 1.0
            mn = min(mn, v)
            mx = max(mx, v)
    return s, cnt, nan, mn, mx


@kernel
def chunk_m2(x, r0, r1, mean):
    m0 = 0.0
    m1 = 0.0
    i = r0
    while i + 2 <= r1:
        u = np.uint64(i)
        d0 = np.float64(x[u]) - mean
        d1 = np.float64(x[u + np.uint64(1)]) - mean
        m0 += d0 * d0
        m1 += d1 * d1
        i += 2
    while i < r1:
        d0 = np.float64(x[np.uint64(i)]) - mean
        m0 += d0 * d0
        i += 1
    return m0 + m1


@kernel  # no AOT build: hp.stats uses _repro_nb; describe_1d compiles it in
def moments_1d(x, out):
    """Accumulate all elements of the 1-D array ``x`` into ``out[0]``.

    Each chunk first takes the fast path (no NaN checks); if its sum comes out NaN (a
    NaN, or +inf and -inf) the chunk is redone with NaNs counted and skipped.
    """
    n = x.shape[0]
    for r0 in range(0, n, CHUNK):
        r1 = min(n, r0 + CHUNK)
        s, mn, mx = chunk_fast(x, r0, r1)
        if s == s:
            cnt = np.float64(r1 - r0)
            mean = s / cnt
            _merge_row(out, 0, cnt, 0.0, s, mean, chunk_m2(x, r0, r1, mean), mn, mx)
            continue
        s, cnt, nan, mn, mx = chunk_nan(x, r0, r1)
        mean = s / cnt if cnt > 0 else 0.0
        m2 = 0.0
        for i in range(r0, r1):
            v = np.float64(x[i])
            if v == v:
                m2 += (v - mean) * (v - mean)
        _merge_row(out, 0, cnt, nan, s, mean, m2, mn, mx)


@kernel  # no AOT build (not called by hpcproc any more)
def moments_2d(x, out):
    """Accumulate every column of the 2-D array ``x`` into the rows of ``out``."""
    n, k = x.shape
    chunk = max(1, CHUNK // k)
    s = np.zeros(k)
    cnt = np.zeros(k)
    nan = np.zeros(k)
    mn = np.empty(k)
    mx = np.empty(k)
    m2 = np.zeros(k)
    mean = np.zeros(k)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        s[:] = 0.0
        cnt[:] = 0.0
        nan[:] = 0.0
        m2[:] = 0.0
        mn[:] = np.inf
        mx[:] = -np.inf
        for i in range(r0, r1):
            for j in range(k):
                v = np.float64(x[i, j])
                if v != v:
                    nan[j] += 1.0
                else:
                    s[j] += v
                    cnt[j] += 1.0
                    mn[j] = min(mn[j], v)
                    mx[j] = max(mx[j], v)
        for j in range(k):
            mean[j] = s[j] / cnt[j] if cnt[j] > 0 else 0.0
        for i in range(r0, r1):
            for j in range(k):
                v = np.float64(x[i, j])
                if v == v:
                    m2[j] += (v - mean[j]) * (v - mean[j])
        for j in range(k):
            _merge_row(out, j, cnt[j], nan[j], s[j], mean[j], m2[j], mn[j], mx[j])


@kernel(aot=signatures("{x}[:, ::1], i8[:, ::1]", x=INTS[:4] + ("u1",))  # bool as u1
        + signatures("{x}[:, ::1], u8[:, ::1]", x=INTS[4:]))
def int_extras(x, out):
    """Exact integer sum (in ``out``'s type, int64 or uint64, wrapping like numpy), min
    and max of each column."""
    n, k = x.shape
    for i in range(n):
        for j in range(k):
            v = x[i, j]
            out[j, 0] += v
            if v < out[j, 1]:
                out[j, 1] = v
            if v > out[j, 2]:
                out[j, 2] = v
