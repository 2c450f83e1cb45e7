"""Numba histogram kernels with numpy's edge rules.

Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``; the last bin is closed
(``v == edges[-1]`` counts); values outside ``[edges[0], edges[-1]]`` and NaNs are not
counted. For uniform edges the bin is first estimated in float64 arithmetic and then
corrected by comparing the value with the edges themselves, so results are identical to
``np.histogram``. Values are compared in their own type with the edges in theirs, with
numpy's promotion: integer data against integer edges exactly (as numpy's
``searchsorted`` does), anything against float edges in float64.
"""

from __future__ import annotations

import numpy as np

from ._aot import REALS, signatures
from ._kernel import kernel

# float64 edges (integer edges, given by the user for integer data, are compiled by Numba)
_1D = "{x}[::1], f8[::1], b1, f8"
_2D = "{x}[::1], {x}[::1], f8[::1], b1, f8, f8[::1], b1, f8"


@kernel
def find_bin(v, edges, uniform, norm):
    """Bin of ``v`` (``-1`` when outside or NaN)."""
    nb = edges.shape[0] - 1
    if not (v >= edges[0] and v <= edges[nb]):
        return -1
    if uniform:
        i = int((np.float64(v) - np.float64(edges[0])) * norm)
        if i > nb - 1:
            i = nb - 1
        if i < 0:
            i = 0
        while i > 0 and v < edges[np.uint64(i)]:
            i -= 1
        while i < nb - 1 and v >= edges[np.uint64(i + 1)]:
            i += 1
        return i
    lo, hi = 0, nb - 1  # largest i in [0, nb-1] with edges[i] <= v
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if edges[np.uint64(mid)] <= v:
            lo = mid
        else:
            hi = mid - 1
    return lo


@kernel
def bin_estimates(x, edges, norm, idx):
    """The first step of :func:`find_bin` for uniform edges, on all of ``x`` at once:
    ``idx[i]`` is the float64 estimate of ``x[i]``'s bin, clamped to ``[0, nb - 1]``, or
    ``-1`` when ``x[i]`` is outside the edges or NaN (compared as :func:`find_bin`
    compares). Branch-free, int32: LLVM vectorises the loop (two values per SSE2
    instruction). Needs ``nb < 2**31``; :func:`count_bins4` finishes the search."""
    nb = edges.shape[0] - 1
    lo, hi = edges[0], edges[nb]
    e0, top = np.float64(edges[0]), np.float64(nb - 1)
    for i in range(x.shape[0]):
        v = x[i]
        t = (np.float64(v) - e0) * norm
        t = t if t < top else top
        t = t if t > 0.0 else 0.0
        idx[i] = np.int32(t) if (v >= lo and v <= hi) else np.int32(-1)


@kernel(inline="always")
def _fix_bin(v, b, edges, nb):
    """Correct the estimate ``b >= 0`` of an in-range ``v`` (:func:`find_bin`'s loops;
    ``v >= edges[0]`` stops the first one at 0)."""
    while v < edges[np.uint64(b)]:
        b -= 1
    while b < nb - 1 and v >= edges[np.uint64(b + 1)]:
        b += 1
    return b


@kernel
def count_bins4(x, edges, est, subs):
    """Correct the estimates ``est`` of :func:`bin_estimates` against the edges (numpy's
    rules, exactly as :func:`find_bin`) and count ``x[i]`` into row ``i % 4`` of ``subs``
    (``(4, bins)``); ``-1`` is not counted. Four rows, one per unrolled step: consecutive
    increments of a bin do not wait for each other (measured 25% faster than a row
    index computed per element)."""
    nb = edges.shape[0] - 1
    s0, s1, s2, s3 = subs[0], subs[1], subs[2], subs[3]
    n = x.shape[0]
    n4 = n - n % 4
    for i in range(0, n4, 4):
        b = est[i]
        if b >= 0:
            s0[np.uint64(_fix_bin(x[i], np.int64(b), edges, nb))] += 1
        b = est[i + 1]
        if b >= 0:
            s1[np.uint64(_fix_bin(x[i + 1], np.int64(b), edges, nb))] += 1
        b = est[i + 2]
        if b >= 0:
            s2[np.uint64(_fix_bin(x[i + 2], np.int64(b), edges, nb))] += 1
        b = est[i + 3]
        if b >= 0:
            s3[np.uint64(_fix_bin(x[i + 3], np.int64(b), edges, nb))] += 1
    for i in range(n4, n):
        b = est[i]
        if b >= 0:
            s0[np.uint64(_fix_bin(x[i], np.int64(b), edges, nb))] += 1


#: Values per slice of the histogram (256 KiB of float64: a slice stays in the L2 cache
#: while it is visited twice); ``hp.describe`` folds its data in slices of this size too
SLICE = 32768
#: Interleaved sub-histograms of :func:`count_slice` (rows of ``subs``)
SUBS = 4
#: Most bins counted in four sub-histograms by :func:`hist1d` (2 MiB of them); more bins
#: rarely see two increments of one bin in a row, and four copies would cost memory
SUB_BINS = 1 << 16
_MAX_INT32 = 2**31 - 1  # edges of an int32 bin estimate


@kernel
def count_slice(x, r0, r1, edges, uniform, norm, subs, est):
    """Counts of ``x[r0:r1]`` (at most :data:`SLICE` values) added to the :data:`SUBS`
    sub-histograms ``subs`` (``(SUBS, bins)``, int64; numpy's rules, :func:`find_bin`).
    Uniform edges: :func:`bin_estimates` into the int32 scratch ``est`` (``r1 - r0``
    long), then :func:`count_bins4` (the two loops of the native reference, about 25%
    faster than one search per element); other edges: :func:`find_bin`, value ``i``
    into row ``i % SUBS``. The one slice kernel of ``hp.histogram`` and ``hp.describe``."""
    if uniform and edges.shape[0] <= _MAX_INT32:  # vectorised estimates, then the search
        part = x[r0:r1]
        bin_estimates(part, edges, norm, est)
        count_bins4(part, edges, est, subs)
        return
    for i in range(r0, r1):
        b = find_bin(x[np.uint64(i)], edges, uniform, norm)
        if b >= 0:  # unsigned indices: no code for negative ones (measured 17% faster)
            subs[np.uint64(i & (SUBS - 1)), np.uint64(b)] += 1


@kernel(aot=signatures(_1D + ", i8[::1]", x=REALS))
def hist1d(x, edges, uniform, norm, counts):
    """Counts of ``x`` added to ``counts`` (numpy's rules, :func:`find_bin`). Uniform
    edges (up to :data:`SUB_BINS` bins) are counted a slice at a time by
    :func:`count_slice`, as ``hp.describe`` counts; other edges by :func:`find_bin`."""
    nb = edges.shape[0] - 1
    n = x.shape[0]
    if uniform and nb <= SUB_BINS:
        subs = np.zeros((SUBS, nb), dtype=np.int64)
        est = np.empty(min(n, SLICE), dtype=np.int32)
        for r0 in range(0, n, SLICE):
            r1 = min(n, r0 + SLICE)
            count_slice(x, r0, r1, edges, uniform, norm, subs, est[:r1 - r0])
        for b in range(nb):
            counts[b] += subs[0, b] + subs[1, b] + subs[2, b] + subs[3, b]
        return
    for i in range(n):
        b = find_bin(x[i], edges, uniform, norm)
        if b >= 0:
            counts[b] += 1


@kernel(aot=signatures("{x}[::1], f8[::1], f8[::1], b1, f8, f8[::1]", x=REALS))
def hist1d_weighted(x, w, edges, uniform, norm, out):
    for i in range(x.shape[0]):
        b = find_bin(x[i], edges, uniform, norm)
        if b >= 0:
            out[b] += w[i]


@kernel(aot=signatures(_2D + ", i8[:, ::1]", x=REALS))
def hist2d(x, y, ex, ux, nx, ey, uy, ny, counts):
    for i in range(x.shape[0]):
        a = find_bin(x[i], ex, ux, nx)
        if a >= 0:
            b = find_bin(y[i], ey, uy, ny)
            if b >= 0:
                counts[a, b] += 1


@kernel(aot=signatures("{x}[::1], {x}[::1], f8[::1], f8[::1], b1, f8, f8[::1], b1, f8, "
                       "f8[:, ::1]", x=REALS))
def hist2d_weighted(x, y, w, ex, ux, nx, ey, uy, ny, out):
    for i in range(x.shape[0]):
        a = find_bin(x[i], ex, ux, nx)
        if a >= 0:
            b = find_bin(y[i], ey, uy, ny)
            if b >= 0:
                out[a, b] += w[i]
