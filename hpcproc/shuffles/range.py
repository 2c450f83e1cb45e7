"""Range partitioning by sampled splitters (the partitioner of the sample sort).

Every rank draws a random sample of its rows, proportional to its share of the rows,
so that the whole sample is uniform over all rows. The samples (``oversample * ranks``
rows in total, at most ``MAX_SAMPLES``: linear in the number of ranks, never ranks**2)
are all-gathered, sorted identically on every rank, and every ``1/ranks``-quantile
becomes a splitter. ``oversample`` follows from the target imbalance ``eps``: a bucket
estimated from ``a`` samples has a relative error of about ``1/sqrt(a)``, so
``a = 36 / eps**2`` keeps each rank within ``eps`` of ``N/ranks`` with a margin of six
standard deviations (3600 samples per rank for 10 %). With fewer rows than that every
row is a sample and the splitters are exact.

With ``tiebreak=True`` (sort) the splitters are (key, global row) pairs: equal keys may
be split between neighbouring ranks, so even one heavy key (all rows equal) is spread
evenly. With ``tiebreak=False`` (group-by, ``shuffle(partitioner="range")``) equal keys
always land on one rank.
"""

from __future__ import annotations

import numpy as np

from ..array import gather_rows
from ..comm import fail_together, lib_comm
from . import _kernels
from ._encode import encode_keys, encoded_chunks
from ._exchange import dest_dtype
from ._localsort import argsort_keys

__all__ = ["splitters", "range_partition", "MAX_SAMPLES"]

MAX_SAMPLES = 1 << 22


def splitters(key_cols, comm, *, ascending=True, tiebreak: bool, eps: float = 0.1,
              seed: int = 0, counts=None, error=None,
              what: str = "sort") -> np.ndarray:
    """The ``ranks - 1`` splitters of the key columns (identical on every rank).

    Collective. Splitters are encoded keys (see :mod:`._encode`), one word per key column
    (+1 global-row word with ``tiebreak``). Only the sampled rows are encoded.
    ``error`` (without ``counts``): an exception this rank raised since its last
    collective, agreed in the row counts' allgather and raised on every rank (the
    message begins with ``what``).
    """
    lc = lib_comm(comm)
    size, rank = lc.Get_size(), lc.Get_rank()
    if counts is None:
        every = lc.allgather(-1 if error is not None else key_cols[0].shape[0])
        if min(every) < 0:
            fail_together(error, what, lc)
    n = key_cols[0].shape[0]
    nkeys = len(key_cols)
    counts = np.asarray(every if counts is None else counts, dtype=np.int64)
    total = int(counts.sum())
    first = int(counts[:rank].sum())
    target = min(MAX_SAMPLES, int(np.ceil(36.0 / eps ** 2)) * size)
    if total <= target:
        idx = np.arange(n, dtype=np.int64)
    else:
        take = int(np.ceil(target * n / total))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(rank,)))
        idx = np.sort(rng.integers(0, n, size=take)) if n else np.empty(0, np.int64)
    width = nkeys + int(tiebreak)
    sample = np.empty((idx.shape[0], width), dtype=np.uint64)
    sample[:, :nkeys] = encode_keys([c[idx] for c in key_cols], ascending)
    if tiebreak:
        sample[:, -1] = (first + idx).astype(np.uint64)
    every = gather_rows(sample, lc, None)
    every = every[argsort_keys(every)]
    m = every.shape[0]
    if m == 0 or size == 1:
        return np.empty((0, width), dtype=np.uint64)
    pick = (np.arange(1, size, dtype=np.int64) * m) // size
    return np.ascontiguousarray(every[pick])


def range_partition(key_cols, S: np.ndarray, first_row: int = 0, ascending=True) -> np.ndarray:
    """Destination of every row: the number of splitters <= the row. Not collective.

    ``first_row`` is the global row of the first local row (used when the splitters
    carry one). Keys are encoded a chunk at a time.
    """
    dest = np.empty(key_cols[0].shape[0], dtype=dest_dtype(S.shape[0] + 1))
    tiebreak = S.shape[1] > len(key_cols)
    for a, b, K in encoded_chunks(key_cols, ascending):
        _kernels.range_dest(K, S, np.int64(first_row + a), tiebreak, dest[a:b])
    return dest
