"""The reproducible moment state (the default of ``hp.stats``): bit-identical results for
any rank count, block size and thread count.

A state summarises a contiguous range of global rows ``[lo, hi)`` of a ``(rows, k)`` input
(see :mod:`._repro_nb` for the kernel): whole global chunks as a canonical forest of a
fixed merge tree (count, mean, M2, sum per column), order-free totals (count, NaN count,
infinite chunk sums) and min/max; the rows of a chunk only partly inside the range are
kept raw (at most one chunk of rows at each end) until a :func:`merge` with the
neighbouring range completes the chunk. So every chunk is summarised once, from all its
rows, by the same code, and the forest does not depend on where the range was cut:
``merge`` of adjacent ranges (left first) gives the same state value whatever pieces they
were built from.

Building blocks: :func:`empty_state`, :func:`block_state` (one block at a global row),
:func:`merge` (two adjacent ranges, lower first; an empty state is neutral),
:func:`finalize` (count, nan_count, sum, mean, var, std, min, max), :func:`pack` /
:func:`unpack` (a fixed-width byte row, for checkpoints).

Results: ``sum`` is the root of the tree (chunk sums added in double-double), ``mean``
that sum over the count, ``var`` the root M2 over ``count - ddof``, ``std = sqrt(var)``;
a zero min or max is ``+0.0``.
"""

from __future__ import annotations

import numpy as np

from . import _repro_nb as rn
from ._engine import ensure_compiled, map_threads, signature_of
from ._numba import get_threads

__all__ = ["ReproState", "empty_state", "block_state", "whole_rows", "merge", "finalize", "pack",
           "unpack", "packed_width", "is_repro"]

_FIELDS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")
MIN_THREAD_ROWS = 1 << 16


class ReproState:
    """The reproducible state of rows ``[lo, hi)`` of a ``k``-column input (see the
    module docstring). Treated as immutable: :func:`merge` returns a new state."""

    __slots__ = ("k", "lo", "hi", "lvl", "idx", "val", "top", "tot", "mm", "pieces")

    def __init__(self, k: int, lo: int = 0, hi: int = 0):
        self.k, self.lo, self.hi = int(k), int(lo), int(hi)
        self.lvl = np.zeros(rn.STACK, np.int64)
        self.idx = np.zeros(rn.STACK, np.int64)
        self.val = np.zeros((rn.STACK, self.k, rn.NODE))
        self.top = 0
        self.tot = np.zeros((self.k, rn.TWIDTH))
        self.mm = np.empty((self.k, 2))
        self.mm[:, 0], self.mm[:, 1] = np.inf, -np.inf
        self.pieces = []  # [(first global row, raw rows)], at most one at each end

    @property
    def rows_per_chunk(self) -> int:
        return rn.rows_per_chunk(self.k)

    def __getstate__(self):  # messages carry the stack's used part only
        t = self.top
        return (self.k, self.lo, self.hi, t, self.lvl[:t].copy(), self.idx[:t].copy(),
                self.val[:t].copy(), self.tot, self.mm, self.pieces)

    def __setstate__(self, st):
        k, lo, hi, t, lvl, idx, val, tot, mm, pieces = st
        self.__init__(k, lo, hi)
        self.top = t
        self.lvl[:t], self.idx[:t], self.val[:t] = lvl, idx, val
        self.tot[:], self.mm[:] = tot, mm
        self.pieces = list(pieces)

    def copy(self) -> "ReproState":
        out = ReproState(self.k, self.lo, self.hi)
        out.lvl[:], out.idx[:], out.val[:] = self.lvl, self.idx, self.val
        out.top = self.top
        out.tot[:], out.mm[:] = self.tot, self.mm
        out.pieces = list(self.pieces)
        return out


def is_repro(state) -> bool:
    """True for a reproducible (default) state."""
    return isinstance(state, ReproState)


def empty_state(k: int) -> ReproState:
    """The state of zero rows (neutral in :func:`merge`)."""
    return ReproState(k)


def _fold(state: ReproState, rows: np.ndarray, c0: int) -> None:
    """Fold whole chunks ``rows`` (starting at global chunk ``c0``) into ``state``."""
    state.top = int(rn.fold_chunks(rows, c0, state.lvl, state.idx, state.val, state.top,
                                   state.tot, state.mm))


_SIGS: dict = {}  # kernel input dtype and shape kind -> the three kernels' signatures


def _signatures(block: np.ndarray) -> list:
    k = block.shape[1]
    key = (block.dtype, k == 1)
    if key not in _SIGS:  # signature_of is costly next to a small block: type once
        s = ReproState(k)
        kern, arg = rn.fold_kernel(block[:0])
        _SIGS[key] = [
            (kern, signature_of(arg, 0, s.lvl, s.idx, s.val, 0, s.tot, s.mm,
                                np.zeros((1, k, rn.NODE)))),
            (rn.push_nodes, signature_of(s.lvl, s.idx, s.val, 0, s.lvl, s.idx, s.val, 0)),
            (rn.reduce_nodes, signature_of(s.val, 0, np.zeros((1, k, rn.NODE))))]
    return _SIGS[key]


def _compile(block: np.ndarray, comm) -> None:
    for kern, sig in _signatures(block):
        ensure_compiled(kern, sig, comm)


def whole_rows(n: int, k: int, start: int) -> tuple[int, int]:
    """``(h0, h1)``: rows ``[h0, h1)`` of an ``n``-row block whose first row is global row
    ``start`` are the whole chunks that :func:`block_state` folds (the rows before and
    after are kept raw; ``h0 == h1`` when there is no whole chunk)."""
    r = rn.rows_per_chunk(k)
    lo, hi = int(start), int(start) + int(n)
    a, b = -(-lo // r), hi // r
    h0 = min(hi, a * r) - lo
    return h0, max(h0, b * r - lo)


def block_state(block: np.ndarray, start: int, comm=None, fold=None) -> ReproState:
    """The state of the contiguous ``(rows, k)`` block (kernel input dtype) whose first row
    is global row ``start``. Whole chunks are folded (split over this rank's threads
    at chunk boundaries when large); partial chunks at the ends are kept raw.

    ``fold(part, rows, c0, state)`` (optional) folds the whole chunks ``rows`` (from global
    chunk ``c0``; ``part``: the index of the thread's range) into ``state`` and returns
    its new top, as :func:`._repro_nb.fold_chunks` does (a fused kernel that does more
    work on the rows while they are in the cache).

    Collective the first time a dtype is seen (the kernels are compiled once per node).
    """
    n, k = block.shape
    _compile(block, comm)
    r = rn.rows_per_chunk(k)
    lo = int(start)
    h0, h1 = whole_rows(n, k, start)
    parts = []
    if h0 > 0:
        parts.append(_raw(k, lo, block[:h0]))
    if h1 > h0:
        a = (lo + h0) // r
        chunks = (h1 - h0) // r
        t = max(1, min(get_threads(), (chunks * r) // MIN_THREAD_ROWS))
        cuts = [a + chunks * i // t for i in range(t + 1)]
        part = {ca: i for i, ca in enumerate(cuts[:-1])}

        def run(ca, cb):
            s = ReproState(k, ca * r, cb * r)
            rows = block[ca * r - lo:cb * r - lo]
            if fold is None:
                _fold(s, rows, ca)
            else:
                s.top = int(fold(part[ca], rows, ca, s))
            return s
        parts += map_threads(run, list(zip(cuts[:-1], cuts[1:])))
    if h1 < n:
        parts.append(_raw(k, lo + h1, block[h1:]))
    state = ReproState(k, lo, lo)
    for p in parts:
        state = merge(state, p)
    return state


def _raw(k: int, lo: int, rows: np.ndarray) -> ReproState:
    s = ReproState(k, lo, lo + rows.shape[0])
    s.pieces = [(lo, rows.copy())]  # blocks may be reused buffers: keep a copy
    return s


def merge(a: ReproState, b: ReproState) -> ReproState:
    """The state of ``a``'s rows followed by ``b``'s (``a.hi == b.lo``; an empty state is
    neutral). A chunk split between them is completed and folded here."""
    if a.hi == a.lo:
        return b
    if b.hi == b.lo:
        return a
    if a.hi != b.lo or a.k != b.k:
        raise ValueError(f"reproducible states do not join: rows [{a.lo}, {a.hi}) then "
                         f"[{b.lo}, {b.hi}) ({a.k} and {b.k} columns)")
    r = a.rows_per_chunk
    out = a.copy()
    out.hi = b.hi
    out.tot += b.tot
    np.minimum(out.mm[:, 0], b.mm[:, 0], out=out.mm[:, 0])
    np.maximum(out.mm[:, 1], b.mm[:, 1], out=out.mm[:, 1])
    left, right = list(a.pieces), list(b.pieces)
    middle = []
    if a.hi % r:  # a chunk straddles the cut: a's last piece + b's first piece
        (s1, r1), (_, r2) = left.pop(), right.pop(0)
        rows = np.concatenate([r1, r2])
        if s1 % r == 0 and rows.shape[0] == r:
            _fold(out, rows, s1 // r)
        else:
            middle = [(s1, rows)]
    if b.top:
        out.top = int(rn.push_nodes(out.lvl, out.idx, out.val, out.top, b.lvl, b.idx, b.val,
                                    b.top))
    out.pieces = left + middle + right
    return out


def _root(state: ReproState) -> tuple:
    """(totals, min/max, root node values per column): every partial chunk
    left at the ends (the input's first or last chunk) folded as a short chunk."""
    k, r = state.k, state.rows_per_chunk
    tail = ReproState(k)
    before, after = [], []
    for start, rows in state.pieces:
        leaf = ReproState(k)
        _fold(leaf, rows, start // r)
        tail.tot += leaf.tot
        np.minimum(tail.mm[:, 0], leaf.mm[:, 0], out=tail.mm[:, 0])
        np.maximum(tail.mm[:, 1], leaf.mm[:, 1], out=tail.mm[:, 1])
        # an unaligned piece is the range's head (before the forest), an aligned one its tail
        (before if start % r else after).append(leaf.val[:1])
    val = np.ascontiguousarray(np.concatenate(before + [state.val[:state.top]] + after))
    out = np.zeros((1, k, rn.NODE))
    rn.reduce_nodes(np.ascontiguousarray(val), val.shape[0], out)
    mm = np.stack([np.minimum(state.mm[:, 0], tail.mm[:, 0]),
                   np.maximum(state.mm[:, 1], tail.mm[:, 1])], axis=1)
    return state.tot + tail.tot, mm, out[0]


def finalize(state: ReproState, ints=None, ddof: int = 0, skipna: bool = False) -> dict:
    """count, nan_count, sum, mean, var, std, min, max (arrays over the k columns).

    Like numpy: without ``skipna`` a NaN makes every value except the counts NaN and
    ``count`` includes the NaNs; with ``skipna`` NaNs are left out (``np.nan*``).
    Integer data: ``ints`` (exact integer sum, min, max) replace sum, min and max.
    """
    tot, mm, root = _root(state)
    k = state.k
    s, mean, var = np.empty(k), np.empty(k), np.empty(k)
    cnt = tot[:, rn.T_COUNT]
    for j in range(k):
        n = int(cnt[j])
        pinf, ninf, nans = tot[j, rn.T_PINF], tot[j, rn.T_NINF], tot[j, rn.T_NANSUM]
        if nans or (pinf and ninf):
            s[j] = mean[j] = np.nan
        elif pinf or ninf:
            s[j] = mean[j] = np.inf if pinf else -np.inf
        else:
            s[j] = root[j, 4] + root[j, 5]
            mean[j] = s[j] / n if n else np.nan
        bad = nans or pinf or ninf or n <= ddof
        var[j] = np.nan if bad else root[j, 3] / (n - ddof)
    nan = tot[:, rn.T_NAN].astype(np.int64)
    with np.errstate(invalid="ignore"):
        std = np.sqrt(var)
    out = {"count": (cnt + (0 if skipna else nan)).astype(np.int64), "nan_count": nan,
           "sum": s, "mean": mean, "var": var, "std": std,
           "min": np.where(cnt > 0, mm[:, 0] + 0.0, np.nan),  # -0.0 -> +0.0: order-free
           "max": np.where(cnt > 0, mm[:, 1] + 0.0, np.nan)}
    if ints is not None:
        out["sum"] = ints[:, 0].copy()
        if (cnt > 0).all():
            out["min"], out["max"] = ints[:, 1].copy(), ints[:, 2].copy()
    if not skipna and (nan > 0).any():
        for key in _FIELDS[2:]:
            out[key] = np.where(nan > 0, np.nan, out[key])
    return out


# checkpoints: one fixed-width byte row per rank --------------------------------------
_HEADER = 8  # int64: version, k, lo, hi, top, pieces, itemsize, dtype kind
_VERSION = 1


def packed_width(k: int) -> int:
    """Bytes of :func:`pack`'s row for ``k`` columns (inputs of up to 8-byte items)."""
    r = rn.rows_per_chunk(k)
    return 8 * (_HEADER + 4 + 2 * rn.STACK + rn.STACK * k * rn.NODE + k * rn.TWIDTH
                + 2 * k) + 2 * r * k * 8


def pack(state: ReproState) -> np.ndarray:
    """``state`` as a uint8 row of :func:`packed_width` bytes (raw pieces in their dtype)."""
    k, t = state.k, state.top
    dt = state.pieces[0][1].dtype if state.pieces else np.dtype(np.float64)
    head = np.array([_VERSION, k, state.lo, state.hi, t, len(state.pieces), dt.itemsize,
                     ord(dt.kind)], np.int64)
    starts = np.zeros(4, np.int64)
    for i, (s, rows) in enumerate(state.pieces):
        starts[2 * i], starts[2 * i + 1] = s, rows.shape[0]
    parts = [head, starts, state.lvl, state.idx, state.val, state.tot, state.mm]
    body = b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
    body += b"".join(np.ascontiguousarray(rows).tobytes() for _, rows in state.pieces)
    out = np.zeros(packed_width(k), np.uint8)
    out[:len(body)] = np.frombuffer(body, np.uint8)
    return out


def unpack(row: np.ndarray) -> ReproState:
    """The state :func:`pack` wrote (``ValueError`` if ``row`` is not one)."""
    row = np.ascontiguousarray(row, np.uint8).reshape(-1)
    head = row[:8 * _HEADER].view(np.int64)
    if head[0] != _VERSION or head[1] < 1 or row.size != packed_width(int(head[1])):
        raise ValueError("not a reproducible stats state of this version")
    k = int(head[1])
    if not (0 <= head[4] <= rn.STACK and 0 <= head[5] <= 2 and head[2] <= head[3]
            and head[6] in (1, 2, 4, 8) and chr(int(head[7])) in "fiub"):
        raise ValueError("not a reproducible stats state (bad header)")
    s = ReproState(k, int(head[2]), int(head[3]))
    s.top = int(head[4])
    pos = 8 * _HEADER

    def take(arr):
        nonlocal pos
        n = arr.nbytes
        arr[...] = row[pos:pos + n].view(arr.dtype).reshape(arr.shape)
        pos += n
    starts = np.zeros(4, np.int64)
    for arr in (starts, s.lvl, s.idx, s.val, s.tot, s.mm):
        take(arr)
    dt = np.dtype(f"{chr(int(head[7]))}{int(head[6])}")
    for i in range(int(head[5])):
        if not 0 < starts[2 * i + 1] < rn.rows_per_chunk(k):
            raise ValueError("not a reproducible stats state (bad piece)")
        rows = np.empty((int(starts[2 * i + 1]), k), dt)
        take(rows)
        s.pieces.append((int(starts[2 * i]), rows))
    return s
