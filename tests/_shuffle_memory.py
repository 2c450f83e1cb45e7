"""Peak extra memory of ``hp.shuffle`` under a memory budget (run by test_shuffle_memory
under mpiexec). Prints one JSON line on rank 0: per rank, the peak resident memory above
the input and output (bytes), for each budget given on the command line.

``_shuffle_memory.py ops ROWS BUDGET``: the same for ``sort``, ``groupby`` (hash strategy)
(65536 distinct keys, and every key distinct) and ``join`` (hash strategy) of a table of
ROWS rows per rank (int64 key, float64 value): peak resident memory above the input, in
bytes."""

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


def peak_extra(fn, comm):
    """(peak resident memory above the current one while ``fn()`` runs, its result)."""
    gc.collect()
    comm.Barrier()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = status("VmRSS")
    out = fn()
    return status("VmHWM") - base, out


def ops(comm, rows, budget):
    rng = np.random.default_rng(comm.rank)
    small = hp.DistTable.from_local({"k": rng.integers(0, 9, 100), "v": rng.random(100)}, comm)
    for fn in (hp.sort, lambda t, k, **o: hp.groupby(t, k, strategy="hash", **o).agg(v="sum"),
               lambda t, k, **o: hp.join(t, t, k, strategy="hash", **o)):
        fn(small, "k", memory_budget=budget)  # compile/load kernels, MPI buffers
    t = hp.DistTable.from_local({"k": rng.integers(0, 2**40, rows), "v": rng.random(rows)}, comm)
    r = hp.DistTable.from_local({"k": rng.integers(0, 2**40, rows), "w": rng.random(rows)}, comm)
    res = {"input": sum(v.nbytes for v in t.local().values()), "rows": rows}
    extra, s = peak_extra(lambda: hp.sort(t, "k", memory_budget=budget), comm)
    res["sort"] = extra
    del s
    g = hp.DistTable.from_local({"k": rng.integers(0, 2**16, rows) << 24,  # 65536 groups
                                 "v": rng.random(rows)}, comm)
    res["groupby"], _ = peak_extra(lambda: hp.groupby(g, "k", strategy="hash",
                                                      memory_budget=budget).agg(v="sum"), comm)
    # every key distinct: the per-group states are per-row arrays (high cardinality)
    extra, out = peak_extra(lambda: hp.groupby(t, "k", strategy="hash",
                                               memory_budget=budget).agg(v="sum"), comm)
    res["groupby_distinct"] = extra
    res["groupby_distinct_output"] = sum(v.nbytes for v in out.local().values())
    del out
    extra, j = peak_extra(lambda: hp.join(t, r, "k", strategy="hash", memory_budget=budget),
                          comm)
    res["join"], res["join_output"] = extra, sum(v.nbytes for v in j.local().values())
    return res


def main():
    comm = MPI.COMM_WORLD
    if sys.argv[1] == "ops":
        allres = comm.gather(ops(comm, int(sys.argv[2]), int(sys.argv[3])), root=0)
        if comm.rank == 0:
            print(json.dumps(allres))
        return
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
