"""Mergeable moment states computed by the Numba kernels, merged in numpy.

``block_state(block2d)`` runs the compiled kernel on one ``(rows, k)`` block (split over
this rank's threads when large); ``merge`` combines two states with the same formulas the
kernel uses between chunks; ``finalize`` turns a state into count, sum, mean, var, std,
min, max with numpy's NaN rules. Integer data also carries an exact integer sum, min and
max (``int_state``: int64, or uint64 for unsigned data, like numpy's sums), so integer
results equal numpy's exactly.

``exact=True`` selects the reproducible state of :mod:`.exact_state` (exact sums in
fixed-point superaccumulators: bit-identical results for any rank count, block size
and thread count); ``merge`` and ``finalize`` recognise it by its dtype (int64).
"""

from __future__ import annotations

import numpy as np

from ._engine import ensure_compiled, map_threads, signature_of, split_rows
from . import _moments_nb as nb
from . import exact_state as xs

__all__ = ["empty_state", "empty_int_state", "block_state", "merge", "merge_int", "finalize"]

COUNT, NAN, SUM, COMP, MEAN, M2, MIN, MAX = range(8)


def empty_state(k: int, exact: bool = False) -> np.ndarray:
    """The state of zero elements for ``k`` columns (the exact one if ``exact``)."""
    return xs.empty_state(k) if exact else nb.empty_state(k)


def empty_int_state(k: int, unsigned: bool = False) -> np.ndarray:
    """Integer sum, min, max of zero elements for ``k`` columns (uint64 if ``unsigned``:
    numpy sums unsigned integers as uint64, signed ones and bools as int64)."""
    dtype = np.dtype(np.uint64 if unsigned else np.int64)
    s = np.zeros((k, 3), dtype=dtype)
    s[:, 1], s[:, 2] = np.iinfo(dtype).max, np.iinfo(dtype).min
    return s


def _as_kernel_input(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.bool_:
        block = block.view(np.uint8)
    block = np.ascontiguousarray(block)
    return block if block.flags.writeable else block.copy()


def block_state(block: np.ndarray, comm=None, with_ints: bool = False, exact: bool = False):
    """The state of a ``(rows, k)`` block; ``(state, int_state or None)``.

    Collective the first time a dtype is seen (the kernel is compiled once per node).
    ``exact``: the reproducible state (:mod:`.exact_state`).
    """
    unsigned = block.dtype.kind == "u"
    block = _as_kernel_input(block)
    n, k = block.shape
    if exact:
        ints = None
        if with_ints:
            ints = empty_int_state(k, unsigned)
            ensure_compiled(nb.int_extras, signature_of(block, ints), comm)
            nb.int_extras(block, ints)
        return xs.block_state(block, comm), ints
    if k == 1:
        flat = block.reshape(-1)
        kern, arg = nb.moments_1d, flat
    else:
        kern, arg = nb.moments_2d, block
    out0 = empty_state(k)
    ensure_compiled(kern, signature_of(arg, out0), comm)
    ints = None
    if with_ints:
        ensure_compiled(nb.int_extras, signature_of(block, empty_int_state(k, unsigned)), comm)

    def run(lo, hi):
        out = empty_state(k)
        kern(arg[lo:hi], out)
        return out

    parts = map_threads(run, split_rows(n))
    state = out0
    for p in parts:
        state = merge(state, p)
    if with_ints:
        ints = empty_int_state(k, unsigned)
        nb.int_extras(block, ints)
    return state, ints


def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two states (Chan et al. for mean/M2, Neumaier for the sum; integer
    additions for exact states)."""
    if xs.is_exact(a):
        return xs.merge(a, b)
    out = np.empty_like(a)
    na, nb_ = a[:, COUNT], b[:, COUNT]
    n = na + nb_
    with np.errstate(all="ignore"):
        delta = b[:, MEAN] - a[:, MEAN]
        mean = a[:, MEAN] + delta * (nb_ / n)
        m2 = a[:, M2] + b[:, M2] + delta * delta * (na * nb_ / n)
        s = a[:, SUM] + b[:, SUM]
        big = np.abs(a[:, SUM]) >= np.abs(b[:, SUM])
        comp = np.where(big, (a[:, SUM] - s) + b[:, SUM], (b[:, SUM] - s) + a[:, SUM])
    out[:, COUNT] = n
    out[:, NAN] = a[:, NAN] + b[:, NAN]
    out[:, MEAN] = np.where(na == 0, b[:, MEAN], np.where(nb_ == 0, a[:, MEAN], mean))
    out[:, M2] = np.where(na == 0, b[:, M2], np.where(nb_ == 0, a[:, M2], m2))
    out[:, SUM] = s
    out[:, COMP] = a[:, COMP] + b[:, COMP] + comp
    out[:, MIN] = np.minimum(a[:, MIN], b[:, MIN])
    out[:, MAX] = np.maximum(a[:, MAX], b[:, MAX])
    return out


def merge_int(a, b):
    """Combine two integer states (None when the data is not integer)."""
    if a is None or b is None:
        return a if b is None else b
    with np.errstate(over="ignore"):
        return np.stack([a[:, 0] + b[:, 0], np.minimum(a[:, 1], b[:, 1]),
                         np.maximum(a[:, 2], b[:, 2])], axis=1)


def finalize(state: np.ndarray, ints=None, ddof: int = 0, skipna: bool = False) -> dict:
    """count, nan_count, sum, mean, var, std, min, max (arrays over the k columns).

    Like numpy: without ``skipna`` a NaN makes every value except the counts NaN and
    ``count`` includes the NaNs; with ``skipna`` NaNs are left out (``np.nan*``).
    """
    if xs.is_exact(state):
        return xs.finalize(state, ints, ddof, skipna)
    cnt, nan = state[:, COUNT], state[:, NAN]
    with np.errstate(all="ignore"):
        s = np.where(np.isfinite(state[:, SUM]), state[:, SUM] + state[:, COMP], state[:, SUM])
        mean = np.where(cnt > 0, s / cnt, np.nan)
        var = np.where(cnt > ddof, state[:, M2] / (cnt - ddof), np.nan)
        var = np.where(np.isinf(mean), np.nan, var)
    std = np.sqrt(var)
    mn = np.where(cnt > 0, state[:, MIN], np.nan)
    mx = np.where(cnt > 0, state[:, MAX], np.nan)
    out = {"count": (cnt if skipna else cnt + nan).astype(np.int64),
           "nan_count": nan.astype(np.int64), "sum": s, "mean": mean, "var": var,
           "std": std, "min": mn, "max": mx}
    if ints is not None:
        out["sum"] = ints[:, 0].copy()
        if (cnt > 0).all():
            out["min"], out["max"] = ints[:, 1].copy(), ints[:, 2].copy()
    if not skipna:
        bad = nan > 0
        for key in ("sum", "mean", "var", "std", "min", "max"):
            if bad.any():
                out[key] = np.where(bad, np.nan, out[key])
    return out
