"""Mergeable moment states computed by the Numba kernels.

``block_state(block2d, start=row)`` runs the compiled kernel on one ``(rows, k)`` block
whose first row is global row ``start`` (split over this rank's threads when large);
``merge`` combines the states of adjacent row ranges (lower first); ``finalize`` turns a
state into count, sum, mean, var, std, min, max with numpy's NaN rules. The default state
is the reproducible one of :mod:`.repro_state` (global chunks, a fixed merge tree and an
exact sum of chunk sums: bit-identical results for any rank count, block size and thread
count). Integer data also carries an exact integer sum, min and
max (``int_state``: int64, or uint64 for unsigned data, like numpy's sums), so integer
results equal numpy's exactly.

``exact=True`` selects the correctly rounded state of :mod:`.exact_state` (exact sums of
the values and of their squares in fixed-point superaccumulators: reproducible too, and
sum, mean and var correctly rounded; slower); ``merge`` and ``finalize`` recognise it by
its dtype (int64).

The chunk-sequential float64 state of :mod:`._moments_nb` (``nb.moments_1d/2d``, Chan
merges in arrival order) is no longer used by ``stats``; its kernels remain the building
blocks of the others.
"""

from __future__ import annotations

import numpy as np

from . import _moments_nb as nb
from . import exact_state as xs
from . import repro_state as rs
from ._engine import ensure_compiled, signature_of

__all__ = ["empty_state", "empty_int_state", "block_state", "merge", "merge_int", "finalize"]

def empty_state(k: int, exact: bool = False) -> np.ndarray:
    """The state of zero elements for ``k`` columns (the exact one if ``exact``)."""
    return xs.empty_state(k) if exact else rs.empty_state(k)


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


def block_state(block: np.ndarray, comm=None, with_ints: bool = False, exact: bool = False,
                start: int = 0, fold=None):
    """The state of a ``(rows, k)`` block whose first row is global row ``start``;
    ``(state, int_state or None)``.

    Collective the first time a dtype is seen (the kernel is compiled once per node).
    ``exact``: the correctly rounded state (:mod:`.exact_state`). ``fold``: the
    reproducible state's fused folding kernel (:func:`.repro_state.block_state`).
    """
    unsigned = block.dtype.kind == "u"
    block = _as_kernel_input(block)
    k = block.shape[1]
    ints = None
    if with_ints:
        ints = empty_int_state(k, unsigned)
        ensure_compiled(nb.int_extras, signature_of(block, ints), comm)
        nb.int_extras(block, ints)
    if exact:
        return xs.block_state(block, comm), ints
    return rs.block_state(block, start, comm, fold=fold), ints


def merge(a, b):
    """Combine the states of two adjacent row ranges (lower first): the reproducible
    merge, or integer additions for exact states."""
    if xs.is_exact(a):
        return xs.merge(a, b)
    return rs.merge(a, b)


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
    return rs.finalize(state, ints, ddof, skipna)
