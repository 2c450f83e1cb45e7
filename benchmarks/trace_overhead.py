"""Cost of phase tracing: per phase (off / on) and on a whole hp.stats_file scan.

Run: ``mpiexec -n 2 python benchmarks/trace_overhead.py [--mib 32] [--block 256k] [--repeats 9]``

1. Micro: nanoseconds per ``with hp.phase(...)`` with tracing off and on (this rank).
2. Macro: ``hp.stats_file`` of a float64 dataset with small blocks (many phases per
   second: the worst realistic case), tracing off and on interleaved, median of
   ``--repeats``; the ratio on/off, and the overhead estimated from the micro cost
   times the number of phases per scan (robust against the noise of a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import timeit

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.cli import parse_size
from hpcproc.observe import phases as trace


def micro(n=200_000):
    def loop():
        for _ in range(n):
            with hp.phase("read"):
                pass
    base = timeit.timeit("for _ in range(n): pass", globals={"n": n}, number=1)
    hp.stop_tracing()
    off = min(timeit.repeat(loop, number=1, repeat=5))
    hp.start_tracing()
    on = min(timeit.repeat(loop, number=1, repeat=5))
    hp.stop_tracing()
    trace.reset_tracing()
    return (off - base) / n * 1e9, (on - base) / n * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--block", type=parse_size, default=256 << 10)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    path = None
    if comm.rank == 0:
        import h5py
        fd, path = tempfile.mkstemp(suffix=".h5", dir=os.environ.get("TMPDIR", "/tmp"))
        os.close(fd)
        with h5py.File(path, "w") as f:
            f["x"] = np.random.default_rng(0).standard_normal(a.mib << 17)
    path = comm.bcast(path)
    ns_off, ns_on = micro()
    hp.stats_file(path, "/x", block_bytes=a.block)  # compile, warm the page cache
    times = {False: [], True: []}
    spans = 0
    for i in range(a.repeats):
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            if on:
                hp.start_tracing()
            comm.Barrier()
            t0 = time.perf_counter()
            hp.stats_file(path, "/x", block_bytes=a.block)
            dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if on:
                spans = max(spans, len(trace._spans))
                hp.stop_tracing()
                trace.reset_tracing()
            times[on].append(dt)
    spans = comm.allreduce(spans, op=MPI.MAX)
    if comm.rank == 0:
        off, on = statistics.median(times[False]), statistics.median(times[True])
        est = spans * ns_on * 1e-9 / off
        print(f"ranks {comm.size}, {a.mib} MiB float64, block {a.block >> 10} KiB/rank, "
              f"{a.repeats} interleaved repeats, load {os.getloadavg()[0]:.1f}")
        print(f"per phase: off {ns_off:.0f} ns, on {ns_on:.0f} ns")
        print(f"stats_file: off {off * 1e3:.1f} ms, on {on * 1e3:.1f} ms (medians), "
              f"on/off {on / off:.4f} ({100 * (on / off - 1):+.2f} %)")
        print(f"phases per scan (max over ranks) {spans}: estimated overhead "
              f"{100 * est:.3f} % of the scan")
        os.unlink(path)


if __name__ == "__main__":
    main()
