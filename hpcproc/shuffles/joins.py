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
    radix-partitioned hash join whose tables fit the cache (:mod:`._hashjoin`). Heavy
    keys (skew, ``skew=True``) are the exception: their rows stay on their ranks on the
    side where the key has more rows, and the other side's rows of them are replicated
    to every rank (:mod:`._skew`), so that no rank receives a whole heavy key. The
    replicated rows total at most ``replicate_bytes`` (default ``REPLICATE_BYTES`` = 64
    MiB, independent of ``broadcast_bytes``); ``skew=False`` turns this off.

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
arrive (by source rank, then source order), otherwise the right rows' order; rows
replicated for heavy keys come after the received ones, by source rank.
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
from ..comm import check_all, fail_together, get_comm, lib_comm
from . import _skew
from ._encode import check_key_dtype
from ._exchange import FAILED, MAX_MESSAGE, check_alloc, check_limits, exchange
from ._hashjoin import key_words, local_join, rank_dests, take
from ._result import as_columns, key_list, make_result

__all__ = ["join", "BROADCAST_BYTES", "REPLICATE_BYTES"]

BROADCAST_BYTES = 64 << 20
REPLICATE_BYTES = 64 << 20
HOWS = ("inner", "left")
STRATEGIES = ("auto", "hash", "broadcast")


def _check(lcols, rcols, on, how, strategy, suffix, broadcast_bytes, skew, replicate_bytes,
           limits):
    check_limits(*limits)
    if how not in HOWS:
        raise ValueError(f"how must be one of {HOWS}, got {how!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(suffix, str) or not suffix:
        raise ValueError(f"suffix must be a non-empty string, got {suffix!r}")
    if isinstance(broadcast_bytes, bool) or not isinstance(broadcast_bytes, (int, np.integer)):
        raise TypeError(f"broadcast_bytes must be an integer (bytes), got {broadcast_bytes!r}")
    if broadcast_bytes < 0:
        raise ValueError(f"broadcast_bytes must be >= 0 (bytes), got {broadcast_bytes}")
    if not isinstance(skew, (bool, np.bool_)):
        raise TypeError(f"skew must be True or False, got {skew!r}")
    if isinstance(replicate_bytes, bool) or not isinstance(replicate_bytes, (int, np.integer)):
        raise TypeError(f"replicate_bytes must be an integer (bytes), got {replicate_bytes!r}")
    if replicate_bytes < 0:
        raise ValueError(f"replicate_bytes must be >= 0, got {replicate_bytes}")
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


def _row_bytes(cols) -> int:
    return sum(v.dtype.itemsize * int(np.prod(v.shape[1:], dtype=np.int64))
               for v in cols.values())


def _everywhere(cols, comm) -> dict:
    """Every rank's rows of ``cols`` on every rank (the broadcast side). Collective: one
    allgather of the row counts, then every copy is made (a strided column made
    contiguous, each column's output) and agreed on in one ``Allreduce`` before the first
    ``Allgatherv``: a rank that cannot hold them raises on every rank together, naming
    it, never leaves the others waiting (:func:`hpcproc.comm.fail_together`)."""
    lc = lib_comm(comm)
    nrows = lc.allgather(len(next(iter(cols.values()))))
    total, error, local, out = sum(nrows), None, {}, {}
    try:
        for k, v in cols.items():
            local[k] = np.ascontiguousarray(v)
            out[k] = np.empty((total,) + v.shape[1:], v.dtype)
    except Exception as err:  # noqa: BLE001 - agreed before the first Allgatherv
        error = err
    check_alloc(lc, error, "join")
    return {k: gather_rows(local.pop(k), comm, None, nrows=nrows, out=out[k])
            for k in cols}


def _receive(cols, dest, rep, total, comm, opts, error=None):
    """:func:`exchange` of ``cols`` to ``dest``, followed by the ``rep`` rows of every
    other rank (``total`` of them over all ranks, this rank's own arrive through the
    exchange: ``dest`` keeps them here): the rows received in the exchange's order, then
    the replicated rows of the other ranks by rank. Collective. ``error`` (this rank's
    exception since its last collective) and a failure here (an allocation) are raised
    on every rank together (:func:`hpcproc.comm.fail_together`)."""
    if not total:
        return exchange(cols, dest, comm, error=error, **opts)
    lc = lib_comm(comm)
    size, me = lc.Get_size(), lc.Get_rank()
    try:
        if error is not None:
            raise error
        picked = {k: take(v, rep) for k, v in cols.items()}
        send = np.bincount(dest, minlength=size).astype(np.int64)
    except Exception as err:  # noqa: BLE001 - agreed in the counts' Alltoall
        error, send = err, np.full(size, FAILED, np.int64)
    recv = np.empty(size, np.int64)
    lc.Alltoall([send, MPI.INT64_T], [recv, MPI.INT64_T])  # rows the exchange brings
    if recv.min() < 0:
        fail_together(error, "join", lc)
    nrep = lc.allgather(int(rep.shape[0]))
    counts = np.cumsum([0] + nrep)
    n, lo, hi = int(recv.sum()), int(counts[me]), int(counts[me + 1])
    try:  # everything this rank receives, allocated before the collectives that fill it
        gathered = {k: np.empty((total,) + v.shape[1:], v.dtype) for k, v in cols.items()}
        out = {k: np.empty((n + total - (hi - lo),) + v.shape[1:], v.dtype)
               for k, v in cols.items()}
    except Exception as err:  # noqa: BLE001 - agreed before the first of them
        error = err
    flag = np.array([error is not None], np.int64)
    lc.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
    if flag[0]:
        fail_together(error, "join", lc)
    for k, g in gathered.items():
        gather_rows(picked.pop(k), comm, None, nrows=nrep, out=g)
    info = exchange(cols, dest, comm, out=out, **opts)[1]
    for k, g in gathered.items():
        out[k][n:n + lo] = g[:lo]
        out[k][n + lo:] = g[hi:]
    return out, info


@collective("hp.join", local=("left", "right"))
def join(left, right, on, how: str = "inner", comm=None, *, suffix: str = "_right",
         strategy: str = "auto", broadcast_bytes: int = BROADCAST_BYTES,
         memory_budget: int | None = None, max_message: int = MAX_MESSAGE,
         skew: bool = True, replicate_bytes: int = REPLICATE_BYTES):
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
    skew : bool
        Detect heavy keys in a hash join and keep their rows on their ranks, replicating
        the other side's rows of them (see docs/shuffles.md, *Skew*). ``False``: every
        key is hash-partitioned.
    replicate_bytes : int
        Most bytes of rows (total over all ranks) replicated to every rank for heavy
        keys, heaviest key first; a heavy key whose rows do not fit is hash-partitioned.
        0: nothing is replicated (a heavy key without rows on the other side still stays
        on its ranks).

    Returns
    -------
    ShuffledTable
        ``meta["strategy"]`` says which strategy ran; ``meta["rank_rows"]`` rows per rank;
        ``meta["join_rows"]`` (left, right) rows per rank joined locally;
        ``meta["heavy_keys"]`` the heavy keys handled, ``meta["replicated"]`` the rows of
        each side replicated for them (hash strategy).
    """
    lcols, comm, _ = as_columns(left, comm, "left table")
    rcols, _, _ = as_columns(right, comm, "right table")
    names = check_all(lambda: _check(lcols, rcols, on, how, strategy, suffix,
                                     broadcast_bytes, skew, replicate_bytes,
                                     (memory_budget, max_message)), comm)
    lc = lib_comm(comm)
    sizes = np.array([sum(v.nbytes for v in lcols.values()),
                      sum(v.nbytes for v in rcols.values()),
                      len(next(iter(lcols.values()))), len(next(iter(rcols.values())))],
                     dtype=np.int64)
    lc.Allreduce(MPI.IN_PLACE, sizes, op=MPI.SUM)
    keep = how == "left"
    side = None
    if strategy == "broadcast" or (strategy == "auto" and sizes[1] <= broadcast_bytes):
        side = "right"
    elif strategy == "auto" and not keep and sizes[0] <= broadcast_bytes:
        side = "left"
    given = {"left": lcols, "right": rcols}
    if side == "right":
        rcols = _everywhere(rcols, comm)
    elif side == "left":
        lcols = _everywhere(lcols, comm)
    rounds, plan = 0, None
    if side is None:
        # a rank that fails locally (a key conversion, an allocation: MemoryError) must
        # not leave the others waiting: its error rides on the next collective that
        # happens anyway (the skew plan's, else the exchange's counts) and is raised on
        # every rank (hpcproc.comm.fail_together)
        size = get_comm(comm).Get_size()
        reps = {"left": np.zeros(0, np.int64), "right": np.zeros(0, np.int64)}
        error = lk = rk = dl = dr = None
        try:
            lk, rk = _key_cols(lcols, rcols, names)
            dl, dr = rank_dests(lk, rk, size)
        except Exception as err:  # noqa: BLE001 - agreed in the next collective
            error = err
        if skew:
            plan = _skew.plan(lk, rk, sizes[2:], (_row_bytes(lcols), _row_bytes(rcols)),
                              replicate_bytes, comm, error)
        try:
            if plan is not None:
                for s, d in (("left", dl), ("right", dr)):
                    reps[s] = plan.route(s, d, lc.Get_rank())
        except Exception as err:  # noqa: BLE001 - agreed in the exchange's counts
            error = err
        if error is not None:  # this rank's rows go nowhere: the error is raised first
            dl = dr = np.zeros(0, np.uint8)
        del lk, rk
        opts = dict(memory_budget=memory_budget, max_message=max_message, validate=False)
        total = plan.replicated if plan is not None else {"left": 0, "right": 0}
        lcols, info = _receive(lcols, dl, reps["left"], total["left"], comm, opts, error)
        del dl
        rcols, info2 = _receive(rcols, dr, reps["right"], total["right"], comm, opts)
        del dr, reps
        rounds = max(info["rounds"], info2["rounds"])
    build = "right" if side == "right" or keep else "left" if side == "left" else "smaller"

    def local():  # no communication; its errors are agreed below
        try:
            unmatched = None
            if keep and plan is not None and plan.replicated["left"]:
                # a left row replicated for a key heavy on the right has matches on some
                # ranks: where it has none it is not an unmatched row, drop it
                lk = _key_cols(lcols, rcols, names)[0]
                unmatched = plan.actions(lk, "left") == _skew.REPLICATE
                del lk
            matches, side = local_join(*key_words(*_key_cols(lcols, rcols, names)), keep,
                                       build)
            drop = None
            if unmatched is not None and matches.missing is not None:
                pi = matches.probe_index()
                drop = matches.missing & (unmatched if pi is None else unmatched[pi])
            owned = {s: not any(np.may_share_memory(v, given[s][k]) or not v.flags.c_contiguous
                                for k, v in cols.items())
                     for s, cols in (("left", lcols), ("right", rcols))}
            out = _output(lcols, rcols, names, matches, side, keep, suffix, owned)
            if drop is not None and drop.any():
                out = {k: v[~drop] for k, v in out.items()}
            return out
        except MemoryError as err:
            raise MemoryError(f"join: the output of rank {lc.Get_rank()} does not fit in "
                              f"memory ({err}); a key repeated on both sides multiplies "
                              "rows") from None

    # a rank out of memory (a many-to-many key on one rank) fails every rank, never hangs
    joined = [len(next(iter(c.values()))) for c in (lcols, rcols)]
    out = check_all(local, comm)
    return make_result(out, comm, "table", {
        "strategy": "hash" if side is None else f"broadcast-{side}", "rounds": rounds,
        "bytes": {"left": int(sizes[0]), "right": int(sizes[1])},
        "join_rows": lc.allgather(joined), "heavy_keys": plan.heavy if plan else 0,
        "replicated": plan.replicated if plan else {"left": 0, "right": 0}})
