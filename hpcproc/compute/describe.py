"""Statistics, histogram and sketch quantiles of a distributed input from one read.

``hp.describe`` reads the data once and runs one fused kernel per block
(:mod:`hpcproc.kernels._describe_nb`): the moment state of ``hp.stats``, the histogram
counts of ``hp.histogram`` and, when asked, the ``QuantileSketch`` counts, while the block
is in the cache. Results are those of the separate calls, exactly:

* the moment state is built with the same kernel, slices, thread ranges and merges as
  ``hp.stats`` (:mod:`hpcproc.kernels.describe_state`), so every statistic is
  bit-identical to ``hp.stats(x, ddof=..., skipna=...)``;
* the histogram uses ``hp.histogram``'s edges and bin search: counts identical to
  ``np.histogram``.

``range=None`` (numpy's ``[min, max]``) is the one case that needs a second read: the
edges depend on the global min and max, known only after the last value. No bounded
state can replace the values: a last value that extends the max can move the first
interior edge to any point ``t``, and the count of values below an arbitrary ``t`` needs
all of them. Keeping the values in memory instead of reading them again was measured
slower with a warm page cache (faulting in fresh memory costs more than a second
``pread``) and costs memory, so the second pass reads the file again and only
histograms (moments and sketch are done in the first). An in-memory ``DistArray`` is
visited twice without any read. Give ``range=`` (or edges) for a single pass.
"""

from __future__ import annotations

import time

import numpy as np

from ..agreement import collective
from ..comm import agreed
from ..observe.phases import phase
from ._source import open_source
from .histogram import (
    allreduce_counts,
    check_bins,
    check_memory,
    check_range,
    edge_args,
    edge_dtype,
    flat_block,
    nbins_of,
)
from .stats import check_args, finish

__all__ = ["describe"]


def _check_q(quantiles, rel_err):
    if quantiles is None:
        return None, None
    from .sketch import QuantileSketch
    qa = np.asarray(quantiles)
    if qa.dtype.kind not in "iuf" or qa.ndim > 1:
        raise ValueError("quantiles must be a number or a 1-d array of numbers")
    if qa.size and not (np.all(qa >= 0) and np.all(qa <= 1)):
        raise ValueError("quantiles must be in the range [0, 1]")
    return qa.astype(np.float64), QuantileSketch(rel_err)  # checks rel_err


def _auto_range(out, dtype, skipna):
    """numpy's range for ``range=None`` from the merged statistics (``hp.histogram``'s
    rule): ``(0, 1)`` for no values; an error (agreed) for NaN or infinite extremes."""
    if out["count"] == 0:
        return (0, 1)
    nan = out["nan_count"] and not skipna
    if nan or not (np.isfinite(out["min"]) and np.isfinite(out["max"])):
        mn, mx = (np.nan, np.nan) if nan else (out["min"], out["max"])
        raise agreed(ValueError(f"autodetected range of [{mn}, {mx}] is not finite"))
    return (np.array(out["min"], dtype)[()], np.array(out["max"], dtype)[()])


def _scan(src, state):
    """Fold every piece of ``src`` into ``state``; (bytes read, seconds reading).

    A file is read in cache-sized pieces (:meth:`._source.Source.located_pieces`) whose
    number differs between ranks: an empty block folded on every rank first makes the
    only collective step of ``state.add`` (compiling the kernels) happen together.
    """
    if src.kernel_dtype is not None:
        state.add(flat_block(np.empty((0,) + src.trailing, src.kernel_dtype)), src.comm)
    nbytes, t_read, it = 0, 0.0, src.located_pieces()
    while True:
        t1 = time.perf_counter()
        row, block = next(it, (None, None))
        t_read += time.perf_counter() - t1
        if block is None:
            return nbytes, t_read
        nbytes += block.size * src.dtype.itemsize
        per_row = int(np.prod(block.shape[1:], dtype=np.int64))
        with phase("compute"):  # the global index of the first element: hp.stats' chunks
            state.add(flat_block(block), src.comm, start=row * per_row)
        block = None  # the buffer is reused by the next read


@collective("hp.describe")
def describe(x, bins=64, range=None, ddof: int = 0, skipna: bool = False, comm=None,
             block_bytes: int = 64 << 20, method: str = "auto", *, quantiles=None,
             rel_err: float = 0.01, mask_and_scale: bool = True,
             exact: bool = False) -> dict:
    """Statistics, histogram (and sketch quantiles) of all elements from one read.

    Collective. Every rank gets the same dict: the keys of :func:`hpcproc.stats`
    (``count, nan_count, sum, mean, var, std, min, max``: bit-identical to
    ``hp.stats(x, ddof=ddof, skipna=skipna, exact=exact)``), ``counts`` and ``edges``
    (identical to ``hp.histogram(x, bins, range)`` and ``np.histogram``), ``quantiles``
    (when asked) and ``passes``, the number of reads of the data (1, or 2 for
    ``range=None`` with integer ``bins``; see the module docstring).

    Parameters
    ----------
    x : DistArray, str, (str, str) or iterator
        As for :func:`hpcproc.stats`; an ``hp.blocks(...)`` iterator needs ``range`` or
        edges (one pass only).
    bins : int or 1-D array of edges
        As for :func:`hpcproc.histogram`.
    range : (float, float) or None
        Histogram range; ``None``: the data's min and max (numpy's rule; a second read of
        a file input). With ``skipna=True`` (or a CF-masked input) that is the range of the
        non-NaN values; otherwise a NaN or an infinite value makes it an error, as in
        ``np.histogram``. NaNs are never counted in the histogram.
    ddof, skipna, comm, block_bytes, method, mask_and_scale, exact
        As for :func:`hpcproc.stats`.
    quantiles : float or sequence of float in [0, 1], optional
        Also estimate these quantiles with a :class:`hpcproc.QuantileSketch` filled in
        the same pass (relative error ``rel_err``, as ``hp.quantile(method="sketch")``).
        NaN when the data is empty, or holds NaNs and ``skipna`` is False.
    rel_err : float
        Accuracy of the sketch, in (0, 1).

    Memory: one piece (``min(block_bytes, 8 MiB)`` for a contiguous file, else one
    block of ``block_bytes``) per rank plus the states (a few hundred bytes,
    ``32 * bins`` bytes per thread: four sub-histograms, 128 KiB of bin estimates per
    kernel call, and the sketch: ``2 * ceil(1418 / ln(gamma)) + 5`` int64 per thread,
    1.1 MiB for ``rel_err=0.01``).
    """
    from ..kernels.describe_state import DescribeState

    check_args(None, ddof, skipna, exact)
    bins, range = check_bins(bins), check_range(range)
    qa, sketch = _check_q(quantiles, rel_err)
    src = open_source(x, comm, block_bytes, method, mask_and_scale)
    comm, skip = src.comm, bool(skipna) or src.skipna
    nb = nbins_of(bins)  # edges, counts, the reduction and four sub-histograms per thread
    check_memory(2 * nb, comm, f"bins={nb:,}")
    dtype = src.dtype if src.dtype is not None else np.dtype(np.float64)
    two = isinstance(bins, int) and range is None
    if two and not src.multipass:
        raise ValueError("range=None needs a pass for the min and max: give range= or "
                         "edges, or pass the file and dataset instead of hp.blocks(...)")
    edges = None if two else np.histogram_bin_edges(np.empty(0, edge_dtype(dtype)), bins,
                                                    range=range)
    ints = dtype.kind in "iub"
    state = DescribeState(*(edge_args(edges) if edges is not None else (None,)),
                          sketch=sketch, ints=ints, unsigned=dtype.kind == "u",
                          exact=bool(exact))
    nbytes, t_read = _scan(src, state)
    out, _ = finish(state.state, state.istate, (nbytes, t_read, 0.0, 0.0), (), None, ddof,
                    skip, comm)
    if sketch is not None:
        state.fold_sketch()
    if two:
        try:  # after the pass: every rank has the same range, so raises alike
            edges = np.histogram_bin_edges(np.empty(0, edge_dtype(dtype)), bins,
                                           range=_auto_range(out, edge_dtype(dtype), skip))
        except ValueError as exc:  # numpy's "Too many bins for data range"
            raise agreed(exc) from None
        state = DescribeState(*edge_args(edges), moments=False)
        _scan(src, state)
    out["counts"], out["edges"] = allreduce_counts(state.counts(), comm), edges
    if sketch is not None:
        _sketch_quantiles(out, sketch, qa, skip, comm)
    out["passes"] = 2 if two else 1
    return out


def _sketch_quantiles(out, sketch, qa, skip, comm):
    """Merge the sketch over the ranks and put its quantiles into ``out``."""
    merged = sketch.merged(comm)
    if skip:
        merged.nan = 0  # NaNs (or CF missing values) are left out
    if merged.count == 0 or merged.nan:
        v = np.full(qa.shape, np.nan)
    else:
        v = np.asarray(merged.quantile(qa), dtype=np.float64)
    out["quantiles"] = float(v) if v.ndim == 0 else v
