"""Every hpcproc capability once, for comparing runs on one host and across hosts.

    mpiexec -n 4 python capabilities.py run INDIR OUTDIR
    mpiexec -n 3 python capabilities.py restore CKPTDIR OUTFILE

``run`` reads the inputs written by tests/multihost/test_multihost.py, runs read, write
(contiguous and chunked+gzip), stats, histogram, sort, group-by (hash strategy, so the
partial states really move), join (hash strategy) and a checkpoint save + restore, and
writes every result into OUTDIR: HDF5 files for the distributed results, ``results.json``
(rank 0) for the reductions and for what each rank saw of its node (host name, ranks on
its node, how it obtained each compiled kernel, the default exchange memory budget).
``HPCPROC_MH_RAISE_RANK`` / ``HPCPROC_MH_KILL_RANK`` make that rank raise / SIGKILL itself
after the histogram (the failure tests). ``restore`` restores the newest step of a checkpoint
directory (written by ``run``, possibly on another rank count and hosts) and writes its
arrays to OUTFILE.
"""

import json
import os
import signal
import socket
import sys

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.comm import node_comm
from hpcproc.kernels import compile_stats
from hpcproc.memory import available
from hpcproc.shuffles import default_memory_budget

comm = MPI.COMM_WORLD


def fault(rank: int) -> None:
    """Fault injection for the failure tests: raise or die on one chosen rank."""
    if os.environ.get("HPCPROC_MH_RAISE_RANK") == str(rank):
        raise RuntimeError(f"injected failure on rank {rank} ({socket.gethostname()})")
    if os.environ.get("HPCPROC_MH_KILL_RANK") == str(rank):
        os.kill(os.getpid(), signal.SIGKILL)


def run(ind: str, outd: str) -> None:
    src, keys = f"{ind}/data.h5", f"{ind}/keys.h5"

    # read: contiguous (direct) and chunked+gzip, then write both back out
    x = hp.read(src, "/x")
    xc = hp.read(src, "/xc")
    hp.write(f"{outd}/x.h5", "/x", x)
    y = hp.DistArray.from_local(2.0 * xc.local + 1.0, comm=comm)
    hp.write(f"{outd}/y.h5", "/y", y, chunks=(4096,), compression="gzip", shuffle=True)

    # reductions, streamed from the file
    st = hp.stats(f"{src}:/x")
    counts, edges = hp.histogram(f"{src}:/x", bins=64)
    fault(comm.rank)  # the other ranks are now inside the sort's collectives

    # shuffles
    t = hp.read_table(keys, {"key": "/key", "val": "/val"})
    s = hp.sort(t, "key")
    hp.write_table(f"{outd}/sorted.h5", s)
    g = hp.groupby(t, "key", strategy="hash").agg(val=["sum", "count"])
    hp.write_table(f"{outd}/grouped.h5", g)
    left = hp.read_table(keys, {"key": "/lkey", "a": "/a"})
    right = hp.read_table(keys, {"key": "/rkey", "b": "/b"})
    j = hp.join(left, right, on="key", strategy="hash")
    hp.write_table(f"{outd}/joined.h5", j)

    # checkpoint: save a distributed array, a table and a scalar; restore it at once
    state = {"x": x, "t": t, "time": np.float64(st["mean"])}
    with hp.Checkpointer(f"{outd}/ckpt", keep=2) as ck:
        ck.save(7, state)
    with hp.Checkpointer(f"{outd}/ckpt") as ck:
        step, back = ck.restore()
    same = (step == 7 and np.array_equal(back["x"].local, x.local)
            and all(np.array_equal(back["t"].local(c), t.local(c)) for c in ("key", "val"))
            and back["time"] == state["time"])

    node = {
        "host": socket.gethostname(),
        "processor": MPI.Get_processor_name(),
        "node_size": node_comm(comm).Get_size(),
        "kernels": compile_stats(),
        # read next to each other: available memory moves while other jobs run
        "available_memory": available(unknown=4 << 30),
        "memory_budget": default_memory_budget(comm),
        "restored_same": comm.allreduce(int(not same), op=MPI.SUM) == 0,
        "rank_rows": {"sort": s.meta["rank_rows"], "groupby": g.meta["rank_rows"]},
    }
    nodes = comm.gather(node, root=0)
    if comm.rank == 0:
        out = {"ranks": comm.size, "stats": {k: float(v) for k, v in st.items()},
               "hist": [counts.tolist(), edges.tolist()], "nodes": nodes}
        with open(f"{outd}/results.json", "w") as f:
            json.dump(out, f)


def restore(ckpt: str, outfile: str) -> None:
    with hp.Checkpointer(ckpt) as ck:
        step, state = ck.restore()
    hp.write(outfile, "/x", state["x"])
    hp.write_table(outfile + ".table.h5", state["t"])
    if comm.rank == 0:
        with open(outfile + ".json", "w") as f:
            json.dump({"step": step, "time": float(state["time"])}, f)


if __name__ == "__main__":
    with hp.abort_on_error(comm):
        {"run": run, "restore": restore}[sys.argv[1]](*sys.argv[2:4])
