"""Sorted runs: where splitters cut sorted keys, and the stable merge of sorted runs.

The group-by sorts before it shuffles: every rank sorts (and pre-aggregates) its rows,
so the rows bound for each rank are one contiguous slice (:func:`run_counts`, ``ranks -
1`` binary searches instead of a pass over the rows) that the exchange sends as it is
(:func:`._exchange.exchange_runs`). A rank then receives one sorted run per source rank;
:func:`merge_runs` merges them in ``ceil(log2(runs))`` linear passes instead of sorting
the received rows again.

Keys are encoded ``uint64`` key rows (:mod:`._encode`), compared lexicographically.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._kernels import less_equal
from ._reduce import compare_rows

__all__ = ["run_counts", "merge_runs"]


@jit
def _bounds(K, S, out):
    """``out[j]``: the first row of the sorted key rows ``K`` not below splitter ``S[j]``
    (rows ``[out[j-1], out[j])`` go to rank ``j``: the same rule as ``range_dest``)."""
    for j in range(S.shape[0]):
        a, b = 0, K.shape[0]
        while a < b:
            mid = (a + b) >> 1
            if less_equal(S, j, K, mid, 0, False):
                b = mid
            else:
                a = mid + 1
        out[j] = a


def run_counts(K: np.ndarray, S: np.ndarray, size: int) -> np.ndarray:
    """Rows per destination rank (``size`` ranks) of the sorted ``(n, m)`` key rows ``K``
    cut by the ``size - 1`` splitters ``S`` (one word per key column, no tie-break word):
    row ``i`` goes where :func:`.range.range_partition` would send it. No splitters (no
    rows on any rank): all counts 0. Not collective."""
    if S.shape[0] != size - 1:
        if K.shape[0]:
            raise ValueError("run_counts: rows to place but no splitters")
        return np.zeros(size, np.int64)
    if S.shape[1] != K.shape[1]:
        raise ValueError("run_counts: splitters without a tie-break word are needed")
    cuts = np.empty(size + 1, np.int64)
    cuts[0], cuts[-1] = 0, K.shape[0]
    _bounds(K, S, cuts[1:-1])
    return np.diff(cuts)


@jit
def _merge_pass(K, src, dst, starts, width):
    """Merge runs ``2q`` and ``2q + 1`` of ``src`` (run ``r`` is
    ``src[starts[r*width]:starts[min((r+1)*width, runs)]]``) into ``dst``; ties keep the
    left run first (stable)."""
    runs = starts.shape[0] - 1
    for r in range(0, runs, 2 * width):
        lo = starts[r]
        mid = starts[min(r + width, runs)]
        hi = starts[min(r + 2 * width, runs)]
        i, j, p = lo, mid, lo
        while i < mid and j < hi:
            if compare_rows(K, src[j], K, src[i]) < 0:
                dst[p] = src[j]
                j += 1
            else:
                dst[p] = src[i]
                i += 1
            p += 1
        while i < mid:
            dst[p] = src[i]
            i += 1
            p += 1
        while j < hi:
            dst[p] = src[j]
            j += 1
            p += 1


def merge_runs(K: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The stable sorting permutation of the ``(n, m)`` key rows ``K``, made of
    consecutive sorted runs of ``counts[r]`` rows each. Not collective.

    Equal keys keep their order (runs in order, then rows in order): the result is what a
    stable sort of ``K`` gives, in ``ceil(log2(len(counts)))`` linear merge passes.
    """
    n = K.shape[0]
    idx = np.int32 if n < 2**31 else np.int64
    starts = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    if starts[-1] != n:
        raise ValueError("merge_runs: the run lengths do not add up to the rows")
    src = np.arange(n, dtype=idx)
    width = 1
    if len(counts) > 1 and n:
        dst = np.empty_like(src)
        while width < len(counts):
            _merge_pass(K, src, dst, starts, width)
            src, dst = dst, src
            width *= 2
    return src
