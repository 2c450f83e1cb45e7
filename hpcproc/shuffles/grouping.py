"""Distributed group-by with mergeable aggregates: sum, mean, count, min, max, size.

Two strategies, chosen from the data (``strategy="auto"``):

``dense``
    One integer (or bool) key whose global range ``max - min + 1`` is at most
    ``dense_limit`` (default ``DENSE_LIMIT``, and never more than the number of rows
    plus 2**16): every rank aggregates into arrays indexed by ``key - min`` in one
    compiled pass per value column (row counts as int32, in chunks of fewer than 2**31
    rows: the random-access state is what the pass costs; beyond ``SPLIT_STATE`` bytes of
    state the rows are counted beside the first column's sums, one 16-byte pair per
    group, or in a pass of their own when that column has min/max or unsigned sums;
    min/max only when asked for; NaN counts only where NaNs are). One small
    ``Allreduce`` of a bitmap of the groups seen splits the non-empty groups evenly over
    the ranks; one ``Reduce_scatter`` per state then sums each rank's share onto it (row
    counts as int32 while the rows of all ranks stay below 2**31, else int64). No shuffle.
``hash``
    Otherwise: every rank pre-aggregates its rows into one partial state per distinct
    key (so a heavy key costs one row per rank, not millions), finding the groups by a
    compiled radix sort of the keys (:func:`._localsort.sorted_groups`), not a hash
    table: with many groups every hash-table access is a cache and TLB miss, while the
    sort's passes run in cache, and the groups come out sorted. Sorted, the states bound
    for each rank (sampled splitters; equal keys meet on one rank) are one slice, sent
    as it is (:func:`._exchange.exchange_runs`); every rank then merges the sorted runs
    it received, equal keys once (:func:`._merge.merge_groups`), and folds the received
    states into their groups in received order.

Output order (both strategies): one row per distinct key, globally sorted by key in rank
order (NaN keys last, all NaNs one group), keys in their input dtype. Aggregates skip
NaN values like pandas: ``count`` counts non-NaN values, ``sum`` of none is 0, ``mean``,
``min`` and ``max`` of none are NaN. ``size`` counts rows. Sums of integers are int64
(uint64 for unsigned), of floats float64; ``mean`` is float64; ``min``/``max`` keep the
value dtype. Output columns: the keys, then ``f"{column}_{agg}"`` in the order asked
(``count`` for :meth:`GroupBy.size`); a key column with one of those names is a
``ValueError`` (its values would be replaced).
"""

from __future__ import annotations

import time

import numpy as np
from mpi4py import MPI

from ..agreement import agree
from ..comm import agreed, check_all, fail_together, lib_comm, raised_on_all_ranks
from ..partition import block_range
from ._encode import check_key_dtype, decode_key, encode_keys
from ._exchange import MAX_MESSAGE, check_alloc, check_limits, exchange_runs
from ._localsort import sorted_groups
from ._merge import merge_groups, run_counts
from ._reduce import (
    dense_count,
    dense_pairs,
    dense_states,
    gid_merge_states,
    gid_sum,
    key_range,
    seg_agg_states,
)
from ._result import ARRAY_COLUMN, as_columns, key_list, make_result
from .range import splitters

__all__ = ["groupby", "GroupBy", "AGGREGATES", "DENSE_LIMIT"]

AGGREGATES = ("sum", "mean", "count", "min", "max", "size")
STRATEGIES = ("auto", "dense", "hash")
#: Largest key range aggregated densely (arrays of this length, allreduced).
DENSE_LIMIT = 1 << 22
#: Most rows per pass of the dense kernels: their row counts are int32 (half the cache
#: footprint of int64 ones), added into int64 counts between chunks.
COUNT_CHUNK = (1 << 31) - 1
#: Random-access state (row counts + the first column's sums, bytes) above which the rows
#: are not counted in int32 beside separate sums: two passes over the keys, each with half
#: the state, beat one pass once the state spills out of the L2 cache (2 ranks sharing an
#: L3, 2^25 rows each: 2^20 groups 0.24 s against 0.33-0.35 s; 2^18 groups 0.13 against
#: 0.15; 2^16 groups, in L2: 0.11 against 0.09; Zipf keys over 2^20 groups, hot in the
#: cache: 0.21 against 0.20), and one pass over 16-byte pairs of sum and count (one
#: cache line per row) beats the two passes when the first column has no min/max (CPU time of the
#: passes, 2^25 rows, 4 KiB pages, medians of 7-9: 2^20 groups 1.16-1.17x uniform,
#: 1.27-1.28x Zipf; 2^18-2^19 groups 0.95-1.06x uniform, 1.29-1.48x Zipf; docs/shuffles.md)
SPLIT_STATE = 2 << 20


def _acc_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64 if dtype.kind == "f" else np.uint64 if dtype.kind == "u"
                    else np.int64)


def _init_states(n: int, acc: np.dtype, minmax: bool = True):
    """(count, sum, min, max) arrays of ``n`` groups; min/max empty unless ``minmax``."""
    m = n if minmax else 0
    big = np.inf if acc.kind == "f" else np.iinfo(acc).max
    small = -np.inf if acc.kind == "f" else np.iinfo(acc).min
    return (np.zeros(n, np.int64), np.zeros(n, acc), np.full(m, big, acc), np.full(m, small, acc))


def _minmax(aggs) -> bool:
    return "min" in aggs or "max" in aggs


class GroupBy:
    """Rows of a distributed table grouped by key columns; see :func:`groupby`.

    Not collective to create; :meth:`agg` and :meth:`size` are collective.
    """

    def __init__(self, data, by, comm=None, *, strategy: str = "auto",
                 dense_limit: int = DENSE_LIMIT, memory_budget: int | None = None,
                 max_message: int = MAX_MESSAGE):
        self.data, self.by, self.comm = data, by, comm
        self.strategy, self.dense_limit = strategy, int(dense_limit)
        self.memory_budget, self.max_message = memory_budget, max_message

    def size(self, name: str = "count"):
        """Rows per group: the keys and a column ``name`` (int64; a key column of that
        name is a ``ValueError``; a name that is not a non-empty string a ``TypeError``/
        ``ValueError``). Collective."""
        return self._run({}, str(name) if isinstance(name, str) else name)

    def agg(self, spec=None, **named):
        """Aggregate value columns: ``agg(val=["sum", "mean"], w="max")``. Collective.

        ``spec`` may be the same mapping passed positionally. Aggregates: ``sum``,
        ``mean``, ``count``, ``min``, ``max`` (NaN skipped) and ``size`` (rows).
        """
        spec = dict(spec or {}, **named)
        return self._run({k: [v] if isinstance(v, str) else list(v) for k, v in spec.items()})

    # ------------------------------------------------------------------------------
    def _validate(self, columns, kind, spec, count):
        if not isinstance(count, str):  # str() would make None a column 'None'
            raise TypeError(f"size: name must be a string, got {count!r}")
        if not count:
            raise ValueError("size: name must not be empty")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        check_limits(self.memory_budget, self.max_message)
        if kind == "array" and self.by is None:
            names = [ARRAY_COLUMN]
        else:
            names = key_list(self.by, columns)
        for name in names:
            check_key_dtype(name, columns[name])
        for col, aggs in spec.items():
            if col not in columns:
                raise KeyError(f"no column {col!r} to aggregate (columns: {list(columns)})")
            if columns[col].ndim != 1 or columns[col].dtype.kind not in "biuf":
                raise TypeError(f"column {col!r} must be a 1-D numeric column")
            bad = [a for a in aggs if a not in AGGREGATES]
            if bad or not aggs:
                raise ValueError(f"aggregates must be among {AGGREGATES}, got {aggs}")
        if self.strategy == "dense" and (len(names) != 1 or columns[names[0]].dtype.kind == "f"):
            raise ValueError("strategy='dense' needs one integer key column")
        outputs = [f"{c}_{a}" for c, aggs in spec.items() for a in aggs] or [count]
        for name in names:
            if name in outputs:  # it would silently replace the key values
                raise ValueError(f"the output column {name!r} has the name of the key column "
                                 f"{name!r}: rename the key column")
        return names

    def _run(self, spec, count="size"):
        agree(self.comm, "hp.groupby", {  # every rank groups the same way (collective)
            "data": self.data, "by": self.by, "strategy": self.strategy, "spec": spec,
            "count": count, "dense_limit": self.dense_limit, "memory_budget": self.memory_budget,
            "max_message": self.max_message}, local=("data",))
        columns, comm, kind = as_columns(self.data, self.comm, "group-by input")
        names = check_all(lambda: self._validate(columns, kind, spec, count), comm)
        lc = lib_comm(comm)
        t0 = time.perf_counter()
        values = {c: columns[c] for c in spec}
        # the mean of integers is taken from a float64 sum, as numpy's mean is (their
        # integer sum wraps, like numpy's sum): a float64 copy travels as one more value
        floats = {c: f"\0float64 {c}" for c, aggs in spec.items()
                  if "mean" in aggs and columns[c].dtype.kind in "biu"}
        values.update({f: columns[c].astype(np.float64) for c, f in floats.items()})
        spec_all = {**spec, **{f: ["sum"] for f in floats.values()}}
        dense, key = None, columns[names[0]]
        if len(names) == 1 and key.dtype.kind in "biu" and self.strategy != "hash":
            key = _native(key)  # once, for both dense passes
            dense = self._dense_range(key, lc)
        if self.strategy == "dense" and dense is None:
            dense = (0, -1, 0)  # no rows anywhere: an empty result
        if self.strategy == "dense" and dense[1] - dense[0] >= self.dense_limit:
            raise agreed(ValueError(  # the same gathered range on every rank
                f"strategy='dense': the key range {dense[0]}..{dense[1]} spans more than "
                f"dense_limit={self.dense_limit} groups; use strategy='hash' or a larger "
                "dense_limit"))
        how = "dense" if dense is not None else "hash"
        rounds, out, error = 0, {}, None
        try:
            if dense is not None:
                keys, size, states = self._dense(key, values, spec_all, dense, lc)
                # in the key's own dtype, byte order included (as the hash strategy's)
                keys = [keys[0].astype(columns[names[0]].dtype, copy=False)]
            else:
                keys, size, states, rounds = self._hash(columns, names, values, spec_all,
                                                        comm)
            out = dict(zip(names, keys))
            for col, aggs in spec.items():
                cnt, sm, mn, mx = states[col]
                dtype = columns[col].dtype
                for a in aggs:
                    if a == "mean" and col in floats:  # the float64 sum of the values
                        fcnt, fsum = states[floats[col]][:2]
                        out[f"{col}_{a}"] = _finish(a, fcnt, fsum, None, None, size, dtype)
                    else:
                        out[f"{col}_{a}"] = _finish(a, cnt, sm, mn, mx, size, dtype)
            if not spec:
                out[count] = size  # the rows per group: size(), or agg() of nothing
        except Exception as err:  # noqa: BLE001 - a local failure after the last collective
            if raised_on_all_ranks(err):  # agreed already (every rank raises it)
                raise
            error = err  # agreed in the result's row counts
        return make_result(out, comm, "table", {
            "strategy": how, "rounds": rounds, "seconds": time.perf_counter() - t0},
            error=error, what="group-by")

    def _dense_range(self, key, lc):
        """``(min, max, rows)`` of the key over all ranks, or None: not dense."""
        mine = (*_key_range(key), key.shape[0]) if key.size else None
        seen = [b for b in lc.allgather(mine) if b is not None]  # one collective
        if not seen:
            return None if self.strategy != "dense" else (0, -1, 0)
        lo, hi = min(b[0] for b in seen), max(b[1] for b in seen)
        total = sum(b[2] for b in seen)
        span = hi - lo + 1
        if self.strategy == "dense" or span <= min(self.dense_limit, total + (1 << 16)):
            return lo, hi, total
        return None

    @staticmethod
    def _dense(key, values, spec, bounds, lc):
        values = {c: _native(v) for c, v in values.items()}  # the key is native already
        lo, hi, total = bounds
        span = max(0, hi - lo + 1)
        # the key is used as it is (no group-id copy): a uint64 key and its low bound
        # as int64 bits, so that key - lo wraps to the right group
        kw = key.view(np.int64) if key.dtype == np.uint64 else key
        lw = lo - (1 << 64) if lo >= 1 << 63 else lo
        cols = list(values.items())
        # a rank that fails locally (an allocation: MemoryError) must not leave the
        # others waiting: its failure rides on the bitmap's Allreduce, and the outputs
        # of every Reduce_scatter are made and agreed on before the first of them
        rows = arrays = bitmap = None
        try:
            rows, arrays, nans = _dense_local(kw, lw, cols, spec, span, total > COUNT_CHUNK)
            bitmap = _dense_bitmap(rows, nans)
        except Exception as err:  # noqa: BLE001 - agreed in the bitmap's Allreduce
            failed = err
        else:
            failed = None
        cuts, nans = _dense_split(bitmap, span, len(cols), lc, failed)
        lo_k = int(cuts[lc.Get_rank()])
        # every state is reduced onto the rank that outputs its groups (Reduce_scatter),
        # NaN counts only for the columns where some rank saw a NaN
        ops = (MPI.SUM, MPI.SUM, MPI.MIN, MPI.MAX)
        jobs = [(rows, MPI.SUM)] + [(None if a is None or (i == 1 and not nans[j]) else a, op)
                                    for j, arrs in enumerate(arrays)
                                    for i, (a, op) in enumerate(zip(arrs, ops))]
        try:
            ready = [None if a is None else _scatter_buffers(a, cuts, op, lc)
                     for a, op in jobs]
        except Exception as err:  # noqa: BLE001 - agreed before the first Reduce_scatter
            failed = err
        check_alloc(lc, failed, "group-by")
        del rows, arrays, jobs
        done = [None if r is None else _reduce_scatter(*r, cuts, lc) for r in ready]
        del ready
        size = done[0].astype(np.int64)  # after the last collective: agreed in the result
        mine = [done[1 + 4 * j:5 + 4 * j] for j in range(len(cols))]
        present = np.flatnonzero(size)
        # every group seen (uniform keys): the states as they are, no gathers
        take = slice(None) if present.shape[0] == size.shape[0] else present
        size = size[take]
        states = {}
        for (col, _), (sm, nan, mn, mx) in zip(cols, mine):
            cnt = size.copy() if nan is None else size - nan[take]
            states[col] = (cnt, sm[take],
                           *(np.empty(0) if m is None else m[take] for m in (mn, mx)))
        keys = [(present + lo_k + lw).view(np.uint64) if key.dtype == np.uint64  # wraps
                else (present + lo_k + lo).astype(key.dtype)]
        return keys, size, states

    def _hash(self, columns, names, values, spec, comm):
        # a rank that fails locally (an allocation: MemoryError) before the splitters'
        # or the exchange's collectives hands its error to them: it is raised on every
        # rank (hpcproc.comm.fail_together), no rank is left waiting
        error, part, keycols, keys = None, {}, None, None
        try:
            K, flip = _key_words([columns[k] for k in names])
            # one key and one value column: the values ride along in the sort (no gather)
            carry = len(names) == 1 and len(values) == 1
            payload = {c: v.astype(_acc_dtype(v.dtype), copy=False) for c, v in values.items()}
            perm, starts, keys = sorted_groups(K, flip, *payload.values() if carry else ())
            if carry:
                payload, perm = {c: perm for c in payload}, np.empty(0, np.int64)
            del K
            ng = keys.shape[0]
            part = {f"k{j}": np.ascontiguousarray(keys[:, j]) for j in range(len(names))}
            part["size"] = np.diff(starts)
            for col, v in values.items():
                acc, mm = _acc_dtype(v.dtype), _minmax(spec[col])
                st = _init_states(ng, acc, mm)
                seg_agg_states(perm, starts, payload[col], *st, mm)
                for s, arr in zip(("cnt", "sum", "min", "max"), st[:4 if mm else 2]):
                    part[f"{s}:{col}"] = arr
            del perm, starts, payload
            st = arr = None  # the states live on in part only (freed as they are sent)
            keycols = [part[f"k{j}"] for j in range(len(names))]
        except Exception as err:  # noqa: BLE001 - agreed in the splitters' first collective
            error, part = err, {}
        # the partial states are sorted by key: the rows bound for each rank are one slice
        S = splitters(keycols, comm, tiebreak=False, error=error, what="group-by")
        del keycols
        size = lib_comm(comm).Get_size()
        try:
            counts = run_counts(keys, S, size)
        except Exception as err:  # noqa: BLE001 - agreed in the exchange's counts
            error, counts = err, np.zeros(size, np.int64)
        del keys
        # part's columns are freed as they move, and got's once merged: the peak memory
        # is about one copy of the states, not three (fewer new pages to fault in)
        got, info = exchange_runs(part, counts, comm, memory_budget=self.memory_budget,
                                  max_message=self.max_message, consume=True, error=error)
        del part
        K2 = got.pop("k0").reshape(-1, 1) if len(names) == 1 else \
            np.ascontiguousarray(np.stack([got.pop(f"k{j}") for j in range(len(names))], axis=1))
        # one sorted run of distinct keys from every rank: merged, equal keys combined,
        # states folded in input order (no sorting permutation, no random gathers)
        keys, gid = merge_groups(K2, info["received"])
        del K2
        ng = keys.shape[0]
        size = np.zeros(ng, np.int64)
        gid_sum(gid, got.pop("size"), size)
        states = {}
        for col, v in values.items():
            mm = _minmax(spec[col])
            st = _init_states(ng, _acc_dtype(v.dtype), mm)
            parts = [got.pop(f"{s}:{col}") for s in ("cnt", "sum")]
            parts += [got.pop(f"{s}:{col}") for s in ("min", "max")] if mm else list(st[2:])
            gid_merge_states(gid, *parts, *st, mm)
            del parts
            states[col] = st
        out = [decode_key(keys[:, j], columns[k].dtype) for j, k in enumerate(names)]
        return out, size, states, info["rounds"]


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` as the dense kernels take it: native byte order, C-contiguous, float16 as
    float32 (exact: the sums are float64 and min/max go back to float16)."""
    dtype = np.dtype(np.float32) if a.dtype == np.float16 else a.dtype.newbyteorder("=")
    return np.ascontiguousarray(a, dtype=dtype)


def _key_range(key: np.ndarray) -> tuple[int, int]:
    """``(min, max)`` of a non-empty native integer or bool key, in one compiled pass."""
    key = key.view(np.uint8) if key.dtype == np.bool_ else key
    out = np.empty(2, key.dtype)
    key_range(key, out)
    return int(out[0]), int(out[1])


def _dense_local(kw, lw, cols, spec, span, wide):
    """``(rows, arrays, nans)``: one rank's dense states of the key ``kw`` (group ``kw -
    lw``; see :meth:`GroupBy._dense`): the rows per group (int64 when ``wide``, else
    int32), ``[sum, nan counts, min, max]`` per value column (min/max None unless asked
    for) and the NaNs seen per column. One pass per value column over chunks of
    ``COUNT_CHUNK`` rows (one chunk below 2**31 rows); the first column counts rows. When
    the state exceeds ``SPLIT_STATE`` bytes, it counts them beside its sums in one array
    of pairs (:func:`._reduce.dense_pairs`: 64-bit counts, no chunk limit), or, when it
    has min/max or unsigned sums, a pass of their own does."""
    n = kw.shape[0]
    step = COUNT_CHUNK  # wide: more rows than that on all ranks together
    arrays = []
    for col, v in cols:
        acc, mm = _acc_dtype(v.dtype), _minmax(spec[col])
        nan = np.zeros(span, np.int64)  # pages touched only where NaNs are
        mn, mx = _init_states(span, acc)[2:] if mm else (None, None)
        arrays.append([None, nan, mn, mx])
    # beyond SPLIT_STATE: the rows counted beside the first column's sums (one array of
    # pairs), or in a pass of their own when that column has min/max or unsigned sums
    alone = not cols or span * (4 + 8) > SPLIT_STATE
    pair = alone and bool(cols) and arrays[0][2] is None and \
        _acc_dtype(cols[0][1].dtype).kind in "if"
    st = np.zeros(2 * span, _acc_dtype(cols[0][1].dtype)) if pair else None
    for j, (_, v) in enumerate(cols):
        if not (pair and j == 0):
            arrays[j][0] = np.zeros(span, _acc_dtype(v.dtype))
    rows = None if pair else np.zeros(span, np.int64 if wide else np.int32)
    part = np.zeros(span, np.int32) if wide and not pair else rows
    nans = np.zeros(len(cols), np.int64)
    no_rows = np.zeros(0, np.int32)
    for a in range(0, n, step):
        k = kw[a:a + step]
        if part is not rows:
            part[:] = 0
        if alone and not pair:
            dense_count(k, lw, part)
        for j, ((_, v), (sm, nan, mn, mx)) in enumerate(zip(cols, arrays)):
            if pair and j == 0:
                nans[0] += dense_pairs(k, lw, v[a:a + step], st, nan)
                continue
            none = sm[:0]
            count = j == 0 and not alone
            nans[j] += dense_states(k, lw, v[a:a + step], part if count else no_rows, sm,
                                    nan, none if mn is None else mn,
                                    none if mx is None else mx, count, mn is not None)
        if part is not rows:
            rows += part
    if pair:  # the pairs apart: counts in the type the reduction sends, sums contiguous
        rows = st[1::2].astype(np.int64 if wide else np.int32)
        arrays[0][0] = st[0::2].copy()
    return rows, arrays, nans


def _dense_bitmap(rows, nans) -> np.ndarray:
    """This rank's part of :func:`_dense_split`'s ``Allreduce``: a bitmap of the groups
    it saw (1 bit per group), its NaN counts, then a zero byte (the failure flag)."""
    return np.concatenate([np.packbits(rows != 0), nans.view(np.uint8),
                           np.zeros(1, np.uint8)])


def _dense_split(buf, span: int, ncols: int, lc, failed=None):
    """``(cuts, nans)``: rank r outputs the groups ``[cuts[r], cuts[r + 1])`` (the
    non-empty groups split evenly over the ranks, in key order); ``nans[j]``: whether
    some rank saw a NaN in value column j. One ``Allreduce`` (bitwise or) of
    :func:`_dense_bitmap`'s buffer; ``failed``: this rank's exception instead of a buffer
    (it sends zeros and the flag; every rank raises it, :func:`hpcproc.comm.fail_together`)."""
    nbits = -(-span // 8)
    if failed is not None:
        buf = np.zeros(nbits + 8 * ncols + 1, np.uint8)
        buf[-1] = 1
    lc.Allreduce(MPI.IN_PLACE, buf, op=MPI.BOR)
    if buf[-1]:
        fail_together(failed, "group-by", lc)
    present = np.flatnonzero(np.unpackbits(buf[:nbits], count=span))
    size = lc.Get_size()
    firsts = [block_range(present.shape[0], size, r)[0] for r in range(1, size)]
    cuts = [0] + [int(present[f]) if f < present.shape[0] else span for f in firsts] + [span]
    return np.array(cuts, np.int64), buf[nbits:nbits + 8 * ncols].view(np.int64) != 0


def _scatter_buffers(a, cuts, op, lc):
    """``(a, out, top, op)`` of one :func:`_reduce_scatter`, made before it: MIN/MAX of
    unsigned integers as of signed ones with the top bit flipped (the same order; some
    MPIs compare unsigned 64-bit types as signed: Debian's MPICH 4.0 gave
    max(2**64 - 1, 7) = 7 here; flipped in place: ``a`` is this rank's own state, not
    used afterwards), and this rank's output."""
    r = lc.Get_rank()
    top = np.array(1 << (8 * a.dtype.itemsize - 1), a.dtype) \
        if a.dtype.kind == "u" and op in (MPI.MIN, MPI.MAX) else None
    if top is not None:
        a ^= top
        a = a.view(a.dtype.str.replace("u", "i"))
    out = np.empty((int(cuts[r + 1] - cuts[r]),) + a.shape[1:], a.dtype)
    return a, out, top, op


def _reduce_scatter(a, out, top, op, cuts, lc):
    """Rows ``[cuts[r], cuts[r + 1])`` of the elementwise ``op`` of every rank's ``a``
    on rank r, into ``out`` (one ``Reduce_scatter``; buffers from
    :func:`_scatter_buffers`). Allocates nothing: the next one may follow."""
    per_row = int(np.prod(a.shape[1:], dtype=np.int64))
    lc.Reduce_scatter(a, out, [int(c) * per_row for c in np.diff(cuts)], op=op)
    if top is None:
        return out
    out = out.view(top.dtype)
    out ^= top
    return out


def _key_words(cols):
    """``(K, flip)``: the key columns as a uint64 matrix whose rows ``^ flip`` are the
    encoded keys (:mod:`._encode`). One native 64-bit integer column is used as it is (a
    view, flipped on the fly by the sort): encoding it would cost a copy of the column."""
    if len(cols) == 1 and cols[0].dtype.kind in "iu" and cols[0].itemsize == 8 \
            and cols[0].dtype.isnative and cols[0].flags.c_contiguous:
        flip = 1 << 63 if cols[0].dtype.kind == "i" else 0
        return cols[0].view(np.uint64).reshape(-1, 1), flip
    return encode_keys(cols), 0


def _finish(agg, cnt, sm, mn, mx, size, dtype):
    if agg == "size":
        return size
    if agg == "count":
        return cnt
    if agg == "sum":
        return sm
    if agg == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, sm / np.maximum(cnt, 1), np.nan)
    out = mn if agg == "min" else mx
    if dtype.kind == "f":
        return np.where(cnt > 0, out, np.nan).astype(dtype)
    return out.astype(dtype)


def groupby(data, by=None, comm=None, **options) -> GroupBy:
    """Group the rows of a table (or the values of a 1-D array) by key columns.

    Not collective itself; ``.agg(...)`` and ``.size()`` on the result are.

    Parameters
    ----------
    data : DistTable, DistArray or mapping of local columns
    by : str or list of str
        Key column(s) (an array is its own key).
    comm : mpi4py.MPI.Intracomm, optional
    strategy : {"auto", "dense", "hash"}
        See the module documentation; ``auto`` picks ``dense`` for one integer key of
        small range.
    dense_limit : int
        Largest key range aggregated densely (default ``DENSE_LIMIT`` = 2**22).
    memory_budget, max_message : int, optional
        For the exchange of partial aggregates.

    Example: ``hp.groupby(t, "key").agg(value=["sum", "count"])``.
    """
    return GroupBy(data, by, comm, **options)
