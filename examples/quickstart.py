"""Quick start: generate a dataset, read it in parallel, compute, write the result.

Run:  mpiexec -n 2 python examples/quickstart.py [workdir]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def main(workdir: str) -> None:
    comm = MPI.COMM_WORLD
    src = str(Path(workdir) / "particles.h5")
    hp.generate(src, kind="particles", rows=1_000_000, seed=7, comm=comm)   # collective

    t = hp.read_table(src, {"id": "/particles/id", "x": "/particles/x",
                            "vx": "/particles/vx"}, comm=comm)
    speed = np.abs(t.local("vx"))                        # local numpy work on this block
    s = hp.stats(hp.DistArray.from_local(speed, comm))   # collective reduction
    if comm.rank == 0:
        print(f"{t.num_rows} particles on {comm.size} ranks: mean |vx| = {s['mean']:.6f}, "
              f"max |vx| = {s['max']:.6f}")

    fast = t.local("id")[speed > 2.0]                    # ids of fast particles, this rank
    out = hp.DistArray.from_local(fast, comm)            # joins the blocks in rank order
    dst = str(Path(workdir) / "fast.h5")
    hp.write(dst, "/fast/id", out, comm=comm, compression="gzip", attrs={"cut": 2.0})
    if comm.rank == 0:
        print(f"wrote {out.global_shape[0]} ids of particles with |vx| > 2 to {dst}")


if __name__ == "__main__":
    with hp.abort_on_error():
        main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
