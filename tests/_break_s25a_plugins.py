"""Read ``FILE:/x`` on every rank (run by test_break_s25a.py under an MPMD ``mpiexec``
whose ranks have different HDF5_PLUGIN_PATH texts); rank 0 prints every rank's
``[error or null, sum or null]`` as one JSON line."""

from __future__ import annotations

import json
import sys

from mpi4py import MPI

import hpcproc as hp

comm = MPI.COMM_WORLD
try:
    got = [None, float(hp.read(sys.argv[1], "/x", comm=comm).allgather().sum())]
except Exception as err:  # noqa: BLE001 - compared by the test
    got = [f"{type(err).__name__}: {err}", None]
every = comm.gather(got, root=0)
if comm.rank == 0:
    print(json.dumps(every), flush=True)
