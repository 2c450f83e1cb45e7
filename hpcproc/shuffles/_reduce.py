"""Compiled group reductions: over rows sorted by group, and the dense group-by's.

Groups come from :func:`._localsort.sorted_groups` (a radix sort of the key rows): group
``g`` is the rows ``perm[starts[g]:starts[g + 1]]``. ``seg_agg_states`` reduces values
per group into mergeable states (count of non-NaN values, sum, min, max);
``gid_merge_states`` / ``gid_sum`` fold received states into the groups that
:func:`._merge.merge_groups` maps them to; ``dense_states`` and ``dense_pairs`` (the rows
counted beside the sums, in one array) aggregate by the key itself, for the dense
group-by, whose key range ``key_range`` finds in one pass.
"""

from __future__ import annotations

import numpy as np

from ..kernels._prefetch import prefetch
from ._jit import jit

#: Rows ahead whose state lines the dense kernels prefetch (measured: 32 beat 16 and 64)
AHEAD = 32
#: Smallest state array (bytes) whose lines the dense kernels prefetch: one core's L2
#: cache here. Below it the states stay cached and the hints only cost instructions (2
#: ranks, 2^24 rows each, hints on every row: 2^16 groups 0.94x, 2^18 groups 1.04x)
PREFETCH_BYTES = 1 << 20

__all__ = ["key_range", "prefetch_stop", "dense_count", "dense_states", "dense_pairs",
           "seg_agg_states", "gid_merge_states", "gid_sum"]


@jit
def compare_rows(A, i, B, j):
    """-1, 0 or 1: row ``i`` of ``A`` against row ``j`` of ``B`` (lexicographic)."""
    for w in range(A.shape[1]):
        if A[i, w] != B[j, w]:
            return -1 if A[i, w] < B[j, w] else 1
    return 0


@jit
def key_range(key, out):
    """``out[0], out[1] = key.min(), key.max()`` in one pass (``key`` not empty; ``out``
    of the key's dtype): half the memory traffic of numpy's two reductions."""
    lo = key[0]
    hi = key[0]
    for i in range(1, key.shape[0]):  # branch-free: vectorised
        lo = min(lo, key[i])
        hi = max(hi, key[i])
    out[0] = lo
    out[1] = hi


@jit
def prefetch_stop(n, state):
    """Rows of an ``n``-row dense pass that prefetch the ``state`` line of the row
    :data:`AHEAD` rows on: ``n - AHEAD`` when ``state`` has :data:`PREFETCH_BYTES` or
    more (its bytes, whatever its dtype), else none."""
    return n - AHEAD if state.nbytes >= PREFETCH_BYTES else 0


@jit
def dense_count(key, lo, size):
    """``size[key - lo] += 1`` per row (``key - lo`` wraps: ``lo`` of a uint64 key is
    given as the int64 of the same bits, the key viewed as int64). ``size`` is int32:
    callers pass fewer than 2**31 rows (:data:`.grouping.COUNT_CHUNK`). The count of the
    row :data:`AHEAD` rows on is prefetched (:mod:`hpcproc.kernels._prefetch`) when
    ``size`` has :data:`PREFETCH_BYTES` or more."""
    n = key.shape[0]
    stop = prefetch_stop(n, size)
    for i in range(n):
        if i < stop:
            prefetch(size, np.uint64(np.int64(key[i + AHEAD]) - lo))
        size[np.uint64(np.int64(key[i]) - lo)] += 1


@jit
def dense_states(key, lo, vals, cnt, sm, nan, mn, mx, count_rows, minmax):
    """One pass of the dense group-by over group ``g = key - lo`` (see
    :func:`dense_count`). When ``count_rows`` the rows per group go to ``cnt[g]`` (int32,
    as :func:`dense_count`: half the cache footprint of int64 counts, which is what this
    random-access pass costs); the sum of the non-NaN values to ``sm[g]``. NaN values
    are counted in ``nan[g]`` (touched only when a NaN is seen: the non-NaN count is
    ``rows - nan``) and their total returned. Min/max into ``mn``/``mx`` when
    ``minmax``. Values are widened to the accumulators' type on the fly (no converted
    copy of the column). The states of the row :data:`AHEAD` rows on are prefetched
    (:mod:`hpcproc.kernels._prefetch`) when the sums have :data:`PREFETCH_BYTES` or more:
    the passes wait for memory far less."""
    nans = 0
    n = key.shape[0]
    stop = prefetch_stop(n, sm)
    for i in range(n):
        if i < stop:
            h = np.uint64(np.int64(key[i + AHEAD]) - lo)
            if count_rows:
                prefetch(cnt, h)
            prefetch(sm, h)
            if minmax:
                prefetch(mn, h)
                prefetch(mx, h)
        g = np.uint64(np.int64(key[i]) - lo)  # unsigned: no negative-index wraparound
        if count_rows:
            cnt[g] += 1
        v = vals[i]
        if v != v:
            nan[g] += 1
            nans += 1
            continue
        sm[g] += v
        if minmax:
            if v < mn[g]:
                mn[g] = v
            if v > mx[g]:
                mx[g] = v
    return nans


@jit
def dense_pairs(key, lo, vals, st, nan):
    """:func:`dense_states` of one value column with the rows counted beside the sums,
    in one array: ``st[2g]`` the sum of group ``g``'s non-NaN values, ``st[2g + 1]`` its
    rows (in the sums' type: exact below 2**53), ``nan[g]`` its NaNs; returns the NaNs
    seen. A row updates one cache line, not two (a row count array and a sum array):
    for states beyond the L2 cache the one pass over 16-byte pairs beats two passes over
    the counts and the sums. No min/max. The pair of the row :data:`AHEAD` rows on is
    prefetched when ``st`` has :data:`PREFETCH_BYTES` or more."""
    nans = 0
    n = key.shape[0]
    stop = prefetch_stop(n, st)
    for i in range(n):
        if i < stop:
            prefetch(st, np.uint64(2) * np.uint64(np.int64(key[i + AHEAD]) - lo))
        g = np.uint64(2) * np.uint64(np.int64(key[i]) - lo)
        st[g + np.uint64(1)] += 1
        v = vals[i]
        if v != v:
            nan[g // np.uint64(2)] += 1
            nans += 1
            continue
        st[g] += v
    return nans


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
def gid_merge_states(gid, cnt_in, sm_in, mn_in, mx_in, cnt, sm, mn, mx, minmax):
    """Merge partial state ``i`` into the states of group ``gid[i]`` (in input order:
    with ``gid`` from :func:`._merge.merge_groups` the accesses are a few sequential
    streams)."""
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
def gid_sum(gid, x, out):
    """``out[gid[i]] += x[i]``."""
    for i in range(gid.shape[0]):
        out[gid[i]] += x[i]
