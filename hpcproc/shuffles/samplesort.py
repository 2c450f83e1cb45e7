"""Distributed sample sort of a table (by one or several key columns) or a 1-D array.

1. keys are encoded as order-preserving uint64 words (NaN last, descending inverted);
2. splitters are chosen from samples drawn on every rank (:mod:`.range`), as
   (key, global row) pairs, so equal keys may be split between ranks: the result is
   balanced whatever the key distribution (one heavy key, all keys equal);
3. whole rows move in one bounded-memory exchange (:mod:`._exchange`), which keeps
   rows from the same source in order and sources in rank order;
4. every rank sorts its rows with a stable compiled radix sort (:mod:`._localsort`).

The result is globally sorted in rank order and *stable*: rows with equal keys keep
their original global order.
"""

from __future__ import annotations

import time

import numpy as np

from ..agreement import collective
from ..comm import check_all, lib_comm
from . import _kernels
from ._encode import check_key_dtype, encode_keys
from ._exchange import MAX_MESSAGE, check_limits, exchange, words
from ._localsort import argsort_keys, sort_word
from ._result import ARRAY_COLUMN, as_columns, key_list, make_result
from .range import range_partition, splitters

__all__ = ["sort"]


def _check(columns, kind, by, ascending, local_sort):
    names = [ARRAY_COLUMN] if kind == "array" else key_list(by, columns)
    for name in names:
        check_key_dtype(name, columns[name])
    asc = [bool(ascending)] * len(names) if np.ndim(ascending) == 0 else list(ascending)
    if len(asc) != len(names):
        raise ValueError(f"ascending has {len(asc)} entries for {len(names)} key columns")
    if local_sort not in ("radix", "numpy"):
        raise ValueError(f"local_sort must be 'radix' or 'numpy', got {local_sort!r}")
    return names, asc


def _take(columns, perm, reuse=None, owned: bool = False) -> dict:
    """Every column's rows in ``perm`` order (a compiled gather; ``reuse``: a spare
    uint64 array of ``len(perm)`` rows that one 8-byte column may be gathered into).

    ``owned``: ``columns`` is the caller's to empty: every column is dropped from it as
    soon as it is gathered, so at most one column exists twice at a time.
    """
    out = {}
    for name in list(columns):
        col = columns.pop(name) if owned else columns[name]
        src = words(col)
        if reuse is not None and src.dtype == np.uint64 and src.ndim == 1:
            dst, reuse = reuse, None
        else:
            dst = np.empty((perm.shape[0],) + src.shape[1:], src.dtype)
        if perm.shape[0]:
            _kernels.gather_rows(src, perm, dst)
        out[name] = dst.view(col.dtype).reshape((perm.shape[0],) + col.shape[1:])
        del col, src
    return out


def _local_sort(columns, names, asc, method, owned: bool = False) -> dict:
    """This rank's rows sorted by the key columns (stable).

    One 64-bit integer key (the common case) is sorted as it is, its sign bit (and all
    bits for descending order) flipped on the fly, and the sorted key column is the
    sorted words flipped back in place: no encoded copy, no gather of the key.

    ``owned``: the columns are the caller's to overwrite and drop (fresh from the
    exchange). Each is then released as soon as its sorted copy exists, and the key
    column's memory receives another column's rows: extra memory stays at 12 bytes per
    row (sorted key words and row numbers) plus one column, and fresh memory, which costs
    page faults (a large part of a sort on a VM), is avoided where it can be.
    """
    order = list(columns)
    key = columns[names[0]]
    if len(names) == 1 and method == "radix" and key.dtype.kind in "iu" and key.itemsize == 8 \
            and key.dtype.isnative:
        flip = (1 << 63 if key.dtype.kind == "i" else 0) ^ (0 if asc[0] else (1 << 64) - 1)
        words, perm = sort_word(key, flip)
        words ^= np.uint64(flip)
        kdtype = key.dtype
        if owned:
            del columns[names[0]]
            spare = key.view(np.uint64) if key.flags.writeable else None
            del key
            rest = _take(columns, perm, spare, owned)
        else:
            rest = _take({k: v for k, v in columns.items() if k != names[0]}, perm)
        rest[names[0]] = words.view(kdtype)
        return {k: rest[k] for k in order}
    perm = argsort_keys(encode_keys([columns[k] for k in names], asc), method)
    return _take(columns, perm, owned=owned)


@collective("hp.sort", local=("data",))
def sort(data, by=None, ascending=True, comm=None, *, memory_budget: int | None = None,
         max_message: int = MAX_MESSAGE, imbalance: float = 0.1, local_sort: str = "radix"):
    """Sort a table by key columns, or a 1-D array, across all ranks.

    Collective.

    Parameters
    ----------
    data : DistTable, DistArray or mapping of local columns
        What to sort; whole rows move together.
    by : str or list of str
        Key column(s) of a table, most significant first (ignored for an array).
    ascending : bool or list of bool
        Per key column. NaN sorts last in both directions.
    comm : mpi4py.MPI.Intracomm, optional
        Communicator for a mapping or ndarray input (default: the input's, or COMM_WORLD).
    memory_budget, max_message : int, optional
        Passed to the exchange (see :func:`hpcproc.shuffles.exchange`).
    imbalance : float
        Target relative imbalance of the output (sets the sample size).
    local_sort : {"radix", "numpy"}
        Per-rank sort: compiled radix sort or ``np.argsort(kind="stable")``.

    Returns
    -------
    ShuffledTable or ShuffledArray
        Rank r holds the r-th slice of the sorted rows; ties keep their input order.
        ``meta`` has ``rank_rows``, ``rounds`` and per-phase ``seconds``.
    """
    columns, comm, kind = as_columns(data, comm, "sort input")

    def checks():  # the limits too, before the sample (the exchange checks them again)
        check_limits(memory_budget, max_message)
        return _check(columns, kind, by, ascending, local_sort)
    names, asc = check_all(checks, comm)
    if not 0 < imbalance < 1:
        raise ValueError(f"imbalance must be in (0, 1), got {imbalance}")
    t0 = time.perf_counter()
    lc = lib_comm(comm)
    counts = np.asarray(lc.allgather(next(iter(columns.values())).shape[0]), dtype=np.int64)
    first = int(counts[:lc.Get_rank()].sum())
    keys = [columns[k] for k in names]
    S = splitters(keys, comm, ascending=asc, tiebreak=True, eps=imbalance, counts=counts)
    # a rank that fails locally (an allocation: MemoryError) must not leave the others
    # waiting: its error rides on the exchange's counts, or the result's row counts, and
    # is raised on every rank (hpcproc.comm.fail_together)
    try:
        dest, error = range_partition(keys, S, first, asc), None
    except Exception as err:  # noqa: BLE001 - agreed in the exchange's counts
        dest, error = np.zeros(0, np.uint8), err
    t1 = time.perf_counter()
    out, info = exchange(columns, dest, comm, memory_budget=memory_budget,
                         max_message=max_message, validate=False, error=error)
    del dest
    t2 = time.perf_counter()
    try:
        out = _local_sort(out, names, asc, local_sort, owned=True)
    except Exception as err:  # noqa: BLE001 - no collective since: agreed in the result
        out, error = {}, err
    t3 = time.perf_counter()
    return make_result(out, comm, kind, {
        "strategy": "sample-sort", "rounds": info["rounds"], "splitters": S.shape[0],
        "seconds": {"partition": t1 - t0, "exchange": t2 - t1, "local_sort": t3 - t2}},
        error=error, what="sort")
