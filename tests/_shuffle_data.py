"""Test data for the shuffle tests: global arrays (identical on every rank, fixed seed)
split over the ranks in several layouts, and independent numpy references."""

import numpy as np

import hpcproc as hp

LAYOUTS = ("even", "all_on_last", "first_empty", "uneven")


def bounds(n, size, rank, layout):
    if layout == "even":
        return hp.block_range(n, size, rank)
    if layout == "all_on_last":
        return (0, n) if rank == size - 1 else (0, 0)
    if layout == "first_empty":
        if size == 1:
            return 0, n
        a, b = hp.block_range(n, size - 1, rank - 1) if rank else (0, 0)
        return a, b
    cuts = np.sort(np.random.default_rng(size).integers(0, n + 1, size - 1))
    edges = np.concatenate(([0], cuts, [n]))
    return int(edges[rank]), int(edges[rank + 1])


def split(columns, comm, layout="even"):
    """A DistTable whose rank r holds its ``layout`` share of the global ``columns``."""
    n = len(next(iter(columns.values())))
    a, b = bounds(n, comm.size, comm.rank, layout)
    return hp.DistTable.from_local({k: v[a:b] for k, v in columns.items()}, comm)


def keys(kind, n, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(-1000, 1000, n)
    if kind == "wide":
        return rng.integers(-2**62, 2**62, n)
    if kind == "zipf":
        w = np.arange(1, 4097, dtype=float) ** -1.2
        return rng.choice(4096, size=n, p=w / w.sum()).astype(np.int64)
    if kind == "equal":
        return np.full(n, 7, dtype=np.int64)
    if kind == "float_nan":
        x = np.round(rng.normal(size=n), 1)
        x[rng.random(n) < 0.1] = np.nan
        x[rng.random(n) < 0.05] = -0.0
        return x
    raise ValueError(kind)


def codes(col):
    """Dense order-preserving codes of a key column (NaN one code, last): independent
    of hpcproc's encoding."""
    u, inv = np.unique(col, return_inverse=True, equal_nan=True)
    return u, inv.reshape(-1)


def group_reference(key_cols, n):
    """(unique key columns in lexicographic order, group index of every row)."""
    combined = np.zeros(n, dtype=np.int64)
    uniq = []
    for col in key_cols:
        u, inv = codes(col)
        combined = combined * len(u) + inv
        uniq.append(u)
    gu, ginv = np.unique(combined, return_inverse=True)
    ginv = ginv.reshape(-1)
    first = np.zeros(len(gu), dtype=np.int64)
    first[ginv[::-1]] = np.arange(n)[::-1]
    return [col[first] for col in key_cols], ginv


#: Destination patterns of the exchange's break tests (:func:`dest_pattern`).
DEST_PATTERNS = ("random", "to_first", "to_last", "kept", "shifted", "to_next")


def dest_pattern(pattern, n, comm, rng):
    """Destinations of ``n`` local rows: random, all to rank 0 / the last rank, all kept,
    shifted by the rank, or all to the next rank."""
    size, rank = comm.size, comm.rank
    return {"random": rng.integers(0, size, n), "to_first": np.zeros(n, int),
            "to_last": np.full(n, size - 1), "kept": np.full(n, rank),
            "shifted": (np.arange(n) + rank) % size,
            "to_next": np.full(n, (rank + 1) % size)}[pattern]
