"""Distributed equi-join of two tables on key columns: hash join or broadcast join.

Strategies (``strategy="auto"`` picks the first that applies):

``broadcast``
    When the right table's total size is at most ``broadcast_bytes`` (default
    ``BROADCAST_BYTES`` = 64 MiB; for ``how="inner"`` also when the left one is), the
    small table is all-gathered to every rank and joined with the local rows of the
    other one: the big side never moves.
``hash``
    Both tables are hash-partitioned on the keys with the bounded-memory exchange, so
    equal keys meet on one rank, then joined locally (both strategies) by a
    radix-partitioned hash join whose tables fit the cache (:mod:`._hashjoin`).

Output: the key columns (from the left table), the other left columns, then the other
right columns (a name already taken gets ``suffix``, default ``"_right"``). Every
matching (left, right) pair gives one row (many-to-many joins multiply). ``how="left"``
keeps left rows without a match once, with NaN in the right columns (NaT for datetime and
timedelta); right columns of integer or bool type are therefore float64 in a left join
(as in pandas), and other right columns (strings, bytes, structured) raise TypeError.
Row order on each rank: that of the side that probes the local table, a probe row's
matches in the other side's order. A broadcast of the right table keeps the left table's
order (matches in right order); a broadcast of the left table keeps the right table's;
the hash join is grouped by hash of the key: a left join (and an inner join where the
right side has at most as many rows on the rank) keeps the order in which left rows
arrive (by source rank, then source order), otherwise the right rows' order.
Keys compare by value after conversion to a common type (``int32`` 5 equals ``int64``
5, and ``uint64`` keys compare exactly with signed ones; an integer key joined with a
float key compares as float64, which rounds integers beyond 2**53); NaN keys match NaN
keys.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from ..agreement import collective
from ..array import gather_rows
from ..comm import check_all, get_comm, lib_comm
from ._encode import check_key_dtype
from ._exchange import MAX_MESSAGE, exchange
from ._hashjoin import key_words, local_join, rank_dests
from ._result import as_columns, key_list, make_result

__all__ = ["join", "BROADCAST_BYTES"]

BROADCAST_BYTES = 64 << 20
HOWS = ("inner", "left")
STRATEGIES = ("auto", "hash", "broadcast")


def _check(lcols, rcols, on, how, strategy, suffix, broadcast_bytes):
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, got {how!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(suffix, str) or not suffix:
        raise ValueError(f"suffix must be a non-empty string, got {suffix!r}")
    if isinstance(broadcast_bytes, bool) or not isinstance(broadcast_bytes, (int, np.integer)):
        raise TypeError(f"broadcast_bytes must be an integer (bytes), got {broadcast_bytes!r}")
    if not isinstance(on, str) and not (isinstance(on, (list, tuple))
                                        and all(isinstance(n, str) for n in on)):
        raise TypeError(f"on must be a column name or a list of names, got {on!r}")
    for side, cols in (("left", lcols), ("right", rcols)):
        missing = [n for n in ([on] if isinstance(on, str) else on) if n not in cols]
        if missing:
            raise KeyError(f"the {side} table has no key column {missing[0]!r} "
                           f"(columns: {list(cols)})")
    names = key_list(on, lcols, "on")
    for name in names:
        check_key_dtype(name, lcols[name])
        check_key_dtype(name, rcols[name])
    if how == "left":
        for name, col in rcols.items():
            if name not in names and col.dtype.kind not in "biufcmM":
                raise TypeError(f"how='left' needs right columns that can hold a missing "
                                f"value (NaN or NaT): column {name!r} is {col.dtype}")
    return names


_SIGN = np.uint64(1 << 63)


def _wide_int(col):
    """An integer column as two words, exact for every int64 and uint64 value: the
    65-bit number ``value + 2**63`` as (high bit, low 64 bits)."""
    if col.dtype.kind == "u":
        v = col.astype(np.uint64, copy=False)
        return [(v >> np.uint64(63)).astype(np.uint8), v ^ _SIGN]
    return [np.zeros(col.shape[0], np.uint8), col.astype(np.int64).view(np.uint64) ^ _SIGN]


def _key_cols(lcols, rcols, names):
    """Key columns of both sides, converted so that equal values have equal encodings."""
    lk, rk = [], []
    for name in names:
        a, b = lcols[name], rcols[name]
        if a.dtype.kind != b.dtype.kind:
            common = np.result_type(a.dtype, b.dtype)
            if common.kind == "f" and a.dtype.kind in "biu" and b.dtype.kind in "biu":
                lk += _wide_int(a)  # uint64 with a signed type: float64 would round
                rk += _wide_int(b)
                continue
            a, b = a.astype(common), b.astype(common)
        lk.append(a)
        rk.append(b)
    return lk, rk


def _fill_missing(col, missing):
    """``col`` with NaN (NaT) in the ``missing`` rows (``None``: none): bool and integer
    columns become float64, float16 float32; float, complex and datetime columns keep
    their type."""
    kind = col.dtype.kind
    if kind in "biu":
        col = col.astype(np.float64)
    elif kind == "f":
        col = col.astype(np.result_type(col.dtype, np.float32), copy=False)
    if missing is not None:
        col[missing] = np.array("NaT", col.dtype) if kind in "mM" else np.nan
    return col


def _output(lcols, rcols, names, matches, build, keep, suffix, owned):
    """The output columns of the local join ``matches`` built on side ``build``: keys,
    other left columns, other right columns (NaN where a left row has no match in a
    left join, ``keep``); ``owned[side]``: that side's columns may be returned as they
    are."""
    def gather(side, cols):
        if side == build:
            return dict(zip(cols, matches.build(list(cols.values())), strict=True))
        return {k: matches.probe(v, owned[side]) for k, v in cols.items()}

    out = gather("left", {k: lcols[k] for k in names}
                 | {k: v for k, v in lcols.items() if k not in names})
    for k, col in gather("right", {k: v for k, v in rcols.items()
                                   if k not in names}).items():
        if keep:
            col = _fill_missing(col, matches.missing)
        name = k
        while name in out:
            name += suffix
        out[name] = col
    return out


@collective("hp.join", local=("left", "right"))
def join(left, right, on, how: str = "inner", comm=None, *, suffix: str = "_right",
         strategy: str = "auto", broadcast_bytes: int = BROADCAST_BYTES,
         memory_budget: int | None = None, max_message: int = MAX_MESSAGE):
    """Join two distributed tables on equal key columns.

    Collective.

    Parameters
    ----------
    left, right : DistTable or mapping of local columns
    on : str or list of str
        Key column(s), present in both tables.
    how : {"inner", "left"}
    strategy : {"auto", "hash", "broadcast"}
        See the module documentation.
    broadcast_bytes : int
        Largest table (total bytes over all ranks) that ``auto`` broadcasts.
    memory_budget, max_message : int, optional
        For the exchanges of the hash join.

    Returns
    -------
    ShuffledTable
        ``meta["strategy"]`` says which strategy ran; ``meta["rank_rows"]`` rows per rank.
    """
    lcols, comm, _ = as_columns(left, comm, "left table")
    rcols, _, _ = as_columns(right, comm, "right table")
    names = check_all(lambda: _check(lcols, rcols, on, how, strategy, suffix,
                                     broadcast_bytes), comm)
    lc = lib_comm(comm)
    sizes = np.array([sum(v.nbytes for v in lcols.values()),
                      sum(v.nbytes for v in rcols.values())], dtype=np.int64)
    lc.Allreduce(MPI.IN_PLACE, sizes, op=MPI.SUM)
    keep = how == "left"
    side = None
    if strategy == "broadcast" or (strategy == "auto" and sizes[1] <= broadcast_bytes):
        side = "right"
    elif strategy == "auto" and not keep and sizes[0] <= broadcast_bytes:
        side = "left"
    given = {"left": lcols, "right": rcols}
    if side == "right":
        rcols = {k: gather_rows(v, comm, None) for k, v in rcols.items()}
    elif side == "left":
        lcols = {k: gather_rows(v, comm, None) for k, v in lcols.items()}
    rounds = 0
    if side is None:
        size = get_comm(comm).Get_size()
        dl, dr = rank_dests(*_key_cols(lcols, rcols, names), size)
        opts = dict(memory_budget=memory_budget, max_message=max_message, validate=False)
        lcols, info = exchange(lcols, dl, comm, **opts)
        del dl
        rcols, info2 = exchange(rcols, dr, comm, **opts)
        del dr
        rounds = max(info["rounds"], info2["rounds"])
    build = "right" if side == "right" or keep else "left" if side == "left" else "smaller"

    def local():  # no communication; its errors are agreed below
        try:
            matches, side = local_join(*key_words(*_key_cols(lcols, rcols, names)), keep,
                                       build)
            owned = {s: not any(np.may_share_memory(v, given[s][k]) or not v.flags.c_contiguous
                                for k, v in cols.items())
                     for s, cols in (("left", lcols), ("right", rcols))}
            return _output(lcols, rcols, names, matches, side, keep, suffix, owned)
        except MemoryError as err:
            raise MemoryError(f"join: the output of rank {lc.Get_rank()} does not fit in "
                              f"memory ({err}); a key repeated on both sides multiplies "
                              "rows") from None

    # a rank out of memory (a many-to-many key on one rank) fails every rank, never hangs
    out = check_all(local, comm)
    return make_result(out, comm, "table", {
        "strategy": "hash" if side is None else f"broadcast-{side}", "rounds": rounds,
        "bytes": {"left": int(sizes[0]), "right": int(sizes[1])}})
