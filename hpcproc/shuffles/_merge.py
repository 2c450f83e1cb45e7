"""Sorted runs: where splitters cut sorted keys, and the merge of sorted runs of groups.

The group-by sorts before it shuffles: every rank sorts (and pre-aggregates) its rows,
so the rows bound for each rank are one contiguous slice (:func:`run_counts`, ``ranks -
1`` binary searches instead of a pass over the rows) that the exchange sends as it is
(:func:`._exchange.exchange_runs`). A rank then receives one sorted run of distinct keys
per source rank; :func:`merge_groups` merges them in ``ceil(log2(runs))`` linear passes,
equal keys once, instead of sorting the received rows again, and maps every received row
to its group (states are then folded in received order: sequential, no gathers).

Keys are encoded ``uint64`` key rows (:mod:`._encode`), compared lexicographically.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._kernels import less_equal
from ._reduce import compare_rows

__all__ = ["run_counts", "merge_groups"]


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
def _merge_distinct_pass(K, starts, width, out, gid):
    """Merge runs ``2q`` and ``2q + 1`` of the key rows ``K`` (run ``r`` is
    ``K[starts[r*width]:starts[min((r+1)*width, runs)]]``, sorted, keys distinct within
    a run) into ``out``, equal keys once: ``gid[i]`` is the output row of input row ``i``.
    Returns the output rows; ``starts`` is rewritten to the merged runs' offsets in
    ``out`` (at indices ``0, 2*width, 4*width, ...``)."""
    runs = starts.shape[0] - 1
    m = K.shape[1]
    p = 0
    for r in range(0, runs, 2 * width):
        lo = starts[r]
        mid = starts[min(r + width, runs)]
        hi = starts[min(r + 2 * width, runs)]
        starts[r] = p
        i, j = lo, mid
        while i < mid or j < hi:
            if j >= hi:
                c = -1
            elif i >= mid:
                c = 1
            else:
                c = compare_rows(K, i, K, j)
            src = i if c <= 0 else j
            for w in range(m):
                out[p, w] = K[src, w]
            if c <= 0:
                gid[i] = p
                i += 1
            if c >= 0:
                gid[j] = p
                j += 1
            p += 1
    starts[runs] = p
    return p


@jit
def _compose(gid, step):
    for i in range(gid.shape[0]):
        gid[i] = step[gid[i]]


def merge_groups(K: np.ndarray, counts: np.ndarray):
    """The distinct key rows of consecutive sorted runs of distinct keys, merged.

    ``K`` is ``(n, m)`` uint64 key rows made of runs of ``counts[r]`` rows each, every run
    sorted with its keys distinct (one rank's pre-aggregated groups). Returns
    ``(keys, gid)``: the distinct keys of all runs in sorted order, and the output row
    of every input row (``gid`` is increasing within each run, so folding states by it
    reads and writes memory in a few sequential streams, not at random). Merges runs
    pairwise, ``ceil(log2(runs))`` passes over ever fewer rows. Not collective.
    """
    n, m = K.shape
    starts = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    if starts[-1] != n:
        raise ValueError("merge_groups: the run lengths do not add up to the rows")
    gid = None  # the identity until a pass merges something
    keys = np.ascontiguousarray(K, dtype=np.uint64)
    width = 1
    while width < len(counts) and keys.shape[0]:
        out = np.empty_like(keys)
        step = np.empty(keys.shape[0], np.int64)
        ng = _merge_distinct_pass(keys, starts, width, out, step)
        if width == 1:
            gid = step
        else:
            _compose(gid, step)
        keys = out[:ng]
        width *= 2
    return keys, np.arange(n, dtype=np.int64) if gid is None else gid
