"""Benchmark W1: statistics + 64-bin histogram of a >= 1.5 GiB float64 dataset on 2 ranks.

hp.describe (one read: fused moments + histogram per block) against the one-pass native
reference `native/hpcproc_stats.c -1` (C + MPI, pread into a reused buffer, fused moments
+ vectorised bin index + sub-histograms per L2 slice), in the same run, alternating,
warm page cache, medians of --runs. Two cases:

  range given   the histogram range is known: one read for both (the W1 ceiling)
  range=None    numpy's [min, max]: both read twice (moments, then the histogram: the
                edges depend on the global min/max; see hpcproc/compute/describe.py); the
                native alternative that reads once and keeps its share in memory
                (`hpcproc_stats -k`) is measured too

Measured per case:
  compute   seconds inside a warm process (kernels loaded, after a barrier; max over
            ranks), and the CPU seconds of the same interval (user + system, max over
            ranks: robust to other jobs on a shared machine)
  process   wall seconds of the whole `mpiexec -n 2 ...` job: start-up, imports, kernel
            cache load (hpcproc: `hpcproc stats FILE:/x --hist 64` for range=None, a
            script calling hp.describe(range=...) for a given range)
The first read of a file in a process also checksums it for the lineage record (crc32,
on by default): the row "lineage off" runs with HPCPROC_LINEAGE=0, like the native code.
Plus `hp.stats` + `hp.histogram` (the two calls W1 used before) and, with --competitors,
a hand-written mpi4py + h5py + numpy script and Dask. Every contender's count, min, max
and histogram are checked against the native reference. In-memory kernel throughput:
the Numba describe kernel against the native fused loop (`hpcproc_stats -m`), one rank,
thread CPU time.

    python benchmarks/stats.py [--gib 1.5] [--runs 3] [--ranks 2] [--competitors]

Writes benchmarks/results/stats.md and stats.json (`make bench-stats`; --name NAME for
another file name, e.g. a --ranks 1 run next to the 2-rank one).
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
    target, bb, small, mode = sys.argv[1] + ":/x", int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = None if len(sys.argv) < 7 else (float(sys.argv[5]), float(sys.argv[6]))
    # warm-up on a tiny file: loads the kernels, h5py and the io modules (start-up costs,
    # in the *process* column), not the big file's lineage checksum (first read of it)
    if mode == "describe":
        hp.describe(small, 64, range=rng)
    else:
        hp.stats(small), hp.histogram(small, 64, range=rng)
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "describe":
        s = hp.describe(target, 64, range=rng, comm=comm, block_bytes=bb)
        counts = s["counts"]
    else:
        s = hp.stats(target, comm=comm, block_bytes=bb)
        counts, _ = hp.histogram(target, 64, range=rng or (s["min"], s["max"]), comm=comm,
                                 block_bytes=bb)
    dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    dc = comm.allreduce(time.process_time() - c0, op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"seconds": dt, "cpu_seconds": dc, "count": s["count"],
                          "sum": s["sum"], "std": s["std"], "min": s["min"],
                          "max": s["max"], "hist": counts.tolist()}))
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
    t0, c0 = time.perf_counter(), time.process_time()
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
    dc = comm.allreduce(time.process_time() - c0, op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"seconds": dt, "cpu_seconds": dc, "count": cnt, "sum": s,
                          "std": (ss / cnt - mean**2) ** 0.5, "min": mn, "max": mx,
                          "hist": h.tolist()}))
""")

DASK = textwrap.dedent("""
    import json, sys, time
    import dask, dask.array as da, h5py
    f = h5py.File(sys.argv[1], "r")
    x = da.from_array(f["x"], chunks=1 << 23)
    with dask.config.set(scheduler="threads", num_workers=2):
        t0, c0 = time.perf_counter(), time.process_time()
        s, sd, mn, mx = dask.compute(x.sum(), x.std(), x.min(), x.max())
        h = da.histogram(x, bins=64, range=(float(mn), float(mx)))[0].compute()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": dt, "cpu_seconds": dc, "count": int(x.size),
                      "sum": float(s), "std": float(sd), "min": float(mn),
                      "max": float(mx), "hist": h.tolist()}))
""")


def sh(cmd, timeout=900, env=None):
    """Run ``cmd``; (stdout, wall seconds of the whole job)."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout, wall


def build_native() -> Path:
    exe = REPO / "native" / "bin" / "hpcproc_stats"
    src = REPO / "native" / "hpcproc_stats.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(exist_ok=True)
        sh([str(BIN / "mpicc"), "-O3", "-march=native", "-o", str(exe), str(src), "-lm"])
    return exe


def make_data(path: Path, gib: float, ranks: int) -> int:
    rows = int(gib * 2**30) // 8
    if path.exists():  # a file of another size would be read whole by hp.describe but
        import h5py  # only in part by the native program: make it again
        try:
            with h5py.File(path, "r") as f:
                ok = f["x"].shape == (rows,)
        except (OSError, KeyError):
            ok = False
        if not ok:
            path.unlink()
    if not path.exists():
        sh([MPIEXEC, "-n", str(ranks), str(BIN / "hpcproc"), "generate", str(path),
            "--kind", "normal", "--rows", str(rows), "--seed", "1"])
    return rows


def kernel_throughput(exe: Path, path: Path, offset: int, rows: int, runs: int) -> dict:
    """In-memory GB/s, one rank, thread CPU time: what hp.describe runs on each piece
    (``DescribeState.add``: hp.stats' reproducible moments + the 64-bin histogram, 8 MiB
    pieces) vs the native fused loop on the same values."""
    from hpcproc.compute.histogram import edge_args
    from hpcproc.io.scan import PIECE
    from hpcproc.kernels.describe_state import DescribeState
    n = min(rows, 2**25)  # 256 MiB
    x = np.fromfile(path, dtype="<f8", count=n, offset=offset)
    e, uniform, norm = edge_args(np.histogram_bin_edges(x, 64))
    step = PIECE // 8

    def fold():
        state = DescribeState(e, uniform, norm)
        for i in range(0, n, step):
            state.add(x[i:i + step], None, start=i)

    def numba_rate():
        fold()
        ts = []
        for _ in range(5):
            t = time.thread_time()
            fold()
            ts.append(time.thread_time() - t)
        return x.nbytes / 1e9 / statistics.median(ts)
    out = {"numba": [], "native": []}
    for _ in range(runs):  # alternating
        out["numba"].append(numba_rate())
        res, _ = sh([MPIEXEC, "-n", "1", str(exe), "-m", str(path), str(offset), str(n), "64",
                     repr(float(e[0])), repr(float(e[-1]))])
        out["native"].append(json.loads(res)["GBps"])
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"GBps": out, "median_GBps": med, "numba_vs_native": med["numba"] / med["native"]}


def checksum_rate(path: Path, offset: int, rows: int, runs: int) -> dict:
    """The lineage checksum alone (the crc32 that hp.describe's first read of a file
    computes on a helper thread): GB/s on 8 MiB pieces in memory, one thread, thread
    CPU time, median of ``runs`` passes over up to 256 MiB."""
    from hpcproc.io import lineage
    from hpcproc.io.scan import PIECE
    crc32 = lineage.crc32_function()
    x = np.fromfile(path, dtype="<f8", count=min(rows, 2**25), offset=offset).view(np.uint8)
    ts = []
    for _ in range(runs + 1):
        t, c = time.thread_time(), 0
        for i in range(0, x.size, PIECE):
            c = crc32(x[i:i + PIECE], c)
        ts.append(time.thread_time() - t)
    gbps = x.nbytes / 1e9 / statistics.median(ts[1:])
    return {"function": f"{crc32.__module__}.{crc32.__name__}", "GBps": gbps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.5)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--block-bytes", type=int, default=64 << 20,
                   help="hpcproc's block size (default: its default, 64 MiB; the native "
                        "code reads 8 MiB pieces, measured faster for it than 64 MiB)")
    p.add_argument("--competitors", action="store_true",
                   help="also the mpi4py script and Dask (range=None)")
    p.add_argument("--name", default="stats",
                   help="results file name: benchmarks/results/NAME.md and NAME.json")
    p.add_argument("--data", default=None,
                   help="the data file (default: hpcproc-bench-stats-GIB.h5 in the "
                        "temporary directory; made if missing or of another size)")
    args = p.parse_args(argv)
    if args.data is None:
        args.data = os.path.join(tempfile.gettempdir(), f"hpcproc-bench-stats-{args.gib:g}.h5")
    import hpcproc as hp
    path = Path(args.data)
    rows = make_data(path, args.gib, args.ranks)
    info = hp.dataset_info(str(path), "/x")
    exe = build_native()
    n = ["-n", str(args.ranks)]
    load = [os.getloadavg()[0]]
    with open(path, "rb") as f:  # warm the page cache
        while f.read(64 << 20):
            pass
    native = [MPIEXEC, *n, str(exe), "-1", str(path), str(info.offset), str(rows), "64"]
    ref = json.loads(sh(native)[0])
    rng = [repr(ref["min"]), repr(ref["max"])]  # the same edges as range=None
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name, text in (("hpcproc", HPCPROC), ("mpi4py", MPI4PY), ("dask", DASK)):
            scripts[name] = Path(tmp) / f"bench_{name}.py"
            scripts[name].write_text(text)
        py, bb = sys.executable, str(args.block_bytes)
        warm = Path(tmp) / "warm.h5"
        import h5py
        with h5py.File(warm, "w") as f:
            f["x"] = np.arange(1000.0)
        hps = [MPIEXEC, *n, py, str(scripts["hpcproc"]), str(path), bb, f"{warm}:/x"]
        cmds = {  # name: (case, command, whole-process command or None)
            "native, range given": ("given", native + rng, None),
            "hp.describe, range given": ("given", hps + ["describe"] + rng, None),
            "hp.describe, range given, lineage off": (
                "given", ["env", "HPCPROC_LINEAGE=0"] + hps + ["describe"] + rng, None),
            "native, range=None": ("none", native, None),
            "native, range=None, one read kept in memory": (
                "none", [c if c != "-1" else "-k" for c in native], None),
            "hp.describe, range=None": ("none", hps + ["describe"], [
                MPIEXEC, *n, str(BIN / "hpcproc"), "stats", f"{path}:/x", "--hist", "64",
                "--json", "--block-bytes", bb]),
            "hp.stats + hp.histogram": ("none", hps + ["separate"], None),
        }
        if args.competitors:
            cmds["mpi4py script"] = ("none", [MPIEXEC, *n, py, str(scripts["mpi4py"]),
                                              str(path)], None)
            try:
                import dask  # noqa: F401
                cmds["dask"] = ("none", [py, str(scripts["dask"]), str(path)], None)
            except ImportError:
                print("dask not installed: skipped (pip install -r "
                      "benchmarks/requirements-stats.txt)")
        times = {k: {"seconds": [], "cpu_seconds": [], "process": []} for k in cmds}
        results = {}
        for name, (_, cmd, _) in cmds.items():  # warm-up (kernel cache, page cache)
            results[name] = json.loads(sh(cmd)[0])
        for r in range(args.runs):
            for name, (_, cmd, whole) in cmds.items():
                out, wall = sh(cmd)
                res = json.loads(out)
                times[name]["seconds"].append(res["seconds"])
                times[name]["cpu_seconds"].append(res["cpu_seconds"])
                if whole is not None:
                    wall = sh(whole)[1]
                times[name]["process"].append(wall)
                print(f"run {r + 1} {name:26s} {res['seconds']:.3f} s (cpu "
                      f"{res['cpu_seconds']:.3f} s), process {wall:.3f} s", flush=True)
            load.append(os.getloadavg()[0])
    kern = kernel_throughput(exe, path, info.offset, rows, args.runs)
    crc = checksum_rate(path, info.offset, rows, max(3, args.runs))
    load.append(os.getloadavg()[0])
    checks = {k: {"count": v["count"] == ref["count"], "min": v["min"] == ref["min"],
                  "max": v["max"] == ref["max"], "hist": v["hist"] == ref["hist"],
                  "sum_rel": abs(v["sum"] - ref["sum"]) / abs(ref["sum"])}
              for k, v in results.items()}
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in times.items()}
    base = {"given": "native, range given", "none": "native, range=None"}
    ratio = {k: {m: med[base[case]][m] / med[k][m] for m in med[k]}
             for k, (case, _, _) in cmds.items()}
    gb = rows * 8 / 1e9
    report = {"gib": rows * 8 / 2**30, "ranks": args.ranks, "runs": args.runs,
              "block_bytes": args.block_bytes, "load_average_1min": load,
              "cpus": os.cpu_count(), "median": med, "times": times,
              "throughput_vs_native": ratio, "checks_vs_native": checks, "kernels": kern,
              "lineage_checksum": crc}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# W1: statistics + 64-bin histogram, {report['gib']:.2f} GiB float64, "
        f"{args.ranks} ranks", "",
        f"`python benchmarks/stats.py --gib {args.gib} --runs {args.runs} --ranks "
        f"{args.ranks}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Medians of {args.runs} "
        "alternating runs, warm page cache. *compute*: inside a warm process (kernels "
        "loaded), max over ranks; *cpu*: CPU seconds of that interval (robust to other "
        "jobs); *process*: wall time of the whole `mpiexec` job (start-up, imports, kernel "
        "cache load). Ratio = native time / contender time = throughput relative to the "
        "native reference of the same case (1.00: as fast as C). hpcproc's warm-up call "
        "reads a tiny file (kernels, h5py and io modules loaded); the timed call is the "
        "first read of the big file in the process (lineage checksum included unless "
        "'lineage off'). hp.stats/hp.describe read contiguous files in pieces of "
        f"min({args.block_bytes >> 20} MiB, 8 MiB) per rank, like the native code.",
        f"Machine: {os.cpu_count()} CPUs shared with other jobs; 1-minute load average "
        f"{', '.join(f'{v:.1f}' for v in load)} (start, after each round, end).", "",
        "| contender | reads | compute s | cpu s | process s | GB/s (compute) | "
        "compute ratio | cpu ratio | process ratio | hist identical |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for k, (case, _, _) in cmds.items():
        m, q = med[k], ratio[k]
        reads = 1 if case == "given" or "one read" in k else 2
        lines.append(f"| {k} | {reads} | {m['seconds']:.3f} | {m['cpu_seconds']:.3f} | "
                     f"{m['process']:.3f} | {gb / m['seconds']:.2f} | {q['seconds']:.2f} | "
                     f"{q['cpu_seconds']:.2f} | {q['process']:.2f} | {checks[k]['hist']} |")
    km = kern["median_GBps"]
    lines += ["", "In-memory kernels (hp.describe's per-piece fold: reproducible moments + "
              "64-bin histogram; native: fused loop), one rank, thread CPU "
              f"time: hpcproc {km['numba']:.2f} GB/s, native {km['native']:.2f} GB/s: "
              f"**{kern['numba_vs_native']:.2f}** of native.", "",
              f"Lineage checksum alone (`{crc['function']}`, 8 MiB pieces in memory, one "
              f"thread): {crc['GBps']:.1f} GB/s, {1 / crc['GBps']:.3f} CPU s per GB read.",
              "",
              "The hp.describe *process* time for range=None is `hpcproc stats FILE:/x --hist "
              "64 --json` (the command a user runs); for a given range, the benchmark script "
              "(imports, one small call that loads the kernels, the timed call).", ""]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
