"""Block decomposition along axis 0: which rows each rank owns. Pure math, no MPI.

Rows are split into ``size`` contiguous blocks whose lengths differ by at most one; the
first ``n % size`` ranks get one row more (the convention of MPI-IO and mpi4py-fft). With
fewer rows than ranks the last ranks own zero rows; with zero rows every block is empty.
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_range", "block_counts", "block_offsets", "aligned_ranges", "owner_of",
           "tiling_problem"]


def _check(n: int, size: int) -> None:
    if n < 0:
        raise ValueError(f"number of rows must be >= 0, got {n}")
    if size < 1:
        raise ValueError(f"number of ranks must be >= 1, got {size}")


def block_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` owned by ``rank`` when ``n`` rows are split over ``size`` ranks."""
    _check(n, size)
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} out of range for {size} ranks")
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def block_counts(n: int, size: int) -> np.ndarray:
    """Number of rows of every rank (int64 array of length ``size``)."""
    _check(n, size)
    q, r = divmod(n, size)
    counts = np.full(size, q, dtype=np.int64)
    counts[:r] += 1
    return counts


def block_offsets(counts) -> np.ndarray:
    """Exclusive prefix sum of ``counts``: the first global row of every block."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return offsets


def aligned_ranges(start: int, stop: int, align: int, size: int) -> list[tuple[int, int]]:
    """Split rows ``[start, stop)`` over ``size`` ranks on multiples of ``align``.

    Used for chunked datasets: every block boundary (except ``start`` and ``stop``) is a
    multiple of ``align`` (the chunk length along axis 0), so no chunk is read by two
    ranks. Whole chunks are balanced across ranks (remainder to the first ranks).
    """
    if align < 1:
        raise ValueError(f"alignment must be >= 1, got {align}")
    if stop < start:
        raise ValueError(f"empty or reversed range [{start}, {stop})")
    first, last = start // align, -(-stop // align)  # chunk indices touched
    bounds = []
    for rank in range(size):
        c0, c1 = block_range(last - first, size, rank)
        lo = min(stop, max(start, (first + c0) * align))
        hi = min(stop, (first + c1) * align)
        bounds.append((lo, max(lo, hi)))
    return bounds


def owner_of(rows, counts) -> np.ndarray:
    """Rank that owns each global row in ``rows`` under the block sizes ``counts``."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    return np.searchsorted(ends, np.asarray(rows), side="right")


def tiling_problem(bounds, total: int) -> str | None:
    """Why the blocks ``bounds`` (``(offset, rows)`` per rank, in rank order) do not tile
    ``total`` rows exactly (contiguous, non-overlapping, in rank order), or None."""
    expected = 0
    for rank, (offset, rows) in enumerate(bounds):
        if rows < 0 or offset != expected:
            ranges = ", ".join(f"rank {r}: [{o}, {o + n})" for r, (o, n) in enumerate(bounds[:8]))
            more = ", ..." if len(bounds) > 8 else ""
            return (f"rank {rank} holds rows [{offset}, {offset + rows}) but its block must "
                    f"start at row {expected} (blocks follow each other in rank order: "
                    f"{ranges}{more})")
        expected += rows
    if expected != total:
        return f"the blocks hold {expected} rows in all"
    return None
