"""Benchmark: statistics + 64-bin histogram of a >= 1.5 GiB float64 dataset on 2 ranks.

Contenders, all in one run, warm page cache and warm kernel cache, medians of --runs:
  hpcproc   hp.stats + hp.histogram on the file (mpiexec -n 2)
  native    native/hpcproc_stats.c: C + MPI, pread + optimized loops (the ceiling)
  mpi4py    a hand-written mpi4py + h5py + numpy script (mpiexec -n 2)
  dask      dask.array.from_array on h5py, threaded scheduler with 2 threads
Each does two passes (moments incl. min/max, then the histogram over [min, max]) and
reports its own processing time (after imports; max over ranks); the results are checked
against each other (count, min, max and histogram identical). Also the in-memory kernel
throughput against numpy's sum (the memory-bandwidth yardstick).

    python benchmarks/stats.py [--gib 1.5] [--runs 3] [--ranks 2]

Writes benchmarks/results/stats.md and stats.json. Needs `pip install -r
benchmarks/requirements-stats.txt` for Dask (skipped if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MPIEXEC = os.environ.get("HPCPROC_MPIEXEC", str(BIN / "mpiexec"))
RESULTS = REPO / "benchmarks" / "results"

HPCPROC = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from mpi4py import MPI
    import hpcproc as hp
    comm = MPI.COMM_WORLD
    target, bb = sys.argv[1] + ":/x", int(sys.argv[2])
    small = hp.DistArray.from_global(np.arange(10.0), comm)
    hp.stats(small), hp.histogram(small, 64)  # load the cached kernels
    comm.Barrier()
    t0 = time.perf_counter()
    s = hp.stats(target, comm=comm, block_bytes=bb)
    counts, _ = hp.histogram(target, 64, range=(s["min"], s["max"]), comm=comm, block_bytes=bb)
    dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"seconds": dt, "count": s["count"], "sum": s["sum"], "std": s["std"],
                          "min": s["min"], "max": s["max"], "hist": counts.tolist()}))
""")

MPI4PY = textwrap.dedent("""
    import json, sys, time
    import h5py, numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    f = h5py.File(sys.argv[1], "r")
    d = f["x"]
    n = d.shape[0]
    per, extra = divmod(n, comm.size)
    lo = comm.rank * per + min(comm.rank, extra)
    hi = lo + per + (comm.rank < extra)
    step = 1 << 20
    comm.Barrier()
    t0 = time.perf_counter()
    s = ss = 0.0
    mn, mx = np.inf, -np.inf
    for a in range(lo, hi, step):
        x = d[a:min(hi, a + step)]
        s += x.sum()
        ss += np.dot(x, x)
        mn, mx = min(mn, x.min()), max(mx, x.max())
    s, ss, cnt = comm.allreduce(s), comm.allreduce(ss), comm.allreduce(hi - lo)
    mn, mx = comm.allreduce(mn, op=MPI.MIN), comm.allreduce(mx, op=MPI.MAX)
    h = np.zeros(64, np.int64)
    for a in range(lo, hi, step):
        h += np.histogram(d[a:min(hi, a + step)], 64, range=(mn, mx))[0]
    comm.Allreduce(MPI.IN_PLACE, h, op=MPI.SUM)
    mean = s / cnt
    dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"seconds": dt, "count": cnt, "sum": s, "std": (ss / cnt - mean**2) ** 0.5,
                          "min": mn, "max": mx, "hist": h.tolist()}))
""")

DASK = textwrap.dedent("""
    import json, sys, time
    import dask, dask.array as da, h5py
    f = h5py.File(sys.argv[1], "r")
    x = da.from_array(f["x"], chunks=1 << 23)
    with dask.config.set(scheduler="threads", num_workers=2):
        t0 = time.perf_counter()
        s, sd, mn, mx = dask.compute(x.sum(), x.std(), x.min(), x.max())
        h = da.histogram(x, bins=64, range=(float(mn), float(mx)))[0].compute()
        dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "count": int(x.size), "sum": float(s), "std": float(sd),
                      "min": float(mn), "max": float(mx), "hist": h.tolist()}))
""")


def sh(cmd, timeout=900, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, **(env or {})))
    if out.returncode:
        raise RuntimeError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def build_native() -> Path:
    exe = REPO / "build" / "hpcproc_stats"
    src = REPO / "native" / "hpcproc_stats.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(exist_ok=True)
        sh([str(BIN / "mpicc"), "-O3", "-march=native", "-o", str(exe), str(src), "-lm"])
    return exe


def make_data(path: Path, gib: float, ranks: int) -> int:
    rows = int(gib * 2**30) // 8
    if not path.exists() or path.stat().st_size < rows * 8:
        sh([MPIEXEC, "-n", str(ranks), str(BIN / "hpcproc"), "generate", str(path),
            "--kind", "normal", "--rows", str(rows), "--seed", "1"])
    return rows


def kernel_throughput(gib: float = 0.5) -> dict:
    """In-memory throughput of the compiled kernels vs numpy's sum (GB/s, one rank)."""
    import hpcproc as hp
    x = np.random.default_rng(0).standard_normal(int(gib * 2**30) // 8)
    d = hp.DistArray.from_global(x)
    hp.stats(d), hp.histogram(d, 64, range=(-5, 5))

    def rate(f, k=5):
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return x.nbytes / 1e9 / statistics.median(ts)
    out = {"numpy_sum": rate(lambda: np.sum(x)),
           "numpy_mean_std_min_max": rate(lambda: (x.mean(), x.std(), x.min(), x.max()), 3),
           "hp_stats": rate(lambda: hp.stats(d)),
           "hp_histogram_64": rate(lambda: hp.histogram(d, 64, range=(-5, 5))),
           "np_histogram_64": rate(lambda: np.histogram(x, 64, range=(-5, 5)), 1)}
    return {k: round(v, 2) for k, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--block-bytes", type=int, default=8 << 20)
    p.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                  "hpcproc-bench-stats.h5"))
    args = p.parse_args(argv)
    import hpcproc as hp
    path = Path(args.data)
    rows = make_data(path, args.gib, args.ranks)
    info = hp.dataset_info(str(path), "/x")
    exe = build_native()
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name, text in (("hpcproc", HPCPROC), ("mpi4py", MPI4PY), ("dask", DASK)):
            scripts[name] = Path(tmp) / f"bench_{name}.py"
            scripts[name].write_text(text)
        py = sys.executable
        cmds = {
            "hpcproc": [MPIEXEC, "-n", str(args.ranks), py, str(scripts["hpcproc"]), str(path),
                        str(args.block_bytes)],
            "native": [MPIEXEC, "-n", str(args.ranks), str(exe), str(path), str(info.offset),
                       str(rows), "64"],
            "mpi4py": [MPIEXEC, "-n", str(args.ranks), py, str(scripts["mpi4py"]), str(path)],
        }
        try:
            import dask  # noqa: F401
            cmds["dask"] = [py, str(scripts["dask"]), str(path)]
        except ImportError:
            print("dask not installed: skipped (pip install -r benchmarks/requirements-stats.txt)")
        with open(path, "rb") as f:  # warm the page cache
            while f.read(64 << 20):
                pass
        times = {k: [] for k in cmds}
        results = {}
        for name, cmd in cmds.items():  # warm-up run (kernel cache, page cache)
            results[name] = json.loads(sh(cmd))
        for r in range(args.runs):
            for name, cmd in cmds.items():
                res = json.loads(sh(cmd))
                times[name].append(res["seconds"])
                print(f"run {r + 1} {name:8s} {res['seconds']:.3f} s", flush=True)
    load = os.getloadavg()[0]
    ref = results["native"]
    checks = {k: {"count": v["count"] == ref["count"], "min": v["min"] == ref["min"],
                  "max": v["max"] == ref["max"], "hist": v["hist"] == ref["hist"],
                  "sum_rel": abs(v["sum"] - ref["sum"]) / abs(ref["sum"])}
              for k, v in results.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    gb = rows * 8 / 1e9
    report = {"gib": rows * 8 / 2**30, "ranks": args.ranks, "runs": args.runs,
              "block_bytes": args.block_bytes, "load_average_1min": load,
              "cpus": os.cpu_count(), "median_seconds": med, "times": times,
              "hpcproc_vs": {k: med[k] / med["hpcproc"] for k in med},
              "GBps_per_pass": {k: 2 * gb / v for k, v in med.items()},
              "checks_vs_native": checks, "kernel_GBps_one_rank": kernel_throughput()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stats.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# stats + 64-bin histogram, {report['gib']:.2f} GiB float64, {args.ranks} ranks",
             "", f"Median of {args.runs} runs (warm page cache, warm kernel cache); two passes "
             "over the data each. Ratio = contender time / hpcproc time (> 1: hpcproc faster).",
             f"Machine: {os.cpu_count()} CPUs, 1-minute load average {load:.1f} at the end "
             "(other jobs share the machine: compare ratios, not absolute times).",
             "", "| contender | median s | GB/s (2 passes) | time / hpcproc | hist identical |",
             "|---|---|---|---|---|"]
    for k in med:
        lines.append(f"| {k} | {med[k]:.3f} | {report['GBps_per_pass'][k]:.2f} | "
                     f"{report['hpcproc_vs'][k]:.2f} | {checks[k]['hist']} |")
    kt = report["kernel_GBps_one_rank"]
    lines += ["", "In-memory kernel throughput, one rank, GB/s (numpy sum = memory-bandwidth "
              "yardstick):", "", "| kernel | GB/s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in kt.items()]
    lines += ["", f"hpcproc reaches {med['native'] / med['hpcproc']:.2f} of native speed.", ""]
    (RESULTS / "stats.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
