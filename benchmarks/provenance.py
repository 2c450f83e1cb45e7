"""Cost of lineage checksums and validation on hp.read, as ratios to a plain read.

    mpiexec -n 2 .venv/bin/python benchmarks/lineage.py [MiB]

Reports, measured in the same run: crc32 throughput per rank next to a numpy copy of the
same block (a memory-bandwidth baseline), and the time of ``hp.read`` with lineage off
(``HPCPROC_LINEAGE=0``), on (default), and on plus ``validate=`` (nan/inf/range/monotonic).
Medians of 5 repetitions, slowest rank; the file is in the page cache after the first run.
"""

import os
import statistics
import sys
import tempfile
import time
import zlib

import h5py
import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.io import lineage


def main():
    comm = MPI.COMM_WORLD
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    rows = mib * 2**20 // 8
    d = comm.bcast(tempfile.mkdtemp(prefix="hpcproc-bench-") if comm.rank == 0 else None)
    path = os.path.join(d, "x.h5")
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(rows, dtype=np.float64)
    comm.Barrier()
    rules = {"max_nan": 0, "max_inf": 0, "min": 0.0, "monotonic": "increasing"}

    def timed(fn, reps=5):
        out = []
        for _ in range(reps):
            comm.Barrier()
            t = time.perf_counter()
            fn()
            out.append(comm.allreduce(time.perf_counter() - t, op=MPI.MAX))
        return statistics.median(out)

    def read(with_lineage, validate=None):
        os.environ["HPCPROC_LINEAGE"] = "1" if with_lineage else "0"
        hp.read(path, "/x", comm=comm, validate=validate)
        lineage.reset()

    block = hp.read(path, "/x", comm=comm).local
    t_zlib = timed(lambda: zlib.crc32(block))
    t_crc = timed(lambda: lineage.block_crc32(block))
    t_copy = timed(lambda: block.copy())
    t_off, t_on, t_val = timed(lambda: read(False)), timed(lambda: read(True)), \
        timed(lambda: read(True, rules))
    if comm.rank == 0:
        gib = block.nbytes / 2**30
        print(f"{mib} MiB float64 on {comm.size} rank(s), {block.nbytes / 2**20:.1f} MiB/rank")
        impl = lineage._crc32_impl()
        print(f"crc32 ({impl.__module__}) {gib / t_crc:.2f} GiB/s per rank (zlib "
              f"{gib / t_zlib:.2f}); numpy copy {gib / t_copy:.2f} GiB/s "
              f"(crc32 / copy time {t_crc / t_copy:.2f})")
        print(f"hp.read lineage off {t_off * 1e3:.1f} ms; on {t_on * 1e3:.1f} ms "
              f"(x{t_on / t_off:.2f}); on + validate {t_val * 1e3:.1f} ms (x{t_val / t_off:.2f})")
        os.unlink(path)
        os.rmdir(d)


if __name__ == "__main__":
    main()
