"""Numba kernels of the shuffle engine: destination counting, send-buffer scatter, hashing
and splitter search. Every kernel is one compiled pass over the rows (no Python loops).

Keys reach these kernels already encoded as ``uint64`` words (see :mod:`._encode`): a 2-D
C-ordered array ``K`` of shape ``(rows, words)`` whose lexicographic order is the key order.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["count_dest", "scatter_round", "hash_dest", "range_dest", "gather_rows"]


@jit
def count_dest(dest, size):
    """Rows per destination rank (pass 1 of the partition).

    Four interleaved counters: with few ranks, consecutive rows mostly hit the same
    counter, and one counter makes every increment wait for the previous one (measured
    2-4x slower at 2 ranks).
    """
    c = np.zeros((4, size), dtype=np.int64)
    n = dest.shape[0]
    m = n - n % 4
    for i in range(0, m, 4):
        c[0, dest[i]] += 1
        c[1, dest[i + 1]] += 1
        c[2, dest[i + 2]] += 1
        c[3, dest[i + 3]] += 1
    for i in range(m, n):
        c[0, dest[i]] += 1
    counts = np.empty(size, dtype=np.int64)
    for d in range(size):
        counts[d] = c[0, d] + c[1, d] + c[2, d] + c[3, d]
    return counts


@jit
def scatter_round(dest, src, lo, hi, displ, out):
    """Pass 2: copy rows of ``src`` into the send buffer ``out``, grouped by destination.

    Of the rows going to rank d (in their local order), only those numbered
    ``lo[d] <= j < hi[d]`` move in this round; they land at ``out[displ[d] + j - lo[d]]``.
    With one round (``lo = 0``, ``hi = counts``) this is a stable counting scatter.
    """
    seen = np.zeros(lo.shape[0], dtype=np.int64)
    for i in range(dest.shape[0]):
        d = dest[i]
        j = seen[d]
        seen[d] = j + 1
        if j >= lo[d] and j < hi[d]:
            out[displ[d] + j - lo[d]] = src[i]


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
