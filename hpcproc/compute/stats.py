"""Summary statistics of distributed arrays and of datasets streamed block by block."""

from __future__ import annotations

import time

import numpy as np

from ..agreement import collective
from ..collectives import allreduce_state
from ..observe.phases import phase
from ._source import open_source

#: Fewest rows per piece for per-column (``axis=0``) statistics of a file: the per-piece,
#: per-column merge stays small against the rows' own work.
PIECE_ROWS = 1024

__all__ = ["stats", "stats_file"]


def check_args(axis, ddof, skipna, exact=False) -> None:
    if axis not in (None, 0):
        raise ValueError(f"axis must be None or 0, got {axis!r}")
    if not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")
    if not isinstance(skipna, (bool, np.bool_)):
        raise TypeError(f"skipna must be True or False, got {skipna!r}")
    if not isinstance(exact, (bool, np.bool_)):
        raise TypeError(f"exact must be True or False, got {exact!r}")


def _merge_all(a, b):
    from ..kernels.moment_state import merge, merge_int
    return (merge(a[0], b[0]), merge_int(a[1], b[1]), a[2] + b[2],
            *(max(u, v) for u, v in zip(a[3:], b[3:])))


def fold_block(state, istate, block, axis, cols, ints, comm, exact=False, row=0):
    """This rank's running states with one more local block (first row: global ``row``)
    merged in: the step of a scan (used by :func:`stats` and the resumable ``stats
    --checkpoint``). ``exact``: the correctly rounded state (the running state must be an
    exact one too)."""
    from ..kernels.moment_state import block_state, merge, merge_int
    per_row = 1 if axis == 0 else int(np.prod(block.shape[1:], dtype=np.int64))
    s, i = block_state(block.reshape(block.shape[0] if axis == 0 else -1, cols), comm,
                       with_ints=ints, exact=exact, start=row * per_row)
    return merge(state, s), merge_int(istate, i)


def finish(state, istate, extra, trailing, axis, ddof, skipna, comm):
    """Merge every rank's states and ``extra`` (bytes, then seconds: max over ranks).
    Collective. Returns the statistics and the merged tuple."""
    from ..kernels.moment_state import finalize
    total = allreduce_state((state, istate, *extra), _merge_all, comm)
    out = finalize(total[0], total[1], ddof, skipna)
    if axis is None:
        out = {k: v[0].item() for k, v in out.items()}
    else:
        out = {k: v.reshape(trailing) for k, v in out.items()}
    return out, total


def run_source(src, axis, ddof, skipna, t0, exact=False):
    """Collective. The statistics of an opened :class:`._source.Source` (and the merged
    states): what :func:`stats` returns, for callers that opened the source already."""
    from ..kernels.moment_state import empty_int_state, empty_state
    comm = src.comm
    cols = int(np.prod(src.trailing, dtype=np.int64)) if axis == 0 else 1
    ints = src.dtype is not None and src.dtype.kind in "iub"
    unsigned = ints and src.dtype.kind == "u"
    state, istate = empty_state(cols, exact), (empty_int_state(cols, unsigned) if ints else None)
    if src.kernel_dtype is not None:  # compile together: the pieces differ between ranks
        state, istate = fold_block(state, istate, np.empty((0,) + src.trailing,
                                                           src.kernel_dtype),
                                   axis, cols, ints, comm, exact)
    nbytes, t_read, t_comp = 0, 0.0, 0.0
    # a file: cache-sized pieces, no collective per piece; per-column statistics only
    # when a piece holds PIECE_ROWS rows or more: each piece's state is merged column by
    # column, which wide rows would pay per piece (3 rows of 1.1M float64 columns: 20 s
    # in 8 MiB pieces against 3.4 s in one block)
    it = src.located_pieces(PIECE_ROWS if axis == 0 else 1)
    while True:
        t1 = time.perf_counter()
        row, block = next(it, (0, None))
        t2 = time.perf_counter()
        t_read += t2 - t1
        if block is None:
            break
        nbytes += block.size * src.dtype.itemsize  # bytes of the input (not converted)
        with phase("compute"):
            state, istate = fold_block(state, istate, block, axis, cols, ints, comm, exact,
                                           row)
        block = None  # the buffer is reused by the next read
        t_comp += time.perf_counter() - t2
    return finish(state, istate, (nbytes, t_read, t_comp, time.perf_counter() - t0),
                  src.trailing, axis, ddof, skipna or src.skipna, comm)


@collective("hp.stats")
def stats(x, axis=None, ddof: int = 0, skipna: bool = False, comm=None,
          block_bytes: int = 64 << 20, method: str = "auto", *,
          mask_and_scale: bool = True, exact: bool = False) -> dict:
    """count, nan_count, sum, mean, var, std, min, max of a distributed input.

    Collective. Every rank gets the same dict. Computed by Numba kernels per chunk of
    1024 elements aligned to the global index (compiled once per node), merged along a
    fixed tree over chunk indices: every result is bit-identical for any number of
    ranks, row layout, block size and thread count (docs/kernels.md, "Reproducible
    sums"), and agrees with exact arithmetic to about 1e-15 relative; min, max and
    counts exactly (and integer sums, which are exact like numpy's).
    ``exact=True`` makes sum, mean and var correctly rounded as well (slower).

    Parameters
    ----------
    x : DistArray, str, (str, str) or iterator
        A DistArray; a dataset ``"file.h5:/x"`` or ``("file.h5", "/x")`` streamed in blocks
        of ``block_bytes`` per rank (a contiguous one in pieces of at most
        ``min(block_bytes, 8 MiB)``, folded while in the cache); or an ``hp.blocks(...)``
        iterator.
    axis : None or 0
        ``None``: over all elements (scalars). ``0``: per column (arrays of the trailing
        shape).
    ddof : int
        Delta degrees of freedom of ``var``/``std``.
    skipna : bool
        ``False`` (numpy's ``mean``/``var``): a NaN makes every statistic NaN and ``count``
        counts all elements. ``True`` (``np.nanmean``...): NaNs are left out of
        everything, ``count`` counts the others. ``nan_count`` is always reported.
    comm : mpi4py.MPI.Intracomm, optional
        For file inputs (a DistArray or blocks carry their own).
    mask_and_scale : bool
        File inputs: decode CF packing and missing values (see :func:`hpcproc.read`).
        When the variable declares missing values, they are left out as with
        ``skipna=True`` (``count`` counts valid values, ``nan_count`` missing ones).
    exact : bool
        Correctly rounded mode: sums of values and of squares are accumulated exactly
        (fixed-point superaccumulators), so ``sum``, ``mean`` and ``var`` are the exact
        results correctly rounded to float64 (``std = sqrt(var)``); reproducible like
        the default. Slower (see docs/kernels.md).
    """
    check_args(axis, ddof, skipna, exact)
    src = open_source(x, comm, block_bytes, method, mask_and_scale)
    return run_source(src, axis, ddof, skipna, time.perf_counter(), bool(exact))[0]


@collective("hp.stats_file", paths=("path",))
def stats_file(path: str, dataset: str, comm=None, block_bytes: int = 64 << 20,
               method: str = "auto", ddof: int = 0, axis=None, skipna: bool = False, *,
               mask_and_scale: bool = True, exact: bool = False) -> dict:
    """Statistics of a dataset read block by block (memory bounded by ``block_bytes``).

    Collective. Like :func:`stats`, plus ``timings`` (seconds: read, compute, compile
    (kernel compilation or cache load, this rank) and total, max over
    ranks) and ``bytes`` (bytes processed).
    """
    check_args(axis, ddof, skipna, exact)
    from ..kernels._engine import compile_seconds

    t0, c0 = time.perf_counter(), compile_seconds()
    src = open_source((path, dataset), comm, block_bytes, method, mask_and_scale)
    result, total = run_source(src, axis, ddof, skipna, t0, bool(exact))
    compiled = compile_seconds() - c0  # JIT compile or cache load, inside "compute"
    result["bytes"] = int(total[2])
    result["timings"] = {"read": total[3], "compute": max(0.0, total[4] - compiled),
                         "compile": compiled, "total": max(total[5], time.perf_counter() - t0)}
    return result
