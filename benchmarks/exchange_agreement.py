"""What agreeing on a rank's local failure costs a small exchange (CPU time, medians).

``mpiexec -n 2 python benchmarks/exchange_agreement.py [ROWS] [REPEATS]``

A rank that fails between two collectives of the exchange (an allocation) must not leave
the others waiting: its failure rides on the counts' ``Alltoall`` and on the rounds'
``Allreduce`` (free), and one ``Allreduce`` of one int64 per column agrees on the
allocations made before each column's ``Alltoallv`` (new). Three variants, measured
alternately in the same run on the same data (CPU seconds per exchange, process_time):

``agreed``      the exchange as it is;
``no-check``    the per-column ``Allreduce`` replaced by nothing (what it costs);
``pickled``     also the rounds' ``Allreduce`` done as before (a pickled int; the flag
                now rides on a buffer of two int64).

Prints one JSON line on rank 0: the medians per variant and column count, and their
ratios to ``no-check``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.comm import lib_comm
from hpcproc.shuffles import _exchange as X


def _no_check(lc, failed, what):
    pass


def _pickled(lc, value, failed, what):
    return lc.allreduce(value, op=MPI.MAX)


def main() -> None:
    comm = MPI.COMM_WORLD
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = np.random.default_rng(comm.rank)
    dest = rng.integers(0, comm.size, rows)
    real = (X._check_alloc, X._agreed_max)
    variants = {"agreed": real, "no-check": (_no_check, real[1]),
                "pickled": (_no_check, _pickled)}
    out = {}
    for ncols in (1, 3):
        cols = {f"c{i}": rng.integers(0, 1 << 40, rows) for i in range(ncols)}
        times = {v: [] for v in variants}
        for _trial in range(9):
            for name, (check, agree) in variants.items():
                X._check_alloc, X._agreed_max = check, agree
                hp.exchange(cols, dest, comm=comm)  # warm
                comm.Barrier()
                t0 = time.process_time()
                for _ in range(repeats):
                    hp.exchange(cols, dest, comm=comm)
                t = (time.process_time() - t0) / repeats
                times[name].append(comm.allreduce(t, op=MPI.MAX))
        X._check_alloc, X._agreed_max = real
        med = {k: statistics.median(v) for k, v in times.items()}
        out[f"{ncols} column(s)"] = {
            "us": {k: round(v * 1e6, 2) for k, v in med.items()},
            "ratio_to_no_check": {k: round(v / med["no-check"], 3) for k, v in med.items()}}
    lc = lib_comm(comm)
    flag, alone = np.zeros(1, np.int64), []
    for _trial in range(9):  # the added collective alone: one Allreduce of one int64
        comm.Barrier()
        t0 = time.process_time()
        for _ in range(repeats):
            lc.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
        alone.append(comm.allreduce((time.process_time() - t0) / repeats, op=MPI.MAX))
    out["Allreduce of one int64"] = {"us": round(statistics.median(alone) * 1e6, 2)}
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "rows": rows, "repeats": repeats,
                          "load": os.getloadavg(), "results": out}))


if __name__ == "__main__":
    main()
