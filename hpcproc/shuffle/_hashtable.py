"""A compiled open-addressing hash table over encoded key rows, and group reductions.

``group_ids(K)`` numbers the distinct rows of the ``(n, m)`` uint64 key matrix in order of
first appearance (linear probing, splitmix64 hash, keys stored in the slots, grows at
load 1/2). ``probe`` looks up
other rows in a built table (the join). ``agg_states`` (rows with group ids) and the
``seg_*`` kernels (rows sorted by group, see :func:`._localsort.sorted_groups`) reduce
values per group into mergeable states (count of non-NaN values, sum, min, max).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._kernels import hash_row

__all__ = ["group_ids", "probe", "agg_states", "seg_agg_states", "seg_merge_states", "seg_sum",
           "expand_pairs"]


@jit
def _same(T, p, K, i, m):
    for w in range(m):
        if T[p, w] != K[i, w]:
            return False
    return True


#: Initial table size (slots); it doubles whenever it is half full.
START_SLOTS = 1 << 16


def group_ids(K):
    """``(gid, reps, table)``: group of every row (numbered in order of first
    appearance), first row of every group, and the table (for :func:`probe`).

    A slot holds the key words and ``group + 1`` side by side, so a lookup costs one
    cache miss; the table starts small (``START_SLOTS``) and doubles at load 1/2, so its
    size follows the number of groups, not of rows.
    """
    cap = 64
    while cap < min(2 * K.shape[0], START_SLOTS):
        cap *= 2
    return _group_ids(K, cap)


@jit
def _insert(T, K, i, m, mask, value):
    p = hash_row(K, i, m) & mask
    while T[p, m] != 0:
        p = (p + np.uint64(1)) & mask
    for w in range(m):
        T[p, w] = K[i, w]
    T[p, m] = value


@jit
def _group_ids(K, cap):
    n, m = K.shape
    mask = np.uint64(cap - 1)
    T = np.zeros((cap, m + 1), dtype=np.uint64)
    reps = np.empty(cap // 2, dtype=np.int64)
    gid = np.empty(n, dtype=np.int64)
    ng = 0
    for i in range(n):
        p = hash_row(K, i, m) & mask
        while True:
            e = T[p, m]
            if e == 0:
                for w in range(m):
                    T[p, w] = K[i, w]
                T[p, m] = np.uint64(ng + 1)
                if ng == reps.shape[0]:
                    reps2 = np.empty(2 * ng, dtype=np.int64)
                    reps2[:ng] = reps
                    reps = reps2
                reps[ng] = i
                gid[i] = ng
                ng += 1
                if 2 * ng > cap:  # double the table, re-insert every group
                    cap *= 2
                    mask = np.uint64(cap - 1)
                    T2 = np.zeros((cap, m + 1), dtype=np.uint64)
                    for q in range(T.shape[0]):
                        if T[q, m] != 0:
                            _insert(T2, T, q, m, mask, T[q, m])
                    T = T2
                break
            if _same(T, p, K, i, m):
                gid[i] = np.int64(e) - 1
                break
            p = (p + np.uint64(1)) & mask
    return gid, reps[:ng].copy(), T


@jit
def probe(Q, T):
    """Group (in the table ``T`` built by :func:`group_ids`) of every row of ``Q``, or -1."""
    m = Q.shape[1]
    mask = np.uint64(T.shape[0] - 1)
    out = np.empty(Q.shape[0], dtype=np.int64)
    for j in range(Q.shape[0]):
        p = hash_row(Q, j, m) & mask
        out[j] = -1
        while True:
            e = T[p, m]
            if e == 0:
                break
            if _same(T, p, Q, j, m):
                out[j] = np.int64(e) - 1
                break
            p = (p + np.uint64(1)) & mask
    return out


@jit
def agg_states(gid, vals, cnt, sm, mn, mx, minmax):
    """Accumulate ``vals`` per group: non-NaN count, sum, and (if ``minmax``) min, max.
    NaN values are skipped."""
    for i in range(gid.shape[0]):
        v = vals[i]
        if v == v:
            g = gid[i]
            cnt[g] += 1
            sm[g] += v
            if minmax:
                if v < mn[g]:
                    mn[g] = v
                if v > mx[g]:
                    mx[g] = v


@jit
def seg_agg_states(perm, starts, vals, cnt, sm, mn, mx, minmax):
    """:func:`agg_states` for rows sorted by group: group ``g`` is rows
    ``perm[starts[g]:starts[g + 1]]``."""
    for g in range(starts.shape[0] - 1):
        for i in range(starts[g], starts[g + 1]):
            x = vals[perm[i]]
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
