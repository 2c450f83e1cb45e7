"""Peak extra memory of ``hp.shuffle`` under a memory budget (run by test_shuffle_memory
under mpiexec). Prints one JSON line on rank 0: per rank, the peak resident memory above
the input and output (bytes), for each budget given on the command line."""

import gc
import json
import sys

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main():
    comm = MPI.COMM_WORLD
    rows = int(sys.argv[1])
    budgets = [int(b) for b in sys.argv[2:]]
    rng = np.random.default_rng(comm.rank)
    small = hp.DistTable.from_local({"k": rng.integers(0, 9, 100), "v": rng.random(100)}, comm)
    hp.shuffle(small, "k", memory_budget=budgets[0])  # compile/load kernels, MPI buffers
    t = hp.DistTable.from_local({"k": rng.integers(0, 2**40, rows), "v": rng.random(rows)}, comm)
    results = []
    for budget in budgets:
        gc.collect()
        comm.Barrier()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        base = status("VmRSS")
        s = hp.shuffle(t, "k", memory_budget=budget)
        peak = status("VmHWM")
        out = sum(v.nbytes for v in s.local().values())
        results.append({"budget": budget, "extra": peak - base - out,
                        "rounds": s.meta["rounds"], "moved": out})
        del s
    allres = comm.gather(results, root=0)
    if comm.rank == 0:
        print(json.dumps(allres))


if __name__ == "__main__":
    main()
