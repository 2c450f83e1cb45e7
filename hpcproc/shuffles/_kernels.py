"""Numba kernels of the shuffle engine: destination counting, send-buffer scatter, hashing
and splitter search. Every kernel is one compiled pass over the rows (no Python loops);
the destination count for few ranks is numpy's, a block at a time (:func:`count_dest`).

Keys reach these kernels already encoded as ``uint64`` words (see :mod:`._encode`): a 2-D
C-ordered array ``K`` of shape ``(rows, words)`` whose lexicographic order is the key order.
"""

from __future__ import annotations

import numpy as np

from ..kernels._intrinsic import store_at
from ._jit import jit

__all__ = ["halves", "count_dest", "count_many", "scatter_round", "scatter_to", "scatter_wide_to",
           "scatter_pos_to", "hash_dest", "range_dest", "gather_rows"]


#: Most ranks for which :func:`scatter_to` runs two streams (see :func:`halves`).
TWO_STREAMS = 8


def halves(n: int, size: int) -> int:
    """Where the rows split into the scatter's two streams: ``n // 2`` up to
    :data:`TWO_STREAMS` ranks, else 0 (one stream).

    One stream makes every row wait for the previous row's position counter when they
    share a destination (most rows, with few ranks); two independent halves halve that
    chain (2^24 rows of 8 bytes: 26-30 -> 17-23 ms from 2 to 8 ranks, a memcpy 9-12 ms).
    With more ranks consecutive rows rarely share a counter, and twice the write streams
    cost more than they gain (1.6x slower at 16 ranks).
    """
    return n // 2 if size <= TWO_STREAMS else 0


#: Most ranks for which :func:`count_dest` counts by comparison (numpy, a block at a
#: time: 2^25 rows to 2 ranks 5.3 ms, to 8 ranks 21 ms, against 23 and 64 ms for a
#: compiled comparison loop, which the ahead-of-time build's generic x86-64 target does
#: not vectorise, and 130-170 ms for ``np.bincount``); above, :func:`count_many`.
COMPARE_COUNT = 8
#: Rows per block of the comparison count (its ``dest == d`` mask stays in the cache).
_BLOCK = 1 << 16


def count_dest(dest, size: int, half: int) -> np.ndarray:
    """Rows per destination rank in rows ``[0, half)`` and ``[half, n)`` (pass 1 of the
    partition; row ``[0]`` + row ``[1]`` of the result are the totals). Up to
    :data:`COMPARE_COUNT` ranks by comparison: ``count_nonzero(block == d)`` for every
    rank but the last, whose count is the rows left."""
    if size > COMPARE_COUNT:
        return count_many(dest, size, half)
    counts = np.zeros((2, size), dtype=np.int64)
    vals = np.arange(size).astype(dest.dtype)  # compared in the rows' own type
    for row, part in zip(counts, (dest[:half], dest[half:])):
        for s in range(0, part.shape[0], _BLOCK):
            block = part[s:s + _BLOCK]
            for d in range(size - 1):
                row[d] += np.count_nonzero(block == vals[d])
        row[size - 1] = part.shape[0] - row[:size - 1].sum()
    return counts


@jit
def count_many(dest, size, half):
    """:func:`count_dest` for many ranks: four interleaved counters, two per half (one
    counter makes every increment wait for the previous one when consecutive rows share
    a rank)."""
    counts = np.zeros((2, size), dtype=np.int64)
    c = np.zeros((4, size), dtype=np.int64)
    n = dest.shape[0]
    a = half - half % 2
    b = half + (n - half) - (n - half) % 2
    m = min(a, b - half)
    for i in range(0, m, 2):
        c[0, dest[i]] += 1
        c[1, dest[i + 1]] += 1
        c[2, dest[half + i]] += 1
        c[3, dest[half + i + 1]] += 1
    for i in range(m, half):
        c[0, dest[i]] += 1
    for i in range(half + m, n):
        c[2, dest[i]] += 1
    for d in range(size):
        counts[0, d] = c[0, d] + c[1, d]
        counts[1, d] = c[2, d] + c[3, d]
    return counts


@jit
def scatter_round(dest, src, lo, hi, displ, out):
    """Pass 2 of a round of several: copy rows of ``src`` into the send buffer ``out``,
    grouped by destination.

    Of the rows going to rank d (in their local order), only those numbered
    ``lo[d] <= j < hi[d]`` move in this round; they land at ``out[displ[d] + j - lo[d]]``.
    """
    seen = np.zeros(lo.shape[0], dtype=np.int64)
    for i in range(dest.shape[0]):
        d = dest[i]
        j = seen[d]
        seen[d] = j + 1
        if j >= lo[d] and j < hi[d]:
            out[displ[d] + j - lo[d]] = src[i]


@jit
def scatter_to(dest, src, start, half, addr, pos):
    """Pass 2 in one round: a stable counting scatter of the words ``src`` to where each
    row goes, each destination's rows in an array of their own; where each row went (its
    position in that array) is written to ``pos`` unless it is empty.

    The rows of stream s (:func:`halves`: rows ``[0, half)`` and ``[half, n)`` run as
    two interleaved streams) bound for rank d land from position ``start[s, d]`` on, in
    order, in the array at byte address ``addr[d]`` (this rank's result for its own rows,
    the send buffer for the others: the caller holds both; nothing is checked). The
    counters are the addresses themselves (a position and a multiply per row cost
    8 ms more per 2^25 rows).
    """
    record = pos.shape[0] > 0
    width = src.itemsize
    at = addr + start[0] * width
    at2 = addr + start[1] * width
    n = dest.shape[0]
    m = min(half, n - half)
    for k in range(m):
        i2 = half + k
        d = dest[k]
        d2 = dest[i2]
        p = at[d]
        at[d] = p + width
        p2 = at2[d2]
        at2[d2] = p2 + width
        store_at(p, src[k])
        store_at(p2, src[i2])
        if record:
            pos[k] = (p - addr[d]) // width
            pos[i2] = (p2 - addr[d2]) // width
    _scatter_rest(dest, src, m, half, at, addr, pos, record)  # what is left of each stream
    _scatter_rest(dest, src, half + m, n, at2, addr, pos, record)


@jit
def _scatter_rest(dest, src, a, b, at, addr, pos, record):
    """Rows ``[a, b)`` of :func:`scatter_to` in one stream (its address counters ``at``)."""
    width = src.itemsize
    for i in range(a, b):
        d = dest[i]
        p = at[d]
        at[d] = p + width
        store_at(p, src[i])
        if record:
            pos[i] = (p - addr[d]) // width


@jit
def scatter_wide_to(dest, src, start, addr, pos):
    """:func:`scatter_to` for rows of several words (``src`` 2-D), in one stream: each row
    is a run of stores, so consecutive rows rarely wait on one counter."""
    record = pos.shape[0] > 0
    words = src.shape[1]
    width = src.itemsize
    row = words * width
    at = start.copy()
    for i in range(dest.shape[0]):
        d = dest[i]
        j = at[d]
        at[d] = j + 1
        p = addr[d] + j * row
        for w in range(words):
            store_at(p + w * width, src[i, w])
        if record:
            pos[i] = j


@jit
def scatter_pos_to(dest, pos, src, addr):
    """Row ``i`` of ``src`` to position ``pos[i]`` of the array at ``addr[dest[i]]``: the
    next column of a table scattered by :func:`scatter_to`, which found the positions
    (no counter chain)."""
    width = src.itemsize
    for i in range(pos.shape[0]):
        store_at(addr[dest[i]] + pos[i] * width, src[i])


@jit
def mix(z):
    # splitmix64 finaliser: a fast, well-distributed 64-bit mix
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@jit
def hash_row(K, i, m):
    """64-bit hash of the first ``m`` words of row ``i`` of ``K`` (the one-word case, the
    common one, unrolled)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    if m == 1:
        return mix(h ^ K[i, 0])
    for w in range(m):
        h = mix(h ^ K[i, w]) + np.uint64(w)
    return h


@jit
def hash_words(K, i):
    """64-bit hash of row ``i`` of the encoded key matrix."""
    return hash_row(K, i, K.shape[1])


@jit
def hash_dest(K, size, out):
    """Destination ``hash(key) % size`` of every row (equal keys -> equal ranks); a mask
    for a power-of-two ``size`` (the same ranks: a 64-bit division costs more than the
    hash)."""
    if (size & (size - 1)) == 0:
        mask = np.uint64(size - 1)
        for i in range(K.shape[0]):
            out[i] = hash_words(K, i) & mask
    else:
        s = np.uint64(size)
        for i in range(K.shape[0]):
            out[i] = hash_words(K, i) % s


@jit
def less_equal(S, j, K, i, gidx, use_gidx):
    """Splitter ``S[j]`` <= row ``i`` (lexicographic; the last splitter word is a global
    row index when ``use_gidx``)."""
    m = K.shape[1]
    for w in range(m):
        if S[j, w] != K[i, w]:
            return S[j, w] < K[i, w]
    if use_gidx:
        return S[j, m] <= np.uint64(gidx + i)
    return True


@jit
def range_dest(K, S, gidx, use_gidx, out):
    """Destination of every row: the number of splitters <= the row (binary search).

    ``S`` holds ``size - 1`` sorted splitters of ``K.shape[1]`` words (+1 global-row word
    when ``use_gidx``: ties between equal keys are then broken by global row, so a heavy
    key is split across ranks; without it equal keys always go to the same rank).
    """
    nsplit = S.shape[0]
    for i in range(K.shape[0]):
        a, b = 0, nsplit
        while a < b:
            mid = (a + b) >> 1
            if less_equal(S, mid, K, i, gidx, use_gidx):
                a = mid + 1
            else:
                b = mid
        out[i] = a


@jit
def gather_rows(src, perm, out):
    """``out[i] = src[perm[i]]`` for a 1-D or 2-D ``src`` (rows of machine words)."""
    if src.ndim == 1:
        for i in range(perm.shape[0]):
            out[i] = src[perm[i]]
    else:
        for i in range(perm.shape[0]):
            out[i, :] = src[perm[i], :]
