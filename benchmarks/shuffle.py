"""Shuffle benchmarks: W2 (sort) and W3 (group-by sum + count), hpcproc against a
hand-written mpi4py + numpy version of the same algorithm, on the same data, in one run.

    mpiexec -n 2 python benchmarks/shuffle.py [--rows 2^26] [--repeat 3]

W2: sort ``rows`` rows (int64 key uniform over [0, 2**62), int64-sized float64 value)
read from HDF5. W3: group-by sum and count of ``rows`` rows (int64 key in [0, 2**20),
float64 value), uniform and Zipf(1.2) keys. Read and compute times are reported
separately (slowest rank, median of ``--repeat`` runs); results are appended to
``benchmarks/results/shuffle.md`` with the ratio to the hand-written baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.cli import parse_count

HERE = Path(__file__).resolve().parent


# --- the hand-written competitor: what a user writes with mpi4py + numpy --------------
def _alltoallv(comm, arr, counts):
    recv_counts = np.empty_like(counts)
    comm.Alltoall(counts, recv_counts)
    out = np.empty(int(recv_counts.sum()), dtype=arr.dtype)
    sd = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rd = np.concatenate(([0], np.cumsum(recv_counts)[:-1]))
    comm.Alltoallv([arr, (counts, sd)], [out, (recv_counts, rd)])
    return out


def handwritten_sort(comm, key, value):
    p = comm.Get_size()
    sample = np.sort(key[np.random.default_rng(comm.rank).integers(0, len(key), 1024 * p)])
    allsamples = np.sort(np.concatenate(comm.allgather(sample)))
    split = allsamples[(np.arange(1, p) * len(allsamples)) // p]
    dest = np.searchsorted(split, key, side="right")
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=p).astype(np.int64)
    k = _alltoallv(comm, key[order], counts)
    v = _alltoallv(comm, value[order], counts)
    o = np.argsort(k, kind="stable")
    return k[o], v[o]


def handwritten_groupby(comm, key, value):
    p = comm.Get_size()
    dest = key % p
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=p).astype(np.int64)
    k = _alltoallv(comm, key[order], counts)
    v = _alltoallv(comm, value[order], counts)
    u, inv = np.unique(k, return_inverse=True)
    return u, np.bincount(inv, weights=v), np.bincount(inv)


# --- harness -----------------------------------------------------------------------
def timed(comm, fn):
    comm.Barrier()
    t0 = time.perf_counter()
    out = fn()
    dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    return out, dt


def median_times(comm, fn, repeat):
    return float(np.median([timed(comm, fn)[1] for _ in range(repeat)]))


def _load() -> str:
    """The load average (1/5/15 min): the machine may be shared, record it with results."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=parse_count, default=1 << 26)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=str(HERE / "data"))
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank0 = comm.rank == 0
    data = Path(args.data)
    if rank0:
        data.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    n = args.rows
    files = {"w2": (data / f"w2-{n}.h5", "uniform", 1 << 62),
             "w3u": (data / f"w3u-{n}.h5", "uniform", 1 << 20),
             "w3z": (data / f"w3z-{n}.h5", "zipf", 1 << 20)}
    for path, kind, keys in files.values():
        if not path.exists():
            hp.generate(str(path), kind, n, keys=keys, seed=1, comm=comm)
    # warm up: compile / load every kernel once
    small = hp.DistTable.from_local({"key": np.arange(1000) % 7, "value": np.ones(1000)}, comm)
    hp.sort(small, "key")
    hp.groupby(small, "key").agg(value=["sum", "count"])
    hp.groupby(small, "key", strategy="hash").agg(value=["sum", "count"])

    rows = []
    loads = [_load()]
    cols = {"key": "/key", "value": "/value"}
    t, read_s = timed(comm, lambda: hp.read_table(str(files["w2"][0]), cols, comm=comm))
    key, value = t.local("key"), t.local("value")
    base = median_times(comm, lambda: handwritten_sort(comm, key, value), args.repeat)
    ours = median_times(comm, lambda: hp.sort(t, "key"), args.repeat)
    rows.append(("W2 sort", read_s, base, ours))
    for name, label in (("w3u", "uniform"), ("w3z", "Zipf 1.2")):
        t, read_s = timed(comm, lambda: hp.read_table(str(files[name][0]), cols, comm=comm))
        key, value = t.local("key"), t.local("value")
        base = median_times(comm, lambda: handwritten_groupby(comm, key, value), args.repeat)
        for strategy in ("auto", "hash"):
            ours = median_times(comm, lambda: hp.groupby(t, "key", strategy=strategy).agg(
                value=["sum", "count"]), args.repeat)
            rows.append((f"W3 group-by {label} ({'dense' if strategy == 'auto' else 'hash'})",
                         read_s, base, ours))
    loads.append(_load())
    if rank0:
        lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: {n} rows, "
                 f"{comm.size} ranks, median of {args.repeat}, slowest rank\n",
                 f"Load average (1/5/15 min) at the start / end: {' | '.join(loads)} "
                 f"({os.cpu_count()} CPUs).\n",
                 "| workload | read s | hand-written mpi4py+numpy s | hpcproc s | speed-up |",
                 "|---|---|---|---|---|"]
        lines += [f"| {w} | {r:.2f} | {b:.2f} | {o:.2f} | {b / o:.2f}x |" for w, r, b, o in rows]
        text = "\n".join(lines) + "\n"
        print(text)
        out = HERE / "results" / "shuffle.md"
        if not out.exists():
            out.write_text("# Shuffle benchmarks (benchmarks/shuffle.py)\n\n"
                           "Compute times exclude reading; the baseline is measured in the "
                           "same run on the same data.\n")
        with open(out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
