"""Benchmark: the reproducible (exact) moment kernel against today's, and the per-call
cost of every reduction at 2 ranks.

Part 1, in memory, at 1 rank (1 and 2 threads) and 2 ranks: the previous default kernel
(chunk-sequential, not reproducible; its merge is copied here) against the reproducible
default and ``exact=True`` (at the smallest size), float64 and float32, 2^24..2^27
elements in all. Medians (and the ratio of minima) of --runs; ratios are within one run
(the kernels alternate), the load average is recorded.

Part 2, ``mpiexec -n 2``: wall time per call (max over ranks, median of --calls calls
after a warm-up) of hp.stats (default and exact), hp.histogram (64 bins, given range),
hp.quantile (exact: small-data path and radix path; sketch) and QuantileSketch
add+merge, on a DistArray of 256^2 and 2^22 float64 elements.

    python benchmarks/kernels_repro.py [--runs 5] [--calls 21] [--sizes 24 25 26 27]

Writes benchmarks/results/kernels_repro.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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


KERNELS = textwrap.dedent("""
    import statistics, sys, time
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    from hpcproc.collectives import allreduce_state
    from hpcproc.kernels import moment_state as ms, _moments_nb as nb
    from hpcproc.kernels._engine import map_threads, split_rows

    def today_merge(a, b):  # the previous default's merge (Chan, Neumaier), verbatim
        out = np.empty_like(a)
        na, nb_ = a[:, 0], b[:, 0]
        n = na + nb_
        with np.errstate(all="ignore"):
            delta = b[:, 4] - a[:, 4]
            mean = a[:, 4] + delta * (nb_ / n)
            m2 = a[:, 5] + b[:, 5] + delta * delta * (na * nb_ / n)
            s = a[:, 2] + b[:, 2]
            big = np.abs(a[:, 2]) >= np.abs(b[:, 2])
            comp = np.where(big, (a[:, 2] - s) + b[:, 2], (b[:, 2] - s) + a[:, 2])
        out[:, 0] = n
        out[:, 1] = a[:, 1] + b[:, 1]
        out[:, 4] = np.where(na == 0, b[:, 4], np.where(nb_ == 0, a[:, 4], mean))
        out[:, 5] = np.where(na == 0, b[:, 5], np.where(nb_ == 0, a[:, 5], m2))
        out[:, 2] = s
        out[:, 3] = a[:, 3] + b[:, 3] + comp
        out[:, 6] = np.minimum(a[:, 6], b[:, 6])
        out[:, 7] = np.maximum(a[:, 7], b[:, 7])
        return out

    def today(block, comm):  # the previous default: chunk-sequential kernel per thread
        n, k = block.shape
        kern, arg = nb.moments_1d, block.reshape(-1)
        def run(lo, hi):
            out = nb.empty_state(k)
            kern(arg[lo:hi], out)
            return out
        state = nb.empty_state(k)
        for p in map_threads(run, split_rows(n)):
            state = today_merge(state, p)
        total = allreduce_state(state, today_merge, comm)
        return total[0, 2] + total[0, 3], total[0, 5] / total[0, 0]

    def new(block, comm, start, exact=False):
        state, _ = ms.block_state(block, comm, exact=exact, start=start)
        out = ms.finalize(allreduce_state(state, ms.merge, comm))
        return out["sum"][0], out["var"][0]

    comm = MPI.COMM_WORLD
    runs, threads = int(sys.argv[1]), int(sys.argv[2])
    sizes = [int(a) for a in sys.argv[3:]]
    hp.set_threads(threads)
    for p in sizes:
        n = (1 << p) // comm.size
        rng = np.random.default_rng(comm.rank)
        base = rng.random(n) * 10.0 + 1.0
        for name in ("float64", "float32"):
            block = base.astype(name).reshape(-1, 1)
            start = comm.rank * n
            cases = [("today", lambda: today(block, comm)),
                     ("new", lambda: new(block, comm, start))]
            if p == sizes[0]:
                cases.append(("exact", lambda: new(block, comm, start, True)))
            for _, fn in cases:
                fn()  # compile, warm up
            t = {c: [] for c, _ in cases}
            cpu = {c: [] for c, _ in cases}
            for _ in range(runs):
                for c, fn in cases:  # alternate: the same load for every kernel
                    comm.Barrier()
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    t1, c1 = time.perf_counter(), time.process_time()
                    t[c].append(comm.allreduce(t1 - t0, op=MPI.MAX))
                    cpu[c].append(comm.allreduce(c1 - c0, op=MPI.MAX))
            if comm.rank == 0:
                import os
                med = {c: statistics.median(v) for c, v in t.items()}
                mins = {c: min(v) for c, v in t.items()}
                cmed = {c: statistics.median(v) for c, v in cpu.items()}
                print(p, name, med["today"], med["new"], mins["new"] / mins["today"],
                      med.get("exact", float("nan")), cmed["new"] / cmed["today"],
                      os.getloadavg()[0], sep="\t", flush=True)
            del block
""")


def _kernel_part(sizes, runs):
    rows = []
    for ranks, threads in ((1, 1), (1, 2), (2, 1)):
        out = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, "-c", KERNELS,
                              str(runs), str(threads), *map(str, sizes)],
                             capture_output=True, text=True, timeout=7200, check=True).stdout
        for line in out.splitlines():
            p, name, a, b, rmin, x, rcpu, load = line.split("\t")
            rows.append((ranks, threads, f"2^{p}", name, float(a), float(b), float(rmin),
                         float(x), float(rcpu), float(load)))
            print(rows[-1], flush=True)
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
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 25, 26, 27])
    args = ap.parse_args()
    load0 = os.getloadavg()
    krows = _kernel_part(args.sizes, args.runs)
    prows = _percall_part(args.calls)
    lines = ["# Reproducible moment kernel and per-call cost", "",
             f"`python benchmarks/kernels_repro.py --runs {args.runs} --calls {args.calls} "
             f"--sizes {' '.join(map(str, args.sizes))}`; load average at start "
             f"{load0[0]:.1f} (2 cores, shared machine).", "",
             "## In-memory statistics: previous default vs the reproducible default", "",
             "One block per rank in memory (uniform data), kernel + merge over threads + "
             "merge across ranks + finalize; *previous* is the chunk-sequential kernel "
             "(`_moments_nb.moments_1d`, Chan/Neumaier merges in arrival order), *new* the "
             "reproducible default (`repro_state`), *exact* the correctly rounded "
             "`exact=True`. Times are medians of --runs (max over ranks), the kernels "
             "alternate within one run; *(minima)* is the ratio of the minima, *(CPU)* the "
             "ratio of the median CPU times (process time, max over ranks: less sensitive "
             "to the other processes of a loaded machine than wall time).", "",
             "| ranks | threads | elements | data | previous (s) | new (s) | new / previous "
             "(medians) | (minima) | (CPU) | exact / previous | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for ranks, th, size, name, a, b, rmin, x, rcpu, load in krows:
        ex = f"{x / a:.2f}x" if x == x else "-"
        lines.append(f"| {ranks} | {th} | {size} | {name} | {a:.4f} | {b:.4f} | {b / a:.3f} | "
                     f"{rmin:.3f} | {rcpu:.3f} | {ex} | {load:.1f} |")
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
