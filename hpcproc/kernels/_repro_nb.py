"""Numba kernels of the reproducible moment state: global chunks, a fixed merge tree.

The rows of the (global) input are cut into *chunks* aligned to the global row index:
chunk ``c`` is rows ``[c * R, (c + 1) * R)`` with ``R = rows_per_chunk(k)`` (1024
elements). A chunk is always summarised by the same code on the same elements in the
same order (:func:`fold_chunks`: today's per-element loops of :mod:`._moments_nb`, sum
then M2 around the chunk mean in cache), so its *leaf* ``(count, mean, M2)``, its NaN
count, min, max and sum do not depend on which rank, block or thread held it.

Leaves ``(count, mean, M2, sum)`` are merged along a *fixed binary tree over global chunk
indices* (Chan, Golub & LeVeque's update; means and sums kept as double-double): node
``(level, index)`` covers chunks ``[index * 2**level, (index + 1) * 2**level)`` and is
always ``merge(left child, right child)``. A contiguous range of chunks is held as its
canonical forest (maximal aligned nodes, left to right) on a stack: :func:`push_nodes`
pushes nodes in order and merges a node with its left sibling whenever both are present,
so the forest of a range is the same whatever pieces it was built from. NaN counts,
infinite chunk sums, min and max are order-free totals.

Building blocks (reusable): :func:`fold_chunks` (fold whole chunks of a block into a
stack and the order-free totals), :func:`push_nodes` (append nodes to a
stack), :func:`merge_node` (the one Chan merge), :func:`reduce_nodes` (fold a forest
left to right into its root values).
"""

from __future__ import annotations

import numpy as np

from ._aot import REALS, signatures
from ._kernel import kernel
from ._moments_nb import chunk_fast, chunk_m2, chunk_nan

CHUNK = 1024
OFFSET = 16.0  # a chunk whose |mean| exceeds OFFSET * (max - min) is offset data
NODE = 6  # node values per column: count, mean (hi, lo), M2, sum (hi, lo)
STACK = 130  # > 2 * 64 levels: the canonical forest of any range fits, plus one push
# order-free per-column totals (float64): finite count, NaN count, chunks whose sum is
# +inf, -inf, NaN (inf - inf inside the chunk)
T_COUNT, T_NAN, T_PINF, T_NINF, T_NANSUM = range(5)
TWIDTH = 5
# ahead-of-time signatures (the calls of repro_state): the stack (lvl, idx, val)
_STACK = "i8[::1], i8[::1], f8[:, :, ::1]"
_FOLD = ", i8, " + _STACK + ", i8, f8[:, ::1], f8[:, ::1], f8[:, :, ::1]"


def rows_per_chunk(k: int) -> int:
    """Rows of a chunk for ``k`` columns (a function of ``k`` only)."""
    return max(1, CHUNK // max(1, k))


@kernel
def merge_node(val, t, cnt, mh, ml, m2, sh, sl, j):
    """``val[t, j] = merge(val[t, j], (cnt, mh + ml, m2, sh + sl))``: Chan et al.'s update
    with the means kept as double-double ``(hi, lo)`` (the difference of two close means
    is then accurate), and the sums added as double-double; the left operand is in
    ``val``."""
    if cnt == 0.0:
        return
    na = val[t, j, 0]
    if na == 0.0:
        val[t, j, 0] = cnt
        val[t, j, 1] = mh
        val[t, j, 2] = ml
        val[t, j, 3] = m2
        val[t, j, 4] = sh
        val[t, j, 5] = sl
        return
    n = na + cnt
    f = cnt / n
    ah = val[t, j, 1]
    delta = (mh - ah) + (ml - val[t, j, 2])
    step = delta * f
    hi = ah + step  # two-sum: hi + err == ah + step exactly
    bb = hi - ah
    err = (ah - (hi - bb)) + (step - bb)
    lo = val[t, j, 2] + err
    val[t, j, 1] = hi + lo
    val[t, j, 2] = lo - (val[t, j, 1] - hi)
    val[t, j, 3] = (val[t, j, 3] + m2) + delta * delta * (na * f)
    val[t, j, 0] = n
    ah = val[t, j, 4]
    hi = ah + sh
    bb = hi - ah
    err = (ah - (hi - bb)) + (sh - bb)
    lo = (val[t, j, 5] + sl) + err
    val[t, j, 4] = hi + lo
    if val[t, j, 4] - val[t, j, 4] == 0.0:
        val[t, j, 5] = lo - (val[t, j, 4] - hi)
    else:  # the sum overflowed
        val[t, j, 5] = 0.0


@kernel
def _push(lvl, idx, val, top, level, index, nv, q):
    """Push node ``(level, index)`` with values ``nv[q]`` on the stack; merge siblings."""
    k = val.shape[1]
    lvl[top] = level
    idx[top] = index
    for j in range(k):
        for f in range(NODE):
            val[top, j, f] = nv[q, j, f]
    top += 1
    while top >= 2:
        a = top - 2
        b = top - 1
        if lvl[a] != lvl[b] or idx[a] % 2 != 0 or idx[b] != idx[a] + 1:
            break
        for j in range(k):
            merge_node(val, a, val[b, j, 0], val[b, j, 1], val[b, j, 2], val[b, j, 3],
                       val[b, j, 4], val[b, j, 5], j)
        lvl[a] += 1
        idx[a] //= 2
        top -= 1
    return top


@kernel(aot=[_STACK + ", i8, " + _STACK + ", i8"])
def push_nodes(lvl, idx, val, top, nl, ni, nv, m):
    """Push the ``m`` nodes ``(nl, ni, nv)`` (left to right) on the stack; the new top."""
    for q in range(m):
        top = _push(lvl, idx, val, top, nl[q], ni[q], nv, q)
    return top


@kernel(aot=["f8[:, :, ::1], i8, f8[:, :, ::1]"])
def reduce_nodes(val, m, out):
    """``out[0, j]`` = the node values of the forest ``val[:m]`` merged left to right."""
    k = val.shape[1]
    for j in range(k):
        for f in range(NODE):
            out[0, j, f] = 0.0
        for t in range(m):
            merge_node(out, 0, val[t, j, 0], val[t, j, 1], val[t, j, 2], val[t, j, 3],
                       val[t, j, 4], val[t, j, 5], j)


@kernel
def _account(j, cnt, nan, s, mn, mx, tot, mm):
    """Count a chunk in the totals and min/max; its sum for the tree (0 if not finite:
    infinite and NaN sums are counted instead)."""
    tot[j, T_COUNT] += cnt
    tot[j, T_NAN] += nan
    if s - s == 0.0:
        pass
    elif s == np.inf:
        tot[j, T_PINF] += 1.0
    elif s == -np.inf:
        tot[j, T_NINF] += 1.0
    else:
        tot[j, T_NANSUM] += 1.0
    if mn < mm[j, 0]:
        mm[j, 0] = mn
    if mx > mm[j, 1]:
        mm[j, 1] = mx
    return s if s - s == 0.0 else 0.0


@kernel
def _chunk_m2r(x, r0, r1, mean):
    """``sum((x - mean)**2)`` and ``sum(x - mean)`` over ``x[r0:r1]`` (no NaN; 4
    independent accumulators of each)."""
    m0 = 0.0
    m1 = 0.0
    m2 = 0.0
    m3 = 0.0
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    i = r0
    while i + 4 <= r1:
        u = np.uint64(i)  # an unsigned index: no code for negative ones
        d0 = np.float64(x[u]) - mean
        d1 = np.float64(x[u + np.uint64(1)]) - mean
        d2 = np.float64(x[u + np.uint64(2)]) - mean
        d3 = np.float64(x[u + np.uint64(3)]) - mean
        m0 += d0 * d0
        m1 += d1 * d1
        m2 += d2 * d2
        m3 += d3 * d3
        e0 += d0
        e1 += d1
        e2 += d2
        e3 += d3
        i += 4
    while i < r1:
        d0 = np.float64(x[np.uint64(i)]) - mean
        m0 += d0 * d0
        e0 += d0
        i += 1
    return (m0 + m1) + (m2 + m3), (e0 + e1) + (e2 + e3)


@kernel
def _leaf_1d(x, r0, r1):
    """count, NaN count, sum, mean (hi, lo), M2, min, max of ``x[r0:r1]`` (NaNs left out).

    Offset data (``|mean| > OFFSET * (max - min)``): the corrected two-pass algorithm,
    ``lo`` the mean of the residuals, so that the merges see accurate differences of
    means; otherwise the plain two-pass algorithm (``lo = 0``), as fast as the previous
    kernel. The choice depends on the chunk's values only."""
    s, mn, mx = chunk_fast(x, r0, r1)
    if s == s:
        cnt = np.float64(r1 - r0)
        mean = s / cnt
        if abs(mean) <= OFFSET * (mx - mn):  # the mean's rounding does not matter
            return cnt, 0.0, s, mean, 0.0, chunk_m2(x, r0, r1, mean), mn, mx
        m2, e = _chunk_m2r(x, r0, r1, mean)
        return cnt, 0.0, s, mean, e / cnt, max(0.0, m2 - e * (e / cnt)), mn, mx
    s, cnt, nan, mn, mx = chunk_nan(x, r0, r1)
    mean = s / cnt if cnt > 0 else 0.0
    m2 = 0.0
    e = 0.0
    for i in range(r0, r1):
        v = np.float64(x[i])
        if v == v:
            m2 += (v - mean) * (v - mean)
            e += v - mean
    lo = e / cnt if cnt > 0 else 0.0
    return cnt, nan, s, mean, lo, max(0.0, m2 - e * lo), mn, mx


@kernel(aot=signatures("{x}[::1]" + _FOLD, x=REALS))
def fold_1d(x, c0, lvl, idx, val, top, tot, mm, leaf):
    n = x.shape[0]
    c = c0
    for r0 in range(0, n, CHUNK):
        r1 = min(n, r0 + CHUNK)
        cnt, nan, s, mean, lo, m2, mn, mx = _leaf_1d(x, r0, r1)
        leaf[0, 0, 4] = _account(0, cnt, nan, s, mn, mx, tot, mm)
        leaf[0, 0, 0] = cnt
        leaf[0, 0, 1] = mean
        leaf[0, 0, 2] = lo
        leaf[0, 0, 3] = m2
        top = _push(lvl, idx, val, top, 0, c, leaf, 0)
        c += 1
    return top


@kernel(aot=signatures("{x}[:, ::1]" + _FOLD, x=REALS))
def fold_2d(x, c0, lvl, idx, val, top, tot, mm, leaf):
    n, k = x.shape
    rows = max(1, CHUNK // k)
    s = np.zeros(k)
    cnt = np.zeros(k)
    nan = np.zeros(k)
    mn = np.empty(k)
    mx = np.empty(k)
    c = c0
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        s[:] = 0.0
        cnt[:] = 0.0
        nan[:] = 0.0
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
            leaf[0, j, 0] = cnt[j]
            leaf[0, j, 1] = s[j] / cnt[j] if cnt[j] > 0 else 0.0
            leaf[0, j, 2] = 0.0
            leaf[0, j, 3] = 0.0
        for i in range(r0, r1):
            for j in range(k):
                v = np.float64(x[i, j])
                if v == v:
                    d = v - leaf[0, j, 1]
                    leaf[0, j, 3] += d * d
                    leaf[0, j, 2] += d
        for j in range(k):
            if cnt[j] > 0:  # corrected two-pass: lo = mean of the residuals
                e = leaf[0, j, 2]
                leaf[0, j, 2] = e / cnt[j]
                leaf[0, j, 3] = max(0.0, leaf[0, j, 3] - e * leaf[0, j, 2])
            leaf[0, j, 4] = _account(j, cnt[j], nan[j], s[j], mn[j], mx[j], tot, mm)
        top = _push(lvl, idx, val, top, 0, c, leaf, 0)
        c += 1
    return top


def fold_chunks(x, c0, lvl, idx, val, top, tot, mm):
    """Fold the chunks of ``x`` (``(rows, k)``, starting at the first row of global chunk
    ``c0``; only the last chunk may be short) into the stack ``(lvl, idx, val)[:top]``,
    the totals ``tot`` (``(k, TWIDTH)``) and min/max ``mm`` (``(k, 2)``). Returns the new
    top of the stack. Dispatches to the
    compiled :func:`fold_1d` (one column: a contiguous vector) or :func:`fold_2d`."""
    kern, arg = fold_kernel(x)
    return kern(arg, c0, lvl, idx, val, top, tot, mm, np.zeros((1, x.shape[1], NODE)))


def fold_kernel(x):
    """The compiled kernel for the ``(rows, k)`` block ``x`` and the array it takes."""
    if x.shape[1] == 1:
        return fold_1d, np.ascontiguousarray(x).reshape(-1)
    return fold_2d, x


__all__ = ["CHUNK", "STACK", "NODE", "rows_per_chunk", "fold_chunks", "push_nodes",
           "reduce_nodes", "merge_node", "fold_1d", "fold_2d",
           "fold_kernel"]
