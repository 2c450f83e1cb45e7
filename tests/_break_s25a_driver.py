"""Failures of one or several ranks inside a join (run by test_break_s25a.py).

``python _break_s25a_driver.py CASE``, under ``mpiexec -n P``:

``broadcast``  the last rank caps its address space (``RLIMIT_AS``) so that its copy of
               the broadcast side (``strategy="broadcast"``) does not fit: allocated
               between the row counts' allgather and the ``Allgatherv`` (hung before);
``mixed0``     rank 0 raises a ValueError and the last rank a MemoryError in the join's
               key conversion (before any collective of the hash join);
``mixedlast``  only the last rank raises (a ZeroDivisionError) there;
``unpicklable`` rank 0 raises an exception that cannot be pickled there;
``dense``      a dense group-by whose key range (8M groups) the last rank cannot hold
               states for (before the bitmap's Allreduce; hung before);
``sort``       hp.sort: the last rank cannot hold the destinations of its 8M rows (after
               the splitters, before the exchange; hung before);
``sort_local`` hp.sort: the last rank cannot sort what it received (after the exchange,
               before the result's row counts; hung before);
``dense_out``  the same as ``dense``, the last rank can hold its local states but not the outputs of
               the Reduce_scatters (between the bitmap's Allreduce and them).

Every rank takes the error it got (``TYPE: MESSAGE``, or ``no error``), then runs a small
join checked against a dict join (the communicator still works and agrees); rank 0 prints
``[[error, join ok], ...]`` of every rank as one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading

import numpy as np
from _oom import cap, small_join_ok, uncap
from mpi4py import MPI

import hpcproc as hp
from hpcproc.shuffles import joins

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
victim = size - 1
case = sys.argv[1]
MB = 1 << 20


def small_groupby_ok() -> bool:
    """A small dense group-by (unsigned max: the flipped Reduce_scatter) against a dict
    of the gathered rows."""
    rng = np.random.default_rng(rank + 10)
    k = rng.integers(0, 40, 500)
    v = rng.integers(0, 1 << 63, 500).astype(np.uint64) * np.uint64(2)
    got = hp.groupby({"k": k, "v": v}, "k", comm=comm, strategy="dense").agg(
        {"v": ["max", "count"]}).local()
    mine = sorted(zip(got["k"].tolist(), got["v_max"].tolist(), got["v_count"].tolist()))
    every = sorted(x for r in comm.allgather(mine) for x in r)
    want = {}
    for kk, vv in (x for r in comm.allgather(list(zip(k.tolist(), v.tolist()))) for x in r):
        m, c = want.get(kk, (0, 0))
        want[kk] = (max(m, vv), c + 1)
    return every == sorted((kk, m, c) for kk, (m, c) in want.items())


class Unpicklable(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()  # cannot be pickled


def failing_key_cols(errors):
    real = joins._key_cols

    def key_cols(*args, **kwargs):
        if rank in errors:
            raise errors[rank]
        return real(*args, **kwargs)
    return key_cols


small_join_ok(comm, "hash")  # compiles (or loads) every kernel before any cap
small_join_ok(comm, "broadcast")
try:
    if case == "broadcast":
        n = 4_000_000 if rank != victim else 10  # 32 MB per column from every other rank
        left = {"k": np.arange(100), "a": np.arange(100)}
        right = {"k": np.arange(n), "b": np.arange(n)}
        if rank == victim:  # the gathered right side (>= 64 MB) does not fit
            cap(16 * MB)
        hp.join(left, right, "k", strategy="broadcast", comm=comm)
    elif case in ("mixed0", "mixedlast", "unpicklable"):
        errors = {"mixed0": {0: ValueError("bad key on rank 0"),
                             victim: MemoryError("no room on the last rank")},
                  "mixedlast": {victim: ZeroDivisionError("divided on the last rank")},
                  "unpicklable": {0: Unpicklable("cannot travel")}}[case]
        real = joins._key_cols
        joins._key_cols = failing_key_cols(errors)
        try:
            left = {"k": np.arange(1000) % 13, "a": np.arange(1000)}
            right = {"k": np.arange(500) % 17, "b": np.arange(500)}
            hp.join(left, right, "k", strategy="hash", comm=comm)
        finally:
            joins._key_cols = real
    elif case in ("dense", "dense_out"):
        n = 1_000_000
        rng = np.random.default_rng(rank)
        key = rng.integers(0, 8_000_000, n)  # 8M groups: ~64 MB for each state array
        key[:2] = [0, 7_999_999]
        data = {"k": key, "v": rng.integers(0, 1 << 60, n).astype(np.uint64)}
        if rank == victim:
            if case == "dense":
                cap(20 * MB)
            else:  # the local states (rows, sum, nan, min, max: ~290 MB) fit, no more
                import hpcproc.shuffles.grouping as grouping
                real = grouping._dense_local

                def capped(*args, **kwargs):
                    got = real(*args, **kwargs)
                    cap(6 * MB)
                    return got
                grouping._dense_local = capped
        try:
            hp.groupby(data, "k", comm=comm, strategy="dense",
                       dense_limit=1 << 24).agg({"v": ["sum", "max"]})
        finally:
            if case == "dense_out" and rank == victim:
                grouping._dense_local = real
    elif case in ("sort", "sort_local"):
        import hpcproc.shuffles.samplesort as samplesort
        n = 8_000_000 if rank == victim else 100_000
        data = {"k": np.random.default_rng(rank).random(n), "v": np.ones(n)}
        real_sort = samplesort._local_sort
        if rank == victim and case == "sort":
            cap(4 * MB)  # the destinations (8 MB) do not fit
        elif rank == victim:
            def capped_sort(*args, **kwargs):
                cap(1 * MB)  # received ~4M rows: their order does not fit
                return real_sort(*args, **kwargs)
            samplesort._local_sort = capped_sort
        try:
            hp.sort(data, "k", comm=comm)
        finally:
            samplesort._local_sort = real_sort
    else:
        raise SystemExit(f"unknown case {case}")
    got = "no error"
except Exception as err:  # noqa: BLE001 - compared by the test
    got = f"{type(err).__name__}: {err}"
finally:
    uncap()
every = comm.gather([got, small_join_ok(comm, "hash") and small_join_ok(comm, "broadcast")
                     and small_groupby_ok()], root=0)
if rank == 0:
    print(json.dumps(every), flush=True)
