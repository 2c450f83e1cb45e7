"""Shuffles on GENERAL keys: hpcproc against Polars (streaming and eager), DuckDB and
hand-written mpi4py + numpy, same HDF5 files, one engine at a time, in one run.

    make bench-shuffle-general            # 2**26 rows, 2 ranks / 2 threads, 3 launches
    .venv/bin/python benchmarks/shuffle_general.py [--rows 2^22] [--launches 3]
                                                   [--repeat 1] [--only ...] [--engines ...]

Workloads (``--rows`` N, files made once with numpy + h5py under benchmarks/data/):

* ``sort``: N rows, int64 key uniform over the full int64 range + int64 value;
* ``groupby``: N/2 distinct full-range int64 keys, each on 1 + Poisson(1) rows (about N
  rows, shuffled), float64 value; sum and count per key;
* ``join``: N fact rows (key, val) x N/4 dimension rows (distinct full-range keys, w);
  every fact key matches; inner join, then sum(val * w);
* ``dense`` / ``dense-zipf``: N rows, int64 key in [0, 2**20) uniform / Zipf(1.2),
  float64 value; sum and count per key (hpcproc's dense path; the hand-written
  version is ``np.bincount`` + ``MPI.Reduce``, then the keys seen and their sums and
  counts on the root, as hpcproc returns them).

Every engine runs in its own process (MPI engines as ``mpiexec -n RANKS``; Polars with
``POLARS_MAX_THREADS`` = DuckDB ``threads`` = RANKS), one after another, data freed in
between; the driver reads the workload's file just before each engine starts (every engine
finds it in the page cache). Each engine is launched ``--launches`` times per workload
(3), the engines in an order rotated at every round, so that none is always the first
process after an idle spell (on a virtual machine that returns freed memory to its host,
the first process to touch memory again pays for it: one such sample of hpcproc's sort
took 5.84 s against 3.04-3.10 s in later launches). Each process reads the file(s) into
memory and runs the workload ``repeat + 1`` times; the first run (compilation, warm-up)
is dropped. Reported per engine: ``compute`` (median over every launch's runs, slowest
rank; MPI ranks start it together, after a barrier, so that it never counts one rank
waiting for another's read), ``run`` (median of read + compute: what one pass over the
file costs) and ``process`` (median over the launches of the wall time from launch to the
process's first result: interpreter and imports, MPI start-up, read, first compute). The hpcproc
process also measures ``MPI_Alltoallv`` between its ranks (warm buffers, and into a newly
allocated receive buffer: the page faults that any exchange returning new arrays pays) and the bytes
per second of ``hp.exchange`` (random destinations: partition + scatter + Alltoallv) and
of the group-by's contiguous exchange, in the same run; for ``dense`` / ``dense-zipf`` it
also times its group-by and the hand-written one taking turns on the same table (the same
memory and load: the robust ratio on a shared machine). Results (with the load average)
are appended to ``benchmarks/results/shuffle_general.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
MPIEXEC = str(Path(PY).parent / "mpiexec")
WORKLOADS = ("sort", "groupby", "join", "dense", "dense-zipf")
ENGINES = ("hpcproc", "mpi4py", "polars-streaming", "polars-eager", "duckdb")
I64 = np.iinfo(np.int64)


def _parse_count(text: str) -> int:
    return int(eval(text.replace("^", "**"), {"__builtins__": {}}))  # "2^26", "1<<22"


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- data ------------------------------------------------------------------------------
def _files(data: Path, n: int) -> dict:
    return {w: data / f"general-{w}-{n}.h5" for w in ("sort", "groupby", "join", "dense",
                                                     "dense-zipf")}


def _write(path: Path, **cols) -> None:
    import h5py
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=v)
    tmp.rename(path)


def make_data(data: Path, n: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    files = _files(data, n)
    rng = np.random.default_rng(1)
    if not files["sort"].exists():
        _write(files["sort"], key=rng.integers(I64.min, I64.max, n, dtype=np.int64,
                                               endpoint=True),
               value=rng.integers(0, 1 << 40, n))
    if not files["groupby"].exists():
        uk = np.unique(rng.integers(I64.min, I64.max, n // 2, dtype=np.int64, endpoint=True))
        key = np.repeat(uk, 1 + rng.poisson(1.0, uk.size))
        rng.shuffle(key)
        _write(files["groupby"], key=key, value=rng.random(key.size))
        del uk, key
    if not files["join"].exists():
        dim = np.unique(rng.integers(I64.min, I64.max, n // 4, dtype=np.int64, endpoint=True))
        fact = dim[rng.integers(0, dim.size, n)]
        _write(files["join"], key=fact, val=rng.random(n), dkey=rng.permutation(dim),
               w=rng.random(dim.size))
        del dim, fact
    if not files["dense"].exists():
        _write(files["dense"], key=rng.integers(0, 1 << 20, n), value=rng.random(n))
    if not files["dense-zipf"].exists():
        k = (rng.zipf(1.2, n) - 1) % (1 << 20)
        _write(files["dense-zipf"], key=k.astype(np.int64), value=rng.random(n))


def _read(path, names, a=0, b=None):
    import h5py
    with h5py.File(path, "r") as f:
        return {k: f[k][a:b] for k in names}


# --- MPI workers -------------------------------------------------------------------------
def _mpi_worker(args) -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    path = _files(Path(args.data), args.rows)[args.workload]
    if args.engine == "hpcproc":
        import hpcproc as hp
        run, read = _hp_case(hp, comm, args.workload, path)
    else:
        run, read = _hand_case(comm, args.workload, path)
    reads, comps, checks = [], [], []
    first = None
    for _ in range(args.repeat + 1):
        comm.Barrier()
        t0 = time.perf_counter()
        state = read()
        comm.Barrier()  # compute starts together: it never includes another rank's read
        t1 = time.perf_counter()
        checks.append(run(state))
        t2 = time.perf_counter()
        del state
        r, c = comm.allreduce((t1 - t0, t2 - t1), op=_max_pair(MPI))
        if first is None:
            first = comm.allreduce(time.time(), op=MPI.MAX) - args.launch
        reads.append(r)
        comps.append(c)
    extra = _exchange_rates(comm, args.rows) if args.engine == "hpcproc" and \
        args.workload == "groupby" else {}
    if args.engine == "hpcproc" and args.workload.startswith("dense"):
        extra = _dense_interleaved(comm, path, args.workload, 3)
    if comm.rank == 0:
        print("RESULT" + json.dumps({"read": reads[1:], "compute": comps[1:], "process": first,
                                     "check": checks[-1], **extra}), flush=True)


def _max_pair(MPI):
    return MPI.Op.Create(lambda a, b, t: b if a is None else tuple(map(max, a, b)),
                         commute=True)


def _local_rows(comm, path, names):
    import h5py
    with h5py.File(path, "r") as f:
        n = f[names[0]].shape[0]
    a, b = n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size
    return a, b


def _hp_case(hp, comm, workload, path):
    from mpi4py import MPI
    if workload == "join":
        def read():
            return (hp.read_table(str(path), {"key": "/key", "val": "/val"}, comm=comm),
                    hp.read_table(str(path), {"key": "/dkey", "w": "/w"}, comm=comm))

        def run(s):
            out = hp.join(s[0], s[1], "key")
            part = float(np.dot(out.local("val"), out.local("w")))
            return comm.allreduce(part, op=MPI.SUM)
        return run, read

    def read():
        return hp.read_table(str(path), {"key": "/key", "value": "/value"}, comm=comm)

    if workload == "sort":
        def run(t):
            out = hp.sort(t, "key")
            return out.total_rows if hasattr(out, "total_rows") else sum(out.meta["rank_rows"])
        return run, read

    def run(t):
        out = hp.groupby(t, "key").agg(value=["sum", "count"])
        return [sum(out.meta["rank_rows"]), out.meta["strategy"]]
    return run, read


def _hand_case(comm, workload, path):
    from mpi4py import MPI
    from shuffle import _alltoallv, handwritten_groupby, handwritten_sort
    if workload == "join":
        def read():
            a, b = _local_rows(comm, path, ["key"])
            f = _read(path, ["key", "val"], a, b)
            a, b = _local_rows(comm, path, ["dkey"])
            d = _read(path, ["dkey", "w"], a, b)
            return f, d

        def run(s):
            f, d = s
            p = comm.Get_size()

            def part(key, *cols):
                dest = (key % p).astype(np.int64)
                order = np.argsort(dest, kind="stable")
                counts = np.bincount(dest, minlength=p).astype(np.int64)
                return [_alltoallv(comm, c[order], counts) for c in (key,) + cols]
            fk, fv = part(f["key"], f["val"])
            dk, dw = part(d["dkey"], d["w"])
            o = np.argsort(dk)
            dk, dw = dk[o], dw[o]
            i = np.searchsorted(dk, fk)
            i[i == dk.size] = 0
            hit = dk[i] == fk
            return comm.allreduce(float(np.dot(fv[hit], dw[i[hit]])), op=MPI.SUM)
        return run, read

    def read():
        a, b = _local_rows(comm, path, ["key"])
        return _read(path, ["key", "value"], a, b)

    if workload == "sort":
        return (lambda s: comm.allreduce(int(handwritten_sort(comm, s["key"], s["value"])[0]
                                             .size))), read
    if workload == "groupby":
        return (lambda s: comm.allreduce(int(handwritten_groupby(comm, s["key"], s["value"])[0]
                                             .size))), read

    def dense(s):  # the key range known in advance (hpcproc finds it: one more pass)
        span = 1 << 20
        sums = np.bincount(s["key"], weights=s["value"], minlength=span)
        cnt = np.bincount(s["key"], minlength=span)  # int64 (intp) already: no copy
        comm.Reduce(MPI.IN_PLACE if comm.rank == 0 else sums, sums, op=MPI.SUM, root=0)
        comm.Reduce(MPI.IN_PLACE if comm.rank == 0 else cnt, cnt, op=MPI.SUM, root=0)
        if comm.rank:
            return 0
        keys = np.flatnonzero(cnt)  # the result, as hpcproc's: the keys seen, their states
        out = keys, sums[keys], cnt[keys]
        return int(out[0].size)
    return dense, read


def _dense_interleaved(comm, path, workload, repeat) -> dict:
    """Compute seconds (medians, slowest rank) of hpcproc's dense group-by and of the
    hand-written one taking turns ``repeat`` times (after one dropped turn) in this one
    process, on the same table: the same memory (page size, cache state) and the same load,
    which separate processes run one after the other do not share."""
    from mpi4py import MPI

    import hpcproc as hp
    hp_run, read = _hp_case(hp, comm, workload, path)
    hand_run = _hand_case(comm, workload, path)[0]
    t = read()
    cols = {"key": t.local("key"), "value": t.local("value")}
    times = {"hpcproc": [], "mpi4py": []}
    pair = [("hpcproc", hp_run, t), ("mpi4py", hand_run, cols)]
    for i in range(repeat + 1):
        for name, fn, arg in pair if i % 2 else pair[::-1]:
            comm.Barrier()
            t0 = time.perf_counter()
            fn(arg)
            dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if i:
                times[name].append(dt)
    return {"interleaved": {k: float(np.median(v)) for k, v in times.items()}}


def _exchange_rates(comm, rows) -> dict:
    """Bytes per second of MPI_Alltoallv (warm buffers; into a new receive buffer; warm,
    with this rank's own rows copied by numpy instead, as the exchange does), hp.exchange
    (random destinations: first call, repeated with new outputs, repeated with ``out=``),
    the hand-written equivalent (stable argsort + take + Alltoallv per column) and the
    contiguous exchange, 16-byte rows, rows / ranks per rank. The same rows, bytes and
    destinations in every case; bytes counted: those leaving each rank."""
    from mpi4py import MPI

    import hpcproc as hp
    from hpcproc.comm import lib_comm
    from hpcproc.shuffles._exchange import exchange_runs
    lc = lib_comm(comm)
    p, n, me = comm.size, rows // comm.size, comm.rank
    rng = np.random.default_rng(comm.rank)
    cols = {"key": rng.integers(I64.min, I64.max, n, dtype=np.int64), "value": rng.random(n)}
    dest = rng.integers(0, p, n).astype(np.uint8)
    counts = np.bincount(dest, minlength=p).astype(np.int64)
    recv = np.empty_like(counts)
    comm.Alltoall(counts, recv)
    order = np.argsort(dest, kind="stable")
    runs = {k: v[order] for k, v in cols.items()}
    del order
    # the rows themselves, grouped by destination (a send buffer of zeros from np.zeros
    # is never written: every page maps the one zero page, always in cache, and the
    # Alltoallv measured 1.2x faster than with real data)
    sb = np.empty((n, 2), np.uint64)
    sb[:, 0], sb[:, 1] = runs["key"].view(np.uint64), runs["value"].view(np.uint64)
    sb = sb.reshape(-1).view(np.uint8)
    rb = np.ones(int(recv.sum()) * 16 + 16, np.uint8)
    sd = np.r_[0, np.cumsum(counts)[:-1]] * 16
    rd = np.r_[0, np.cumsum(recv)[:-1]] * 16

    def med(fn, k=3):
        ts = []
        for _ in range(k):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            ts.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        return float(np.median(ts))
    moved = comm.allreduce(int((counts.sum() - counts[comm.rank]) * 16), op=MPI.MAX)
    raw = med(lambda: lc.Alltoallv([sb, (counts * 16, sd), MPI.BYTE],
                                   [rb, (recv * 16, rd), MPI.BYTE]))
    sremote, rremote = counts.copy(), recv.copy()
    sremote[me] = rremote[me] = 0

    def selfcopy():  # own rows by numpy (MPICH's Alltoallv copies them 2-9x slower)
        own = slice(sd[me], sd[me] + counts[me] * 16)
        rb[rd[me]:rd[me] + counts[me] * 16] = sb[own]
        lc.Alltoallv([sb, (sremote * 16, sd), MPI.BYTE], [rb, (rremote * 16, rd), MPI.BYTE])
    raw_self = med(selfcopy)

    def fresh():  # what any exchange that returns new arrays pays: a new receive buffer
        out = np.empty_like(rb)
        lc.Alltoallv([sb, (counts * 16, sd), MPI.BYTE], [out, (recv * 16, rd), MPI.BYTE])
    raw_fresh = med(fresh)
    ex = med(lambda: hp.exchange(cols, dest, comm))  # new output arrays, staging kept

    def cold():  # the first call: staging buffers and outputs all new memory
        hp.release_exchange_buffers(comm)
        hp.exchange(cols, dest, comm)
    ex_cold = med(cold)
    # a simulation's time step: the same preallocated outputs every call (out=)
    out = {k: np.empty(int(recv.sum()), v.dtype) for k, v in cols.items()}
    hp.exchange(cols, dest, comm, out=out)
    ex_out = med(lambda: hp.exchange(cols, dest, comm, out=out))

    def hand():  # what a user writes: stable argsort, take, one Alltoallv per column
        order = np.argsort(dest, kind="stable")
        c = np.bincount(dest, minlength=p).astype(np.int64)
        r = np.empty_like(c)
        comm.Alltoall(c, r)
        for v in cols.values():
            got = np.empty(int(r.sum()), v.dtype)
            comm.Alltoallv([v[order], (c, np.r_[0, np.cumsum(c)[:-1]])],
                           [got, (r, np.r_[0, np.cumsum(r)[:-1]])])
    ex_hand = med(hand)
    ctg = med(lambda: exchange_runs(runs, counts, comm))
    return {"alltoallv_GBps": moved / raw / 1e9, "alltoallv_fresh_GBps": moved / raw_fresh / 1e9,
            "alltoallv_selfcopy_GBps": moved / raw_self / 1e9,
            "exchange_GBps": moved / ex / 1e9, "exchange_cold_GBps": moved / ex_cold / 1e9,
            "exchange_out_GBps": moved / ex_out / 1e9, "handwritten_GBps": moved / ex_hand / 1e9,
            "contiguous_GBps": moved / ctg / 1e9, "moved_bytes": moved}


# --- single-process engines ------------------------------------------------------------
def _py_worker(args) -> None:
    path = _files(Path(args.data), args.rows)[args.workload]
    threads = args.ranks
    if args.engine.startswith("polars"):
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        import polars as pl
        eng = "streaming" if args.engine == "polars-streaming" else "in-memory"
        read, run = _polars_case(pl, eng, args.workload, path)
    else:
        import duckdb
        con = duckdb.connect()
        con.execute(f"SET threads={threads}")
        read, run = _duckdb_case(con, args.workload, path)
    reads, comps, first, check = [], [], None, None
    for _ in range(args.repeat + 1):
        t0 = time.perf_counter()
        state = read()
        t1 = time.perf_counter()
        check = run(state)
        t2 = time.perf_counter()
        del state
        if first is None:
            first = time.time() - args.launch
        reads.append(t1 - t0)
        comps.append(t2 - t1)
    print("RESULT" + json.dumps({"read": reads[1:], "compute": comps[1:], "process": first,
                                 "check": check}), flush=True)


def _polars_case(pl, eng, workload, path):
    if workload == "join":
        def read():
            c = _read(path, ["key", "val", "dkey", "w"])
            return (pl.DataFrame({"key": c["key"], "val": c["val"]}),
                    pl.DataFrame({"key": c["dkey"], "w": c["w"]}))

        def run(s):
            q = s[0].lazy().join(s[1].lazy(), on="key").select((pl.col("val") * pl.col("w")).sum())
            return float(q.collect(engine=eng).item())
        return read, run

    def read():
        return pl.DataFrame(_read(path, ["key", "value"]))

    if workload == "sort":
        return read, lambda df: df.lazy().sort("key").collect(engine=eng).height
    return read, lambda df: df.lazy().group_by("key").agg(
        pl.col("value").sum().alias("sum"), pl.len().alias("count")).collect(engine=eng).height


def _duckdb_case(con, workload, path):
    import pyarrow as pa

    if workload == "join":
        def read():
            c = _read(path, ["key", "val", "dkey", "w"])
            con.register("fact", pa.table({"key": c["key"], "val": c["val"]}))
            con.register("dim", pa.table({"key": c["dkey"], "w": c["w"]}))
            return None

        def run(_):
            return float(con.execute("SELECT sum(val * w) FROM fact JOIN dim USING (key)")
                         .fetchall()[0][0])
        return read, run

    def read():
        con.register("t", pa.table(_read(path, ["key", "value"])))
        return None

    if workload == "sort":
        return read, lambda _: len(con.execute("SELECT * FROM t ORDER BY key")
                                   .fetchnumpy()["key"])
    return read, lambda _: len(con.execute(
        "SELECT key, sum(value), count(*) FROM t GROUP BY key").fetchnumpy()["key"])


# --- driver -----------------------------------------------------------------------------
def _warm(path: Path) -> None:
    """Read the file once so that every engine starts with it in the page cache (the
    kernel reclaims idle cache pages here within minutes: the first engine of a workload
    read part of its file from disk)."""
    buf = bytearray(64 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def _launch(engine, workload, args) -> dict:
    cmd = [PY, str(Path(__file__)), "--worker", "--engine", engine, "--workload", workload,
           "--rows", str(args.rows), "--repeat", str(args.repeat), "--data", args.data,
           "--ranks", str(args.ranks)]
    if engine in ("hpcproc", "mpi4py"):
        cmd = [MPIEXEC, "-n", str(args.ranks)] + cmd
    _warm(_files(Path(args.data), args.rows)[workload])
    launch = time.time()
    proc = subprocess.run(cmd + ["--launch", repr(launch)], capture_output=True, text=True,
                          timeout=3600, cwd=str(HERE))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(f"{engine} {workload} failed:\n{proc.stdout[-2000:]}\n"
                       f"{proc.stderr[-4000:]}")


def _merge(launches: list) -> dict:
    """One engine's results over its launches: every timed run's read and compute, the
    median of the process times (all kept), the median of every other number (the
    exchange's rates, the dense group-by's turns), the last check."""
    out = {"read": [x for r in launches for x in r["read"]],
           "compute": [x for r in launches for x in r["compute"]],
           "process": float(np.median([r["process"] for r in launches])),
           "processes": [r["process"] for r in launches], "check": launches[-1]["check"]}
    for key, value in launches[0].items():
        if key in out:
            continue
        if isinstance(value, dict):
            out[key] = {k: float(np.median([r[key][k] for r in launches])) for k in value}
        else:
            out[key] = float(np.median([r[key] for r in launches]))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=_parse_count, default=1 << 26)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--launches", type=int, default=3)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--data", default=str(HERE / "data"))
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--launch", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return (_mpi_worker if args.engine in ("hpcproc", "mpi4py") else _py_worker)(args)
    if args.launches < 1 or args.repeat < 1:
        ap.error("--launches and --repeat must be at least 1")
    make_data(Path(args.data), args.rows)
    loads = [_load()]
    engines = args.engines.split(",")
    res = {}
    for w in args.only.split(","):
        runs = {e: [] for e in engines}
        for k in range(args.launches):  # rotated: no engine always launches first
            for e in engines[k % len(engines):] + engines[:k % len(engines)]:
                r = _launch(e, w, args)
                runs[e].append(r)
                print(f"{w:11s} {e:17s} compute {np.median(r['compute']):7.2f} s  "
                      f"process {r['process']:7.2f} s  check {r['check']}  load {_load()}",
                      flush=True)
        for e in engines:
            res[w, e] = _merge(runs[e])
    loads.append(_load())
    text = _report(res, args, loads)
    print(text)
    if not args.no_write:
        out = HERE / "results" / "shuffle_general.md"
        if not out.exists():
            out.write_text("# Shuffles on general keys (benchmarks/shuffle_general.py)\n\n"
                           "Reproduce: `make bench-shuffle-general`. Ratio = peer time / "
                           "hpcproc time (above 1: hpcproc is faster).\n")
        with out.open("a") as f:
            f.write(text)


def _report(res, args, loads) -> str:
    import platform
    lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: {args.rows} rows, "
             f"{args.ranks} ranks / threads, {os.cpu_count()} CPUs, {args.launches} "
             f"launches of each engine in rotated order, {args.repeat} timed run(s) each "
             f"(first run dropped)\n",
             f"Load average (1/5/15 min) at start / end: {' | '.join(loads)}. "
             f"{platform.python_version()}, numpy {np.__version__}.\n",
             "compute = the operation on data in memory (slowest rank); run = read + compute; "
             "process = launch to first result (imports, start-up, read, first compute; "
             "median of the launches, each launch's in brackets).\n",
             "| workload | engine | compute s | run s | process s | compute ratio | "
             "process ratio |", "|---|---|---|---|---|---|---|"]
    for w in args.only.split(","):
        hp = res.get((w, "hpcproc"))
        for e in args.engines.split(","):
            r = res[w, e]
            c = float(np.median(r["compute"]))
            run = float(np.median(np.add(r["read"], r["compute"])))
            ratio = f"{c / np.median(hp['compute']):.2f}" if hp else "-"
            pratio = f"{r['process'] / hp['process']:.2f}" if hp else "-"
            each = ", ".join(f"{x:.2f}" for x in r.get("processes", []))
            lines.append(f"| {w} | {e} | {c:.2f} | {run:.2f} | {r['process']:.2f} ({each}) | "
                         f"{ratio} | {pratio} |")
    hp = res.get(("groupby", "hpcproc"))
    if hp and "alltoallv_GBps" in hp:
        a = hp["alltoallv_GBps"]
        lines += ["", f"Exchange between {args.ranks} ranks, {hp['moved_bytes'] / 1e9:.2f} GB "
                  f"leaving each rank, 16-byte rows (medians of 3 in a process, then "
                  f"of the launches): `MPI_Alltoallv` "
                  f"{a:.2f} GB/s; `hp.exchange` (random destinations: count, scatter, "
                  f"Alltoallv) {hp['exchange_GBps']:.2f} GB/s ({hp['exchange_GBps'] / a:.2f}"
                  f" of Alltoallv); contiguous exchange of the group-by "
                  f"{hp['contiguous_GBps']:.2f} GB/s ({hp['contiguous_GBps'] / a:.2f})."]
        if "alltoallv_fresh_GBps" in hp:  # the same Alltoallv into a new receive buffer
            f = hp["alltoallv_fresh_GBps"]
            lines[-1] += (f" `MPI_Alltoallv` into a newly allocated receive buffer (what "
                          f"any exchange that returns new arrays pays): {f:.2f} GB/s "
                          f"({f / a:.2f}); against it `hp.exchange` "
                          f"{hp['exchange_GBps'] / f:.2f}, contiguous "
                          f"{hp['contiguous_GBps'] / f:.2f}.")
        if "exchange_out_GBps" in hp:  # the steady state of a time-step loop
            o, c = hp["exchange_out_GBps"], hp["exchange_cold_GBps"]
            lines[-1] += (f" `hp.exchange` repeated into the same preallocated outputs "
                          f"(`out=`, a simulation's time step): {o:.2f} GB/s ({o / a:.2f} of "
                          f"the warm Alltoallv); its first call (staging and outputs new "
                          f"memory): {c:.2f} GB/s ({c / a:.2f}).")
        if "handwritten_GBps" in hp:  # argsort + take + Alltoallv; own rows by numpy
            h, s = hp["handwritten_GBps"], hp["alltoallv_selfcopy_GBps"]
            lines[-1] += (f" Hand-written (stable argsort + take + Alltoallv per column): "
                          f"{h:.2f} GB/s ({h / a:.2f}; `hp.exchange` is "
                          f"{hp['exchange_GBps'] / h:.2f}x it). Warm Alltoallv with each "
                          f"rank's own rows copied by numpy: {s:.2f} GB/s ({s / a:.2f}; "
                          f"`hp.exchange` {hp['exchange_GBps'] / s:.2f} of it).")
    for w in args.only.split(","):
        got = res.get((w, "hpcproc"), {}).get("interleaved")
        if got:  # hpcproc's dense group-by and the hand-written one in one process
            lines.append(f"\n{w}, both in the hpcproc process taking turns on the same "
                         f"table (medians of 3, then of the launches): hpcproc {got['hpcproc']:.3f} s, "
                         f"hand-written {got['mpi4py']:.3f} s, ratio "
                         f"{got['mpi4py'] / got['hpcproc']:.2f}.")
    lines.append("\nChecks (same on every engine: rows out / join sum): " + "; ".join(
        f"{w}: " + ", ".join(f"{e}={res[w, e]['check']}" for e in args.engines.split(","))
        for w in args.only.split(",")))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
