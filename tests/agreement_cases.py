"""Ranks that disagree: run under ``mpiexec -n 3`` by tests/test_agreement.py.

Every case calls a collective with arguments that differ between ranks and catches what
it raises; rank 0 prints one JSON line per case: ``{"case", "ranks": [{"rank", "error",
"msg", "agreed"}, ...]}``.
The job must go on to the next case (no hang, no MPI_Abort) and end with ``done``.
Usage: ``python agreement_cases.py DIR`` (DIR: an empty directory shared by the ranks).
"""

import json
import os
import sys

import h5py
import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.comm import raised_on_all_ranks

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
tmp = sys.argv[1]
f, g = os.path.join(tmp, "f.h5"), os.path.join(tmp, "g.h5")
if rank == 0:
    for path in (f, g):
        with h5py.File(path, "w") as h:
            h.create_dataset("x", data=np.arange(100.0))
            h.create_dataset("y", data=np.arange(100.0)[::-1].copy())
comm.Barrier()

X = hp.DistArray.from_global(np.arange(30.0))
T = hp.DistTable.from_local({"a": np.arange(4) % 3 + rank, "b": np.arange(4.0) * rank})
R = hp.DistTable.from_local({"a": np.arange(3) + rank, "c": np.arange(3.0)})
mine = rank % 2 == 1  # ranks 1 (and 3, ...) differ from the others


def scan_blocks():
    for _ in hp.blocks(f, "/x", block_bytes=80 if mine else 160):
        pass


def merged_sketch():
    return hp.QuantileSketch(0.01 if mine else 0.02).merged()


CASES = {  # case -> call (the argument that differs is named in the test)
    "read.dataset": lambda: hp.read(f, "/y" if mine else "/x"),
    "read.path": lambda: hp.read(g if mine else f, "/x"),
    "read.rows": lambda: hp.read(f, "/x", rows=(0, 50 + rank)),
    "read.method": lambda: hp.read(f, "/x", method="h5py" if mine else "direct"),
    "read.layout": lambda: hp.read(f, "/x", layout="balanced" if mine else "auto"),
    "write.path": lambda: hp.write(os.path.join(tmp, f"out{rank}.h5"), "x", X),
    "write.dataset": lambda: hp.write(os.path.join(tmp, "out.h5"), f"x{rank}", X),
    "write.compression": lambda: hp.write(os.path.join(tmp, "out.h5"), "x", X,
                                          compression="gzip" if mine else None),
    "write_table.group": lambda: hp.write_table(os.path.join(tmp, "t.h5"), T, f"/g{rank}"),
    "checkpoint.directory": lambda: hp.Checkpointer(os.path.join(tmp, f"ck{rank}")),
    "checkpoint.keep": lambda: hp.Checkpointer(os.path.join(tmp, "ck"), keep=1 + rank),
    "histogram.range": lambda: hp.histogram(X, 5, range=(0, 10 + rank)),
    "histogram.bins": lambda: hp.histogram(X, 5 + rank),
    "histogram.edges": lambda: hp.histogram(X, np.linspace(0, 30, 4 + rank)),
    "histogram2d.bins": lambda: hp.histogram2d(X, X, bins=4 + rank),
    "quantile.q": lambda: hp.quantile(X, [0.5, 0.1 * rank]),
    "quantile.qlen": lambda: hp.quantile(X, [0.5] * (1 + rank)),
    "quantile.method": lambda: hp.quantile(X, 0.5, method="sketch" if mine else "exact"),
    "stats.x": lambda: hp.stats(f"{f}:/y" if mine else f"{f}:/x"),
    "stats.ddof": lambda: hp.stats(X, ddof=rank),
    "stats_file.dataset": lambda: hp.stats_file(f, "/y" if mine else "/x"),
    "dataset_info.name": lambda: hp.dataset_info(f, "/y" if mine else "/x"),
    "blocks.block_bytes": scan_blocks,
    "sort.by": lambda: hp.sort(T, by="b" if mine else "a"),
    "sort.ascending": lambda: hp.sort(T, by="a", ascending=not mine),
    "join.how": lambda: hp.join(T, R, on="a", how="left" if mine else "inner"),
    "join.on": lambda: hp.join(T, T, on="b" if mine else "a"),
    "groupby.spec": lambda: hp.groupby(T, "a").agg(b="max" if mine else "sum"),
    "value_counts.options": lambda: hp.value_counts(T, "a", strategy="hash" if mine else "auto"),
    "shuffle.partitioner": lambda: hp.shuffle(T, "a", partitioner="range" if mine else "hash"),
    "map.func": lambda: hp.map((lambda v: v + 1) if mine else (lambda v: v + 2), X),
    "reduce.block_fn": lambda: hp.reduce((lambda b: b.sum()) if mine else (lambda b: b.max()),
                                         lambda a, b: a + b, X),
    "generate.path": lambda: hp.generate(os.path.join(tmp, f"gen{rank}.h5"), rows=10),
    "diff.rtol": lambda: hp.diff(f, "/x", g, "/x", rtol=0.1 * rank),
    "validate_dataset.rules": lambda: hp.validate_dataset(f, "/x", {"min": float(rank)}),
    "sketch.rel_err": merged_sketch,
    "exchange.memory_budget": lambda: hp.exchange({"a": np.arange(3)}, np.zeros(3, np.int64),
                                                  memory_budget=(1 << 24) + rank),
    "from_local.dtype": lambda: hp.stats(hp.DistArray.from_local(
        np.arange(3, dtype="f4" if mine else "f8"))),
    "scan.exclusive": lambda: hp.scan(rank, exclusive=not mine),
    "different.functions": lambda: hp.stats(X) if mine else hp.histogram(X, 3, range=(0, 1)),
    # the data model: blocks that do not tile
    "tiling.stats": lambda: hp.stats(hp.DistArray(np.arange(5.0), (5 * size,), 0)),
    "tiling.write": lambda: hp.write(os.path.join(tmp, "tile.h5"), "x",
                                     hp.DistArray(np.arange(5.0), (5 * size,), 0)),
    "tiling.too_many_rows": lambda: hp.histogram(
        hp.DistArray(np.arange(10.0), (10,), 10 * rank), 4, range=(0, 10)),
    "local_rows.overlap": lambda: hp.read(f, "/x", local_rows=(0, 50)),
    "local_rows.gap": lambda: hp.read(f, "/x", local_rows=(30 * rank, 30 * rank + 20)),
    "local_rows.write": lambda: hp.write(os.path.join(tmp, "lr.h5"), "x", np.zeros(5),
                                         local_rows=(0, 5)),
}


def report(case, outcome, on=comm):
    """Rank 0 prints every rank's outcome of ``case`` (a gather: the ranks are in step)."""
    every = on.gather(dict(outcome, rank=rank), root=0)
    if on.Get_rank() == 0:
        print(json.dumps({"case": case, "ranks": every}), flush=True)


def run(case, call, on=comm):
    try:
        call()
        outcome = {"error": None}
    except Exception as exc:  # noqa: BLE001 - reported
        outcome = {"error": type(exc).__name__, "msg": str(exc),
                   "agreed": raised_on_all_ranks(exc)}
    report(case, outcome, on)


for case, call in CASES.items():
    run(case, call)

# comm= that is not the array's communicator: ranks 0-1 only, immediately, no hang
sub = comm.Split(0 if rank < 2 else 1, rank)
if rank < 2:
    run("comm.stats", lambda: hp.stats(X, comm=sub), sub)
    run("comm.histogram", lambda: hp.histogram(X, 4, range=(0, 30), comm=sub), sub)
    run("comm.write", lambda: hp.write(os.path.join(tmp, "sub.h5"), "x", X, comm=sub), sub)
sub.Free()
# the job goes on: an agreed, correct collective after all the errors
run("after", lambda: hp.stats(X))
comm.Barrier()
if rank == 0:
    print(json.dumps({"done": sorted(os.listdir(tmp))}), flush=True)
