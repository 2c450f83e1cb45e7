"""Benchmark: the reproducible (exact) moment kernel against today's, and the per-call
cost of every reduction at 2 ranks.

Part 1, in memory, one rank (this process): ``moment_state.block_state`` on one block,
default kernel vs ``exact=True``, 1 and 2 threads, float64 / float32 / int64 (and
float64 with 1 % NaN), 2^24 and 2^26 elements. Medians (and the ratio of minima) of
--runs; ratios are within one run (the two kernels alternate), the load average is
recorded.

Part 2, ``mpiexec -n 2``: wall time per call (max over ranks, median of --calls calls
after a warm-up) of hp.stats (default and exact), hp.histogram (64 bins, given range),
hp.quantile (exact: small-data path and radix path; sketch) and QuantileSketch
add+merge, on a DistArray of 256^2 and 2^22 float64 elements.

    python benchmarks/kernels_repro.py [--runs 5] [--calls 21] [--sizes 24 26]

Writes benchmarks/results/kernels_repro.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MPIEXEC = os.environ.get("HPCPROC_MPIEXEC", str(BIN / "mpiexec"))
OUT = REPO / "benchmarks" / "results" / "kernels_repro.md"

PERCALL = textwrap.dedent("""
    import importlib, statistics, sys, time
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    hq = importlib.import_module("hpcproc.compute.quantile")
    comm = MPI.COMM_WORLD
    calls = int(sys.argv[1])
    for n in (256 * 256, 1 << 22):
        rng = np.random.default_rng(comm.rank)
        x = hp.DistArray.from_local(rng.standard_normal(n // comm.size), comm)

        def sketch():
            sk = hp.QuantileSketch(0.01)
            sk.add(x.local)
            return sk.merged(comm).quantile([0.5, 0.99])

        def radix():
            old, hq.SMALL_ELEMENTS = hq.SMALL_ELEMENTS, 0
            try:
                return hp.quantile(x, [0.5, 0.99])
            finally:
                hq.SMALL_ELEMENTS = old
        cases = [("hp.stats", lambda: hp.stats(x)),
                 ("hp.stats(exact=True)", lambda: hp.stats(x, exact=True)),
                 ("hp.histogram(64 bins, range given)",
                  lambda: hp.histogram(x, bins=64, range=(-5.0, 5.0))),
                 ("hp.histogram(64 bins, range=None)", lambda: hp.histogram(x, bins=64)),
                 ("hp.quantile exact (default path)", lambda: hp.quantile(x, [0.5, 0.99])),
                 ("hp.quantile exact, radix path", radix),
                 ("hp.quantile sketch", lambda: hp.quantile(x, [0.5, 0.99], method="sketch")),
                 ("QuantileSketch add + merged + quantile", sketch)]
        for name, fn in cases:
            fn()
            ts = []
            for _ in range(calls):
                comm.Barrier()
                t0 = time.perf_counter()
                fn()
                ts.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
            if comm.rank == 0:
                print(f"{n}\\t{name}\\t{statistics.median(ts)}", flush=True)
""")


def _kernel_part(sizes, runs):
    import hpcproc as hp
    from hpcproc.kernels import moment_state as ms
    rng = np.random.default_rng(0)
    rows = []
    for p in sizes:
        n = 1 << p
        base = rng.random(n)
        datas = {"float64": base, "float32": base.astype(np.float32),
                 "int64": (base * 2**40).astype(np.int64)}
        withnan = base.copy()
        withnan[rng.choice(n, n // 100, replace=False)] = np.nan
        datas["float64 + 1% NaN"] = withnan
        for name, arr in datas.items():
            block = arr.reshape(-1, 1)
            ints = arr.dtype.kind == "i"
            for threads in (1, 2):
                hp.set_threads(threads)
                t = {False: [], True: []}
                for exact in (False, True):  # warm up (compile)
                    ms.block_state(block[:4096], with_ints=ints, exact=exact)
                for _ in range(runs):
                    for exact in (False, True):
                        t0 = time.perf_counter()
                        ms.block_state(block, with_ints=ints, exact=exact)
                        t[exact].append(time.perf_counter() - t0)
                a, b = statistics.median(t[False]), statistics.median(t[True])
                rows.append((f"2^{p}", name, threads, a, b, min(t[True]) / min(t[False]),
                             os.getloadavg()[0]))
                print(rows[-1], flush=True)
            del block
    hp.set_threads(1)
    return rows


def _percall_part(calls):
    out = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", PERCALL, str(calls)],
                         capture_output=True, text=True, timeout=3600, check=True).stdout
    rows = []
    for line in out.splitlines():
        n, name, sec = line.split("\t")
        rows.append((int(n), name, float(sec)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=21)
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 26])
    args = ap.parse_args()
    load0 = os.getloadavg()
    krows = _kernel_part(args.sizes, args.runs)
    prows = _percall_part(args.calls)
    lines = ["# Reproducible moment kernel and per-call cost", "",
             f"`python benchmarks/kernels_repro.py --runs {args.runs} --calls {args.calls}`; "
             f"load average at start {load0[0]:.1f} (2 cores, shared machine).", "",
             "## In-memory kernel: default vs exact=True (one rank, one block)", "",
             "| elements | data | threads | default (s) | exact (s) | exact / default "
             "(medians) | (minima) | load |", "|---|---|---|---|---|---|---|---|"]
    for size, name, th, a, b, rmin, load in krows:
        lines.append(f"| {size} | {name} | {th} | {a:.4f} | {b:.4f} | {b / a:.2f}x | "
                     f"{rmin:.2f}x | {load:.1f} |")
    lines += ["", "## Per-call cost at 2 ranks (DistArray, float64; median wall time, max over "
              "ranks)", "", "| call | 256^2 elements | 2^22 elements |", "|---|---|---|"]
    names = list(dict.fromkeys(r[1] for r in prows))
    by = {(r[0], r[1]): r[2] for r in prows}
    for name in names:
        cells = [f"{by[(n, name)] * 1e3:.2f} ms" if (n, name) in by else "-"
                 for n in (256 * 256, 1 << 22)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines.append(f"\nload average at end {os.getloadavg()[0]:.1f}\n")
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
