"""A rank that really runs out of memory inside a shuffle (run by test_fail_together.py).

``python _fail_together_driver.py CASE``, under ``mpiexec -n P``. The last rank (the
victim) caps its address space (``RLIMIT_AS``) so that one allocation of the shuffle
fails there, between two collectives:

``exchange``   the second column's result of a one-round exchange (between the first
               column's ``Alltoallv`` and the second's);
``rounds``     the results of a multi-round exchange (between the counts' ``Alltoall``
               and the first ``Alltoallv``);
``skew``       the join's skew plan (a row's candidate, between the plan's
               ``exchange_runs``/allreduces and the counts' allreduce);
``replicate``  the join's receive of a side with replicated rows (its output, between
               the counts' ``Alltoall`` and the replicated rows' ``Allgatherv``);
``groupby``    the hash group-by's local sort (before the splitters' collectives).

Every rank takes the error it got (``TYPE: MESSAGE``, or ``no error``), then runs a small
join checked against a dict join (the communicator still works and agrees); rank 0 prints
``[[error, join ok], ...]`` of every rank as one JSON line.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from _oom import cap, small_join_ok, uncap
from mpi4py import MPI

import hpcproc as hp

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
victim = size - 1
case = sys.argv[1]
MB = 1 << 20


small_join_ok(comm)  # compiles (or loads) every kernel before any cap
try:
    if case == "exchange":
        n = 4_000_000 if rank != victim else 0  # 32 MB per column from every other rank
        cols = {"a": np.arange(n, dtype=np.float64), "b": np.ones(n)}
        dest = np.full(n, victim, np.int64)
        if rank == victim:  # the first column's result fits, the second's does not
            cap(int(1.5 * (size - 1) * 32 * MB))
        hp.exchange(cols, dest, comm=comm, memory_budget=1 << 30)
    elif case == "rounds":
        n = 4_000_000 if rank != victim else 0
        cols = {"a": np.arange(n, dtype=np.float64), "b": np.ones(n)}
        dest = np.full(n, victim, np.int64)
        if rank == victim:  # not even one column's result fits
            cap(int(0.5 * (size - 1) * 32 * MB))
        hp.exchange(cols, dest, comm=comm, memory_budget=1 << 22)
    elif case == "skew":
        n = 8_000_000 if rank == victim else 100_000
        rng = np.random.default_rng(rank)
        key = rng.integers(0, 1 << 40, n)
        key[::2] = 7  # a heavy key: half of the rows
        left = {"k": key, "a": np.arange(n)}
        right = {"k": rng.integers(0, 1 << 40, 1000), "b": np.arange(1000)}
        if rank == victim:  # its routing bytes (8 MB) fit, a candidate per row does not
            cap(20 * MB)
        hp.join(left, right, "k", strategy="hash", comm=comm)
    elif case == "replicate":
        n = 4_000_000 if rank != victim else 1000
        rng = np.random.default_rng(rank)
        left = {"k": rng.integers(0, 1 << 40, n), "a": np.arange(n)}
        left["k"][0] = 7  # one left row of the heavy key on every rank: replicated
        m = 1_000_000 if rank != victim else 10
        right = {"k": np.full(m, 7), "b": np.arange(m)}  # key 7, heavy on the right
        if rank == victim:  # the rows it receives (~2.7M, 21 MB a column) do not fit
            cap(10 * MB)
        hp.join(left, right, "k", strategy="hash", comm=comm)
    elif case == "groupby":
        n = 8_000_000 if rank == victim else 100_000
        data = {"k": np.random.default_rng(rank).integers(0, 1 << 40, n), "v": np.ones(n)}
        if rank == victim:  # the local sort's keys (64 MB) do not fit
            cap(20 * MB)
        hp.groupby(data, "k", comm=comm, strategy="hash").agg({"v": ["sum"]})
    else:
        raise SystemExit(f"unknown case {case}")
    got = "no error"
except Exception as err:  # noqa: BLE001 - compared by the test
    got = f"{type(err).__name__}: {err}"
finally:
    uncap()
every = comm.gather([got, small_join_ok(comm)], root=0)
if rank == 0:
    print(json.dumps(every), flush=True)
