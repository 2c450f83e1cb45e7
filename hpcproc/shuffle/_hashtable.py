"""A compiled open-addressing hash table over encoded key rows, and group reductions.

``group_ids(K)`` numbers the distinct rows of the ``(n, m)`` uint64 key matrix in order of
first appearance (linear probing, splitmix64 hash, grows at load 1/2). ``probe`` looks up
other rows in a built table (the join). ``agg_states`` / ``merge_states`` reduce values
per group into mergeable states (count of non-NaN values, sum, min, max).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._kernels import hash_words

__all__ = ["group_ids", "probe", "agg_states", "merge_states", "add_into", "expand_pairs"]


@jit
def _same(K, i, Q, j):
    for w in range(K.shape[1]):
        if K[i, w] != Q[j, w]:
            return False
    return True


#: Largest initial table (slots); it still grows beyond when needed.
MAX_PRESIZE = 1 << 23


def group_ids(K):
    """``(gid, reps, slots, hashes)``: group of every row, first row of every group, and
    the table itself (for :func:`probe`).

    The table is presized for every row being distinct (up to ``MAX_PRESIZE`` slots):
    growing costs rehashes, and an oversized table costs nothing in cache misses (each
    key always touches the same slot).
    """
    cap = 64
    while cap < min(2 * K.shape[0], MAX_PRESIZE):
        cap *= 2
    return _group_ids(K, cap)


@jit
def _group_ids(K, cap):
    n = K.shape[0]
    mask = np.uint64(cap - 1)
    slots = np.full(cap, -1, dtype=np.int64)
    reps = np.empty(cap // 2, dtype=np.int64)
    hashes = np.empty(cap // 2, dtype=np.uint64)
    gid = np.empty(n, dtype=np.int64)
    ng = 0
    for i in range(n):
        h = hash_words(K, i)
        p = h & mask
        while True:
            g = slots[p]
            if g < 0:
                if ng == reps.shape[0]:
                    reps2 = np.empty(2 * ng, dtype=np.int64)
                    hashes2 = np.empty(2 * ng, dtype=np.uint64)
                    reps2[:ng] = reps
                    hashes2[:ng] = hashes
                    reps, hashes = reps2, hashes2
                reps[ng] = i
                hashes[ng] = h
                slots[p] = ng
                gid[i] = ng
                ng += 1
                if 2 * ng > cap:  # grow and re-insert every group
                    cap *= 2
                    mask = np.uint64(cap - 1)
                    slots = np.full(cap, -1, dtype=np.int64)
                    for q in range(ng):
                        r = hashes[q] & mask
                        while slots[r] >= 0:
                            r = (r + np.uint64(1)) & mask
                        slots[r] = q
                break
            if hashes[g] == h and _same(K, reps[g], K, i):
                gid[i] = g
                break
            p = (p + np.uint64(1)) & mask
    return gid, reps[:ng].copy(), slots, hashes[:ng].copy()


@jit
def probe(Q, K, reps, slots, hashes):
    """Group (in the table built from ``K``) of every row of ``Q``, or -1."""
    mask = np.uint64(slots.shape[0] - 1)
    out = np.empty(Q.shape[0], dtype=np.int64)
    for j in range(Q.shape[0]):
        h = hash_words(Q, j)
        p = h & mask
        out[j] = -1
        while True:
            g = slots[p]
            if g < 0:
                break
            if hashes[g] == h and _same(K, reps[g], Q, j):
                out[j] = g
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
def merge_states(gid, cnt_in, sm_in, mn_in, mx_in, cnt, sm, mn, mx, minmax):
    """Merge partial states row by row into the states of their groups."""
    for i in range(gid.shape[0]):
        g = gid[i]
        cnt[g] += cnt_in[i]
        sm[g] += sm_in[i]
        if minmax:
            if mn_in[i] < mn[g]:
                mn[g] = mn_in[i]
            if mx_in[i] > mx[g]:
                mx[g] = mx_in[i]


@jit
def add_into(gid, x, out):
    for i in range(gid.shape[0]):
        out[gid[i]] += x[i]


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
