"""Distributed histograms with exactly ``np.histogram``'s / ``np.histogram2d``'s counts."""

from __future__ import annotations

import operator
import os

import numpy as np
from mpi4py import MPI

from ..agreement import collective
from ..array import DistArray
from ..comm import check_all, lib_comm
from ..observe.phases import phase
from ._source import check_real, open_source

__all__ = ["histogram", "histogram2d"]


def check_bins(bins, name="bins"):
    if isinstance(bins, str):
        raise ValueError(f"{name}: only an integer or an array of edges is supported, "
                         f"not {bins!r}")
    if np.ndim(bins) == 0:
        try:
            n = operator.index(bins)
        except TypeError:
            raise TypeError(f"`{name}` must be an integer, when a scalar") from None
        if n < 1:
            raise ValueError(f"`{name}` must be positive, when an integer")
        return n
    edges = np.asarray(bins)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"`{name}` must be 1d, when an array, with at least two edges")
    if np.any(edges[:-1] > edges[1:]):
        raise ValueError(f"`{name}` must increase monotonically, when an array")
    if edges.dtype.kind in "fc" and np.isnan(edges).any():  # numpy counts nonsense then
        raise ValueError(f"`{name}` must not contain NaN, when an array")
    return edges


def nbins_of(b) -> int:
    return b if isinstance(b, int) else len(b) - 1


def check_memory(cells: int, comm, what: str | None = None) -> None:
    """Refuse, on every rank together, a histogram whose arrays cannot fit in memory.

    A histogram of ``cells`` bins holds about four float64/int64 arrays of that size per
    rank (edges, counts, one thread's partial counts, the reduction's buffer); more than
    this node's physical memory shared by its ranks is an error naming the need, before
    anything is allocated or read. Collective.
    """
    from ..comm import check_all, node_comm

    need = 4 * 8 * int(cells)
    ranks = node_comm(comm).Get_size()

    def check():
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > total // ranks:
            what_ = what or f"bins={cells:,}"
            raise ValueError(f"{what_} needs about {need / 2**30:.1f} GiB per rank for the "
                             f"counts, but this node has {total / 2**30:.1f} GiB for {ranks} "
                             f"rank(s): use fewer bins")
    check_all(check, comm)


def check_range(rng):
    """``rng`` checked as numpy checks ``histogram(range=...)`` (None passes)."""
    if rng is None:
        return None
    lo, hi = (v + 0.0 for v in rng)
    if lo > hi:
        raise ValueError("max must be larger than min in range parameter.")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"supplied range of [{lo}, {hi}] is not finite")
    return rng


def auto_range(src, dtype):
    """Global min and max as scalars of ``dtype`` (numpy's rules for range=None)."""
    from .stats import run_source
    s = run_source(src, None, 0, False, 0.0)[0]
    if s["count"] == 0:
        return (0, 1)
    nan = s["nan_count"] and not src.skipna  # a CF-masked input skips missing values
    if nan or not (np.isfinite(s["min"]) and np.isfinite(s["max"])):
        mn, mx = (np.nan, np.nan) if nan else (s["min"], s["max"])
        raise ValueError(f"autodetected range of [{mn}, {mx}] is not finite")
    return (np.array(s["min"], dtype)[()], np.array(s["max"], dtype)[()])


def edge_args(edges):
    """Edges as the kernels compare them, whether they are uniform, and 1 / bin width.

    Integer edges stay integers (numpy compares integer data with them exactly, also
    beyond 2**53); others become float64 (exact for float16/32/64; long double edges,
    e.g. from a long double ``range``, raise ``DtypeError`` rather than round).
    """
    from ..kernels._dtypes import kernel_dtype
    kdt = kernel_dtype(edges.dtype, "bins/range")
    e = np.ascontiguousarray(edges, dtype=kdt if kdt.kind in "iu" else np.float64)
    f = e.astype(np.float64)
    nb = e.size - 1
    # equal widths to 1e-9 (np.allclose's test, without its temporaries: 10**7 bins took
    # 2 s); NaN or infinite edges fail both comparisons
    with np.errstate(invalid="ignore"):
        d = np.diff(f)
        uniform = bool(nb > 0 and f[-1] > f[0] and d.min() > 0
                       and np.abs(d - d[0]).max() <= 1e-9 * abs(d[0]))
    with np.errstate(over="ignore"):  # tiny ranges (1e-308): search the edges instead
        norm = nb / (f[-1] - f[0]) if uniform else 0.0
    uniform = uniform and bool(np.isfinite(norm))
    return e, uniform, (norm if uniform else 0.0)


def edge_dtype(dtype):
    """The dtype numpy computes edges for (it histograms bool data as uint8)."""
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype


def flat_block(a):
    """A kernel block: contiguous, 1-D, native (:func:`to_kernel`), bool as uint8."""
    from ..kernels._dtypes import to_kernel
    a = to_kernel(np.ascontiguousarray(a).reshape(-1))
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    return a if a.flags.writeable else a.copy()


def _local_weights(x, weights, comm):
    if weights is None:
        return None
    if not isinstance(weights, DistArray) or not isinstance(x, DistArray):
        raise TypeError("weights must be a DistArray laid out like x (a DistArray)")
    check_real(weights.dtype, "weights")

    def check():
        if weights.local.shape != x.local.shape:
            raise ValueError(f"weights block shape {weights.local.shape} differs from x's "
                             f"{x.local.shape}")
    check_all(check, comm)
    return flat_block(weights.local).astype(np.float64, copy=False)


def allreduce_counts(arr, comm):
    with phase("wait", sent=arr.nbytes):
        lib_comm(comm).Allreduce(MPI.IN_PLACE, arr, op=MPI.SUM)
    return arr


@collective("hp.histogram")
def histogram(x, bins=10, range=None, weights=None, comm=None,
              block_bytes: int = 64 << 20, method: str = "auto", *,
              mask_and_scale: bool = True):
    """Histogram of all elements of a distributed input: ``(counts, edges)``.

    Collective. Every rank gets the same result. Counts are identical to
    ``np.histogram`` of the whole data: same edges (``np.histogram_bin_edges``), bins
    half-open except the last, which includes its right edge; values outside the range
    and NaNs are not counted. ``range=None`` first computes the global min and max (one
    more pass over a file input). With ``weights`` (a DistArray laid out like ``x``) the
    result is float64 sums of weights (equal to numpy's up to summation order).

    ``x`` is a DistArray, ``"file.h5:/dset"``, ``(file, dset)``, or an ``hp.blocks``
    iterator (then ``range`` or explicit edges are required: one pass only). File inputs
    are CF-decoded unless ``mask_and_scale=False``: missing values (NaN) are not counted.
    """
    from ..kernels import _hist_nb as nb
    from ..kernels._engine import ensure_compiled, map_threads, signature_of, split_rows

    bins = check_bins(bins)
    range = check_range(range)
    src = open_source(x, comm, block_bytes, method, mask_and_scale)
    comm = src.comm
    check_memory(nbins_of(bins), comm)
    w = _local_weights(x, weights, comm)
    dtype = edge_dtype(src.dtype if src.dtype is not None else np.dtype(np.float64))
    if isinstance(bins, int) and range is None:
        if not src.multipass:
            raise ValueError("range=None needs a pass for the min and max: give range= or "
                             "edges, or pass the file and dataset instead of hp.blocks(...)")
        range = auto_range(src, dtype)
    edges = np.histogram_bin_edges(np.empty(0, dtype), bins, range=range)
    e, uniform, norm = edge_args(edges)
    nbins = e.size - 1
    out = np.zeros(nbins, dtype=np.int64 if w is None else np.float64)
    for block in src.blocks():
        flat = flat_block(block)
        if w is None:
            ensure_compiled(nb.hist1d, signature_of(flat, e, uniform, norm, out), comm)
        else:
            ensure_compiled(nb.hist1d_weighted, signature_of(flat, w, e, uniform, norm, out),
                            comm)

        def run(lo, hi, flat=flat):
            part = np.zeros_like(out)
            if w is None:
                nb.hist1d(flat[lo:hi], e, uniform, norm, part)
            else:
                nb.hist1d_weighted(flat[lo:hi], w[lo:hi], e, uniform, norm, part)
            return part

        with phase("compute"):
            for part in map_threads(run, split_rows(flat.shape[0])):  # in order: deterministic
                out += part
    return allreduce_counts(out, comm), edges


@collective("hp.histogram2d")
def histogram2d(x, y, bins=10, range=None, weights=None, comm=None):
    """2-D histogram of paired elements of two DistArrays: ``(H, xedges, yedges)``.

    Collective. Same edges and counts as ``np.histogram2d`` (float64 ``H`` like numpy):
    ``bins`` is an int, a pair of ints, an array of edges or a pair of arrays; ``range``
    is ``None`` (global min/max of each coordinate) or ``[(xmin, xmax), (ymin, ymax)]``.
    """
    from ..kernels import _hist_nb as nb
    from ..kernels._engine import ensure_compiled, signature_of

    if not isinstance(x, DistArray) or not isinstance(y, DistArray):
        raise TypeError("histogram2d expects two DistArrays laid out alike")
    check_real(x.dtype, "x")
    check_real(y.dtype, "y")
    try:
        pair = tuple(bins) if len(bins) == 2 else (bins, bins)  # numpy's rule
    except TypeError:
        pair = (bins, bins)
    pair = tuple(check_bins(b, f"bins[{i}]") for i, b in enumerate(pair))
    ranges = [None, None] if range is None else [check_range(r) for r in range]
    comm = x.comm
    nx, ny = nbins_of(pair[0]), nbins_of(pair[1])
    check_memory(nx * ny, comm, f"bins=({nx:,}, {ny:,})")

    def check():
        if x.local.shape != y.local.shape:
            raise ValueError(f"x and y blocks differ in shape: {x.local.shape} vs "
                             f"{y.local.shape}")
    check_all(check, comm)
    w = _local_weights(x, weights, comm)
    sample = np.empty((0, 2), edge_dtype(np.result_type(x.dtype, y.dtype)))
    for i, (b, a) in enumerate(zip(pair, (x, y))):
        if isinstance(b, int) and ranges[i] is None:
            ranges[i] = auto_range(open_source(a), sample.dtype)
    _, ex, ey = np.histogram2d(sample[:, 0], sample[:, 1], bins=list(pair), range=ranges)
    for i, (b, e) in enumerate(zip(pair, (ex, ey))):
        if isinstance(b, int) and not np.all(np.isfinite(e)):  # float16 max - min overflows
            raise ValueError(f"Too many bins for data range. Cannot create {b} finite-sized "
                             f"bins (coordinate {i}, {e.dtype} edges overflow).")
    (ax, ux, nx), (ay, uy, ny) = edge_args(ex), edge_args(ey)
    fx, fy = flat_block(x.local), flat_block(y.local)
    out = np.zeros((ax.size - 1, ay.size - 1), dtype=np.int64 if w is None else np.float64)
    with phase("compute"):
        if w is None:
            ensure_compiled(nb.hist2d, signature_of(fx, fy, ax, ux, nx, ay, uy, ny, out), comm)
            nb.hist2d(fx, fy, ax, ux, nx, ay, uy, ny, out)
        else:
            ensure_compiled(nb.hist2d_weighted,
                            signature_of(fx, fy, w, ax, ux, nx, ay, uy, ny, out), comm)
            nb.hist2d_weighted(fx, fy, w, ax, ux, nx, ay, uy, ny, out)
    return allreduce_counts(out, comm).astype(np.float64), ex, ey
