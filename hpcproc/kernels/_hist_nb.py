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


@kernel(aot=signatures(_1D + ", i8[::1]", x=REALS))
def hist1d(x, edges, uniform, norm, counts):
    for i in range(x.shape[0]):
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
