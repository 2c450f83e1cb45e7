"""Compiled group reductions over rows sorted by group, and the join's pair expansion.

Groups come from :func:`._localsort.sorted_groups` (a radix sort of the key rows): group
``g`` is the rows ``perm[starts[g]:starts[g + 1]]``. ``seg_agg_states`` /
``seg_merge_states`` / ``seg_sum`` reduce values per group into mergeable states (count of
non-NaN values, sum, min, max; ``dense_states`` does the same from the key itself, for
the dense group-by). ``match_groups`` merges two sorted key sets and ``expand_pairs``
lists the (left, right) row pairs of a join.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["match_groups", "spread", "dense_count", "dense_states", "seg_agg_states", "seg_merge_states",
           "seg_sum", "expand_pairs"]


@jit
def _compare(A, i, B, j):
    """-1, 0 or 1: row ``i`` of ``A`` against row ``j`` of ``B`` (lexicographic)."""
    for w in range(A.shape[1]):
        if A[i, w] != B[j, w]:
            return -1 if A[i, w] < B[j, w] else 1
    return 0


@jit
def match_groups(A, B):
    """For every row of ``A``, the index of the equal row of ``B``, or -1. Both are
    sorted, distinct key rows (``sorted_groups``' keys): one merge pass."""
    out = np.full(A.shape[0], -1, np.int64)
    i = j = 0
    while i < A.shape[0] and j < B.shape[0]:
        c = _compare(A, i, B, j)
        if c == 0:
            out[i] = j
            i += 1
            j += 1
        elif c < 0:
            i += 1
        else:
            j += 1
    return out


@jit
def spread(perm, starts, values):
    """Per row: ``values`` of its group (group ``g`` is rows ``perm[starts[g]:starts[g+1]]``)."""
    out = np.empty(perm.shape[0], values.dtype)
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            out[perm[i]] = values[g]
    return out


@jit
def dense_count(key, lo, size):
    """``size[key - lo] += 1`` per row (``key - lo`` wraps: ``lo`` of a uint64 key is
    given as the int64 of the same bits, the key viewed as int64)."""
    for i in range(key.shape[0]):
        size[np.uint64(np.int64(key[i]) - lo)] += 1


@jit
def dense_states(key, lo, vals, size, count_rows, nan, sm, mn, mx, minmax):
    """One pass of the dense group-by over group ``key - lo`` (see :func:`dense_count`):
    rows per group into ``size`` (when ``count_rows``), NaN values per group into
    ``nan`` (the non-NaN count is ``size - nan``: one increment per row fewer), the
    sum of the other values, and min/max when ``minmax``. Values are widened to the
    accumulators' type on the fly (no converted copy of the column)."""
    for i in range(key.shape[0]):
        g = np.uint64(np.int64(key[i]) - lo)  # unsigned: no negative-index wraparound
        if count_rows:
            size[g] += 1
        v = vals[i]
        if v != v:
            nan[g] += 1
            continue
        sm[g] += v
        if minmax:
            if v < mn[g]:
                mn[g] = v
            if v > mx[g]:
                mx[g] = v


@jit
def seg_agg_states(perm, starts, vals, cnt, sm, mn, mx, minmax):
    """:func:`agg_states` for rows sorted by group: group ``g`` is rows
    ``perm[starts[g]:starts[g + 1]]`` (``perm`` empty: ``vals`` is in sorted order)."""
    ident = perm.shape[0] == 0
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            x = vals[i] if ident else vals[perm[i]]
            if x != x:
                continue
            cnt[g] += 1
            sm[g] += x
            if minmax:
                mn[g] = min(mn[g], x)
                mx[g] = max(mx[g], x)


@jit
def seg_merge_states(perm, starts, cnt_in, sm_in, mn_in, mx_in, cnt, sm, mn, mx, minmax):
    """Merge partial states into the states of their groups (rows sorted by group, as
    for :func:`seg_agg_states`)."""
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            r = perm[i]
            cnt[g] += cnt_in[r]
            sm[g] += sm_in[r]
            if minmax:
                if mn_in[r] < mn[g]:
                    mn[g] = mn_in[r]
                if mx_in[r] > mx[g]:
                    mx[g] = mx_in[r]


@jit
def seg_sum(perm, starts, x, out):
    """``out[g] += sum of x over group g`` (rows sorted by group)."""
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            out[g] += x[perm[i]]


@jit
def expand_pairs(gl, starts, order, keep_unmatched):
    """Join pairs: for left row i in group ``gl[i]``, one pair per right row of that group
    (``order[starts[g]:starts[g+1]]``); an unmatched left row gives ``(i, -1)`` when
    ``keep_unmatched``. Returns ``(left_index, right_index)``."""
    n = gl.shape[0]
    total = 0
    for i in range(n):
        g = gl[i]
        if g >= 0:
            total += starts[g + 1] - starts[g]
        elif keep_unmatched:
            total += 1
    li = np.empty(total, dtype=np.int64)
    ri = np.empty(total, dtype=np.int64)
    p = 0
    for i in range(n):
        g = gl[i]
        if g >= 0:
            for q in range(starts[g], starts[g + 1]):
                li[p] = i
                ri[p] = order[q]
                p += 1
        elif keep_unmatched:
            li[p] = i
            ri[p] = -1
            p += 1
    return li, ri
