"""Benchmark: start-up cost of hpcproc against ``mpiexec -n 2 python -c "import mpi4py.MPI,
h5py"`` (the floor of any mpi4py + h5py program), measured in the same run.

Cases (wall time of a whole launch; medians of --repeat runs, cases interleaved so that
load drifts hit them alike):

* ``baseline``: ``mpiexec -n 2 python -c "import mpi4py.MPI, h5py"``
* ``cli warm``: ``mpiexec -n 2 hpcproc stats tiny.h5:/x`` (a warm Numba cache exists)
* ``cli cold``: the same with an empty ``HPCPROC_CACHE_DIR`` each time
* ``cli warm, numba`` / ``cli cold, numba``: both with ``HPCPROC_AOT=0`` (no
  ahead-of-time kernels: what every call cost before they existed)
* ``cli sort``: ``mpiexec -n 2 hpcproc sort tiny.h5:/k --with /v --out ...`` (shuffle
  kernels), and ``cli sort, numba`` with ``HPCPROC_AOT=0`` and a warm cache
* ``import hpcproc``: ``python -c "import hpcproc"`` against ``python -c "pass"``

and, in one process that has already imported hpcproc, mpi4py and h5py, the time of the
first ``hp.stats`` / ``hp.histogram`` call on a small DistArray and of the first
``hp.sort`` / ``hp.groupby`` / ``hp.join`` on a small table of full-range int64 keys and
float64 values (1 rank; a fresh process per call and case), with and without the
ahead-of-time kernels. The first call minus the second is the kernel loading.

    python benchmarks/startup.py [--repeat 7]

Writes benchmarks/results/startup.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MPIEXEC = os.environ.get("HPCPROC_MPIEXEC", str(BIN / "mpiexec"))
OUT = REPO / "benchmarks" / "results" / "startup.md"

FIRST_CALL = textwrap.dedent("""
    import sys, time
    import numpy as np, h5py
    from mpi4py import MPI
    import hpcproc as hp
    rng = np.random.default_rng(0)
    x = hp.DistArray.from_global(rng.standard_normal(10_000))
    k = rng.integers(-2**62, 2**62, 10_000)
    t = hp.DistTable.from_local({"k": k, "v": rng.standard_normal(10_000)})
    d = hp.DistTable.from_local({"k": k[::7].copy(), "w": rng.standard_normal(1429)})
    f = {"stats": lambda: hp.stats(x), "histogram": lambda: hp.histogram(x, bins=16),
         "sort": lambda: hp.sort(t, "k"),
         "groupby": lambda: hp.groupby(t, "k").agg(v=["sum", "count"]),
         "join": lambda: hp.join(t, d, on="k")}[sys.argv[1]]
    t0 = time.perf_counter()
    f()
    t1 = time.perf_counter()
    f()
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1, "numba" in sys.modules)
""")


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "MPI_LOCAL"))}
    env.update(extra or {})
    return env


def _wall(cmd, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=_env(env), check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - t0


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    if args.repeat < 5:
        ap.error("--repeat must be >= 5 (medians of at least 5 runs)")
    tmp = Path(tempfile.mkdtemp(prefix="hpcproc-startup-"))
    try:
        return _run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, tmp: Path) -> int:
    from hpcproc.kernels import _aot
    tiny = tmp / "tiny.h5"
    with h5py.File(tiny, "w") as f:
        f["x"] = np.arange(100, dtype=np.float64)
        f["k"] = np.random.default_rng(1).integers(-2**62, 2**62, 100)
        f["v"] = np.arange(100, dtype=np.float64)
    warm = str(tmp / "warm-cache")
    py, hpc = str(BIN / "python"), str(BIN / "hpcproc")
    mpi2 = [MPIEXEC, "-n", "2"]
    stats = mpi2 + [hpc, "stats", f"{tiny}:/x"]
    _wall(stats, {"HPCPROC_CACHE_DIR": warm, "HPCPROC_AOT": "0"})  # fill the warm cache
    _wall(stats, {"HPCPROC_CACHE_DIR": warm})
    outs = iter(range(10**6))

    def sort():
        return mpi2 + [hpc, "sort", f"{tiny}:/k", "--with", "/v", "--out",
                       str(tmp / f"sorted{next(outs)}.h5")]
    _wall(sort(), {"HPCPROC_CACHE_DIR": warm, "HPCPROC_AOT": "0"})  # warm shuffle kernels
    cold = iter(range(10**6))
    cases = {
        "baseline: mpiexec -n 2 python -c 'import mpi4py.MPI, h5py'":
            lambda: _wall(mpi2 + [py, "-c", "import mpi4py.MPI, h5py"]),
        "cli warm (mpiexec -n 2 hpcproc stats tiny.h5:/x)":
            lambda: _wall(stats, {"HPCPROC_CACHE_DIR": warm}),
        "cli cold (empty HPCPROC_CACHE_DIR)":
            lambda: _wall(stats, {"HPCPROC_CACHE_DIR": str(tmp / f"c{next(cold)}")}),
        "cli warm, HPCPROC_AOT=0 (Numba: the cost before)":
            lambda: _wall(stats, {"HPCPROC_CACHE_DIR": warm, "HPCPROC_AOT": "0"}),
        "cli cold, HPCPROC_AOT=0 (Numba compiles)":
            lambda: _wall(stats, {"HPCPROC_CACHE_DIR": str(tmp / f"c{next(cold)}"),
                                  "HPCPROC_AOT": "0"}),
        "cli sort (mpiexec -n 2 hpcproc sort tiny.h5:/k --with /v --out ...)":
            lambda: _wall(sort(), {"HPCPROC_CACHE_DIR": warm}),
        "cli sort, HPCPROC_AOT=0 (Numba, warm cache)":
            lambda: _wall(sort(), {"HPCPROC_CACHE_DIR": warm, "HPCPROC_AOT": "0"}),
        "python -c 'pass'": lambda: _wall([py, "-c", "pass"]),
        "python -c 'import hpcproc'": lambda: _wall([py, "-c", "import hpcproc"]),
    }
    load_before = _load()
    times = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    first = {}
    for fn in ("stats", "histogram", "sort", "groupby", "join"):
        subprocess.run([py, "-c", FIRST_CALL, fn], env=_env(  # warm the Numba cache
            {"HPCPROC_CACHE_DIR": warm, "HPCPROC_AOT": "0"}), capture_output=True, check=True,
            timeout=600)
        for mode, env in (("aot", {}), ("numba", {"HPCPROC_AOT": "0"})):
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run([py, "-c", FIRST_CALL, fn], env=_env(
                    {"HPCPROC_CACHE_DIR": warm, **env}), capture_output=True, text=True,
                    check=True, timeout=600)
                t1, t2, numba = out.stdout.split()
                runs.append((float(t1), float(t2), numba == "True"))
            first[(fn, mode)] = (statistics.median(r[0] for r in runs),
                                 statistics.median(r[1] for r in runs), runs[0][2])
    load_after = _load()
    base = med[next(iter(cases))]
    lines = [
        "# Start-up cost",
        "",
        "`python benchmarks/startup.py --repeat %d` (`make bench-startup`), %s, Python %s, "
        "%d CPUs. Load average (1, 5, 15 min) before: %s; after: %s. Ahead-of-time "
        "kernels: %s. Medians of %d runs, cases interleaved."
        % (args.repeat, platform.node(), platform.python_version(), os.cpu_count(),
           load_before, load_after, _aot.status(), args.repeat),
        "",
        "| launch | median s | vs baseline |",
        "|---|---:|---:|",
    ]
    for name, t in med.items():
        rel = f"+{t - base:.2f} s ({t / base:.2f}x)" if "mpiexec" in name or "cli" in name \
            else ""
        lines.append(f"| {name} | {t:.3f} | {rel} |")
    lines += [
        "",
        f"`import hpcproc` costs {med[list(cases)[-1]] - med[list(cases)[-2]]:.3f} s over "
        "an empty interpreter.",
        "",
        "First call in a process that has imported hpcproc, mpi4py and h5py (1 rank, "
        "10,000 float64 for stats/histogram; sort/groupby/join: 10,000 rows of full-range "
        "int64 keys and float64 values, joined with 1,429 rows; warm Numba cache for the "
        "Numba rows). First minus second call: the kernel loading.",
        "",
        "| call | kernels | first call s | second call s | first - second s | "
        "Numba imported |",
        "|---|---|---:|---:|---:|---|",
    ]
    for (fn, mode), (t1, t2, numba) in first.items():
        lines.append(f"| hp.{fn} | {mode} | {t1:.3f} | {t2:.4f} | {t1 - t2:.3f} | {numba} |")
    lines.append("")
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
