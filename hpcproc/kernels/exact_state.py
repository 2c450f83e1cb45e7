"""The exact (reproducible) moment state: merged with integer additions, finalized with
exact rational arithmetic.

A state is an int64 array ``(k, WIDTH)`` (see :mod:`._exact_nb`): counts, min and max
(float64 bits) and two fixed-point superaccumulators holding the sum of the values and
the sum of their squares *exactly*. Merging adds integers (associative and commutative),
so any order, block size, thread split or rank count gives the same state value, and:

* ``sum`` and ``mean`` are the exact sum and mean correctly rounded to float64;
* ``var`` is ``(n * S2 - S1**2) / (n * (n - ddof))`` evaluated exactly, correctly
  rounded; ``std`` is ``sqrt(var)`` (float64, deterministic);
* infinities and NaN follow numpy (``+inf`` and ``-inf`` together give NaN; ``var`` of
  data holding an infinity is NaN); an exactly zero sum, min or max is ``+0.0``.

The conversion to Python integers happens once per column at the end (cheap).
"""

from __future__ import annotations

import numpy as np

from . import _exact_nb as xn

__all__ = ["empty_state", "block_state", "merge", "finalize", "is_exact"]

empty_state = xn.empty_state
_FIELDS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def is_exact(state) -> bool:
    """True for an exact state (int64), False for the default one (float64)."""
    return isinstance(state, np.ndarray) and state.dtype == np.int64


def _squares_exact(dtype: np.dtype) -> bool:
    """float64 squares of these values are exact (float32, float16, integers < 2**16)."""
    return (dtype.kind == "f" and dtype.itemsize <= 4) or (
        dtype.kind in "iub" and dtype.itemsize <= 2)


def block_state(block: np.ndarray, comm=None) -> np.ndarray:
    """The exact state of a contiguous ``(rows, k)`` block (kernel input dtype).

    Collective the first time a dtype is seen (the kernel is compiled once per node).
    """
    from ._engine import ensure_compiled, map_threads, signature_of, split_rows
    n, k = block.shape
    sq = np.bool_(_squares_exact(block.dtype))
    ensure_compiled(xn.exact_2d, signature_of(block, empty_state(k), np.zeros((k, 2)), sq),
                    comm)

    def run(lo, hi):
        out = empty_state(k)
        mm = np.empty((k, 2))
        mm[:, 0], mm[:, 1] = np.inf, -np.inf
        xn.exact_2d(block[lo:hi], out, mm, sq)
        out[:, xn.MIN:xn.MAX + 1] = mm.view(np.int64)
        return out

    state = empty_state(k)
    for p in map_threads(run, split_rows(n)):
        state = merge(state, p)
    return state


def _normalize(bins: np.ndarray) -> None:
    """One parallel carry step in place: every bin but the top one ends in
    ``(-2**31, 2**33)`` (bins below ``2**34`` stay bounded however often states merge;
    the value is unchanged)."""
    c = bins[:, :-1] >> 32
    bins[:, :-1] -= c << 32
    bins[:, 1:] += c


def merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two exact states (integer additions: exact, any order)."""
    out = a + b
    fa, fb = a.view(np.float64), b.view(np.float64)
    out[:, xn.MIN] = np.minimum(fa[:, xn.MIN], fb[:, xn.MIN]).view(np.int64)
    out[:, xn.MAX] = np.maximum(fa[:, xn.MAX], fb[:, xn.MAX]).view(np.int64)
    _normalize(out[:, xn.S1:xn.S2])
    _normalize(out[:, xn.S2:])
    return out


def _integer(bins) -> int:
    """The integer ``sum(bins[i] * 2**(32 i))`` (exact Python int)."""
    return sum(int(v) << (32 * i) for i, v in enumerate(bins.tolist()) if v)


def _ratio(num: int, den: int) -> float:
    """``num / den`` correctly rounded (Python's int true division), +-inf beyond range."""
    try:
        return num / den
    except OverflowError:
        return float("inf") if (num > 0) == (den > 0) else float("-inf")


def _column(row, ddof: int) -> tuple:
    n, pinf, ninf = int(row[xn.COUNT]), int(row[xn.PINF]), int(row[xn.NINF])
    scale = 1 << -xn.BASE  # value = integer / scale
    i1 = _integer(row[xn.S1:xn.S2])
    if pinf and ninf:
        s = mean = np.nan
    elif pinf or ninf:
        s = mean = np.inf if pinf else -np.inf
    else:
        s = _ratio(i1, scale)
        mean = _ratio(i1, n * scale) if n else np.nan
    total = n + pinf + ninf
    if total <= ddof or pinf or ninf:
        var = np.nan
    else:
        i2 = _integer(row[xn.S2:])
        var = _ratio(n * i2 * scale - i1 * i1, n * (n - ddof) * scale * scale)
    return total, s, mean, var


def finalize(state: np.ndarray, ints=None, ddof: int = 0, skipna: bool = False) -> dict:
    """count, nan_count, sum, mean, var, std, min, max (arrays over the k columns), with
    the same NaN and integer rules as :func:`.moment_state.finalize`."""
    k = state.shape[0]
    cols = [_column(state[j], ddof) for j in range(k)]
    total = np.array([c[0] for c in cols], dtype=np.int64)
    nan = state[:, xn.NAN].astype(np.int64)
    f = state.view(np.float64)
    ext = np.where(state[:, xn.PINF] > 0, np.inf, f[:, xn.MAX]) + 0.0  # -0.0 -> +0.0:
    low = np.where(state[:, xn.NINF] > 0, -np.inf, f[:, xn.MIN]) + 0.0  # order-free
    var = np.array([c[3] for c in cols], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        std = np.sqrt(var)
    out = {"count": total + (0 if skipna else nan), "nan_count": nan,
           "sum": np.array([c[1] for c in cols], dtype=np.float64),
           "mean": np.array([c[2] for c in cols], dtype=np.float64), "var": var,
           "std": std, "min": np.where(total > 0, low, np.nan),
           "max": np.where(total > 0, ext, np.nan)}
    if ints is not None:
        out["sum"] = ints[:, 0].copy()
        if (total > 0).all():
            out["min"], out["max"] = ints[:, 1].copy(), ints[:, 2].copy()
    if not skipna and (nan > 0).any():
        for key in _FIELDS[2:]:
            out[key] = np.where(nan > 0, np.nan, out[key])
    return out
