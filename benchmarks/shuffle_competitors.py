"""W2 sort / W3 group-by: hpcproc (2 MPI ranks) against Polars, DuckDB (2 threads each)
and Dask dataframe (threaded scheduler, 2 workers), single node, on the same HDF5 data.

    pip install -r benchmarks/requirements-shuffle.txt
    .venv/bin/python benchmarks/shuffle_competitors.py [--rows 2^24] [--repeat 3]

The driver (a plain Python process) generates the W2 / W3 files of ``benchmarks/shuffle.py``
(``benchmarks/data/{w2,w3u,w3z}-ROWS.h5``) if missing, launches hpcproc as its own
``mpiexec -n 2`` job (``--hp-worker``, JSON on stdout), then runs the competitors in
process, one library at a time. Each library's read (HDF5 -> its in-memory table) and
compute time are reported separately, median of ``--repeat`` runs after one dropped warm-up
run (hpcproc: slowest rank).

* hpcproc: ``hp.read_table``; ``hp.sort(t, "key")``; ``hp.groupby(t, "key").agg(value=
  ["sum", "count"])`` with strategy auto (dense for these 2**20-key data) and again with
  ``strategy="hash"`` (the path for sparse keys; rows "(hpcproc hash strategy)" compare it
  with the same competitor times).
* Polars: h5py read + ``pl.DataFrame``; ``df.sort("key")``;
  ``df.group_by("key").agg(sum, len)``. ``POLARS_MAX_THREADS=2``.
* DuckDB: h5py read + ``pyarrow.table`` registered in an in-memory DuckDB (``SET threads=2``);
  ``SELECT ... ORDER BY key`` / ``GROUP BY key`` fetched as numpy (materialised, as
  hpcproc's results are).
* Dask: h5py read + ``pandas.DataFrame`` + ``dd.from_pandas(npartitions=2)``;
  ``sort_values("key")`` / ``groupby("key").value.agg(["sum", "count"])``, ``.compute()``
  with ``scheduler="threads", num_workers=2``.

Results are appended to ``benchmarks/results/shuffle.md`` (ratio = competitor compute time
/ hpcproc compute time: below 1 means hpcproc is slower).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FILES = {"w2": ("uniform", 1 << 62), "w3u": ("uniform", 1 << 20), "w3z": ("zipf", 1 << 20)}
WORK = [("W2 sort", "w2", "sort"), ("W3 group-by uniform", "w3u", "groupby"),
        ("W3 group-by Zipf 1.2", "w3z", "groupby")]


HASH = " (hpcproc hash strategy)"


def _paths(data: Path, n: int):
    return {k: data / f"{k}-{n}.h5" for k in FILES}


def _load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# --- hpcproc, inside an MPI job ----------------------------------------------------
def hp_worker(args):
    from mpi4py import MPI

    import hpcproc as hp
    comm = MPI.COMM_WORLD
    paths = _paths(Path(args.data), args.rows)
    for k, (kind, keys) in FILES.items():
        if not paths[k].exists():
            hp.generate(str(paths[k]), kind, args.rows, keys=keys, seed=1, comm=comm)
    small = hp.DistTable.from_local({"key": np.arange(1000) % 7, "value": np.ones(1000)}, comm)
    hp.sort(small, "key")
    hp.groupby(small, "key").agg(value=["sum", "count"])

    def timed(fn):
        comm.Barrier()
        t0 = time.perf_counter()
        out = fn()
        return out, comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)

    hp.groupby(small, "key", strategy="hash").agg(value=["sum", "count"])
    cols = {"key": "/key", "value": "/value"}
    res = {}
    runs = [(label, f, op, "auto") for label, f, op in WORK]
    runs += [(label + HASH, f, op, "hash") for label, f, op in WORK if op == "groupby"]
    for label, f, op, strategy in runs:
        reads, comps = [], []
        for _ in range(args.repeat + 1):  # the first run (compilation, warm-up) is dropped
            t, r = timed(lambda: hp.read_table(str(paths[f]), cols, comm=comm))
            reads.append(r)
            if op == "sort":
                _, c = timed(lambda t=t: hp.sort(t, "key"))
            else:
                _, c = timed(lambda t=t: hp.groupby(t, "key", strategy=strategy).agg(
                    value=["sum", "count"]))
            comps.append(c)
            del t
        res[label] = (reads[1:], comps[1:])
    if comm.rank == 0:
        print("HPJSON" + json.dumps(res))


# --- competitors, in the driver ------------------------------------------------------
def _h5(path):
    import h5py
    with h5py.File(path, "r") as f:
        return f["key"][...], f["value"][...]


def polars_case(path, op):
    import polars as pl
    t0 = time.perf_counter()
    k, v = _h5(path)
    df = pl.DataFrame({"key": k, "value": v})
    t1 = time.perf_counter()
    if op == "sort":
        out = df.sort("key")
    else:
        out = df.group_by("key").agg(pl.col("value").sum().alias("sum"), pl.len().alias("count"))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out.height


def duckdb_case(path, op):
    import duckdb
    import pyarrow as pa
    con = duckdb.connect()
    con.execute("SET threads=2")
    t0 = time.perf_counter()
    k, v = _h5(path)
    tab = pa.table({"key": k, "value": v})
    con.register("t", tab)
    t1 = time.perf_counter()
    if op == "sort":
        out = con.execute("SELECT key, value FROM t ORDER BY key").fetchnumpy()
    else:
        out = con.execute("SELECT key, sum(value) AS s, count(*) AS c FROM t "
                          "GROUP BY key").fetchnumpy()
    t2 = time.perf_counter()
    con.close()
    return t1 - t0, t2 - t1, len(out["key"])


def dask_case(path, op):
    import dask
    import dask.dataframe as dd
    import pandas as pd
    t0 = time.perf_counter()
    k, v = _h5(path)
    ddf = dd.from_pandas(pd.DataFrame({"key": k, "value": v}), npartitions=2)
    t1 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        if op == "sort":
            out = ddf.sort_values("key").compute()
        else:
            out = ddf.groupby("key").value.agg(["sum", "count"]).compute()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(out)


CASES = {"Polars": polars_case, "DuckDB": duckdb_case, "Dask": dask_case}


def _versions():
    out = {}
    for mod in ("hpcproc", "polars", "duckdb", "dask", "pandas", "pyarrow", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "missing"
    return out


def main(argv=None):
    from hpcproc.cli import parse_count
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=parse_count, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--only", default="Polars,DuckDB,Dask")
    ap.add_argument("--hp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.hp_worker:
        return hp_worker(args)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    loads = [_load()]
    venv = ROOT / ".venv" / "bin"
    t0 = time.perf_counter()
    p = subprocess.run(["timeout", "-k", "15", "1800", str(venv / "mpiexec"), "-n", "2",
                        str(venv / "python"), __file__, "--hp-worker", "--rows", str(args.rows),
                        "--repeat", str(args.repeat), "--data", args.data],
                       capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"hpcproc job failed:\n{p.stdout}\n{p.stderr}")
    hp = json.loads(p.stdout.split("HPJSON", 1)[1].splitlines()[0])
    print(f"hpcproc job {time.perf_counter() - t0:.1f} s", flush=True)
    loads.append(_load())
    paths = _paths(Path(args.data), args.rows)
    res = {"hpcproc": {k: (float(np.median(r)), float(np.median(c))) for k, (r, c) in hp.items()}}
    for lib in args.only.split(","):
        res[lib] = {}
        for label, f, op in WORK:
            samples = [CASES[lib](paths[f], op) for _ in range(args.repeat + 1)][1:]
            res[lib][label] = (float(np.median([s[0] for s in samples])),
                               float(np.median([s[1] for s in samples])))
            print(lib, label, res[lib][label], "groups/rows", samples[0][2], flush=True)
        loads.append(_load())
    v = _versions()
    libs = list(res)  # hpcproc first
    lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: vs "
             f"{', '.join(libs[1:])} (benchmarks/shuffle_competitors.py): {args.rows} rows, median of "
             f"{args.repeat} (after 1 dropped warm-up run)\n",
             "hpcproc: 2 MPI ranks (slowest rank); Polars and DuckDB: 2 threads; Dask: threaded "
             "scheduler, 2 workers. Read = HDF5 to the library's in-memory table (h5py + "
             "frame construction for the competitors, `hp.read_table` for hpcproc). "
             "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ". "
             f"Load average (1/5/15 min) before / after each library: {' | '.join(loads)} "
             f"({os.cpu_count()} CPUs).\n",
             "| workload | " + " | ".join(f"{lib} read s | {lib} compute s" for lib in libs)
             + " | " + " | ".join(f"{lib} / hpcproc compute" for lib in libs[1:]) + " |",
             "|---" * (1 + 2 * len(libs) + len(libs) - 1) + "|"]
    rows = [(label, label) for label, _, _ in WORK]
    rows += [(label + HASH, label) for label, _, op in WORK if op == "groupby"]
    for mine, theirs in rows:
        ours = res["hpcproc"][mine][1]
        get = lambda lib: res[lib][mine if lib == "hpcproc" else theirs]  # noqa: E731
        cells = [f"{get(lib)[0]:.2f} | {get(lib)[1]:.2f}" for lib in libs]
        ratios = [f"{get(lib)[1] / ours:.2f}" for lib in libs[1:]]
        lines.append(f"| {mine} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with open(HERE / "results" / "shuffle.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
