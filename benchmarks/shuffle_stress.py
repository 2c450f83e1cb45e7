"""Stress test of the exchange's large-count path: one real message of more than 2 GiB.

    timeout 900 .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/shuffle_stress.py \
        [--rows 300M] [--no-write]

Rank 0 holds ``rows`` int64 rows (default 300M = 2.4e9 bytes = 2.24 GiB), value ``i`` in
row ``i``, and sends all of them to rank 1 through ``hp.exchange`` with the default
``max_message`` (just under 2 GiB) and the default memory budget: so the rank-0 -> rank-1
transfer exceeds 2**31 bytes and must be split across rounds (the number of rounds is
printed). Every other rank holds 0 rows. Rank 1 verifies the received column exactly:
its length, then ``out[i] == i`` for every ``i`` (compared in chunks, no extra full copy),
and an int64 checksum against the closed form ``n(n-1)/2``.

Memory, 2 ranks: rank 0 holds the input (8 B/row), the destination array (1 B/row) and a
send buffer (at most ``max_message``); rank 1 the output (8 B/row) and a receive buffer.
About 10 GB in total for the default size. Peak RSS of every rank (``ru_maxrss``) is
reported. Results are written to ``benchmarks/results/shuffle_stress.md`` (appended).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.cli import parse_count
from hpcproc.shuffles._exchange import MAX_MESSAGE, default_memory_budget

HERE = Path(__file__).resolve().parent


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def _verify(v, rank, total):
    """Rank 1: exact check of the received column; other ranks: nothing received."""
    if rank != 1:
        return v.shape[0] == 0, f"rank {rank} received {v.shape[0]} rows"
    if v.shape[0] != total:
        return False, f"length {v.shape[0]} != {total}"
    chunk = 1 << 25
    for lo in range(0, total, chunk):
        hi = min(total, lo + chunk)
        if not np.array_equal(v[lo:hi], np.arange(lo, hi, dtype=np.int64)):
            bad = lo + int(np.flatnonzero(v[lo:hi] != np.arange(lo, hi))[0])
            return False, f"first mismatch at row {bad}: {v[bad]}"
    s = int(v.sum(dtype=np.int64))
    want = total * (total - 1) // 2
    if s != want:
        return False, f"checksum {s} != {want}"
    return True, f"length {total}, out[i] == i for all i, sum {s}"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=parse_count, default=300_000_000)
    ap.add_argument("--repeat", type=int, default=2,
                    help="exchanges in the job (each a fresh input, each verified)")
    ap.add_argument("--no-write", action="store_true", help="do not append to results")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        sys.exit("shuffle_stress.py needs at least 2 ranks (mpiexec -n 2)")
    rank = comm.rank
    n = args.rows if rank == 0 else 0
    total = comm.allreduce(n)
    nbytes = total * 8

    # warm up: compile the exchange kernels on a tiny exchange
    hp.exchange({"v": np.arange(10, dtype=np.int64)}, np.full(10, 1, np.uint8), comm)

    load_before = _loadavg()
    budget = default_memory_budget(comm)
    times, rounds, oks, details = [], [], [], []
    for _ in range(args.repeat):
        col = np.arange(n, dtype=np.int64)
        dest = np.ones(n, dtype=np.uint8)
        comm.Barrier()
        t0 = time.perf_counter()
        out, info = hp.exchange({"v": col}, dest, comm)
        times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        rounds.append(info["rounds"])
        del col, dest
        ok, detail = _verify(out["v"], rank, total)
        del out
        oks.append(comm.allreduce(ok, op=MPI.LAND))
        details.append(comm.bcast(detail if rank == 1 else None, root=1))
    load_after = _loadavg()
    ok = all(oks)
    dt = times[0]
    detail = "; ".join(dict.fromkeys(details))
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, root=0)
    budgets = comm.gather(budget, root=0)

    if rank == 0:
        gbps = nbytes / dt / 1e9
        verdict = "PASS" if ok else "FAIL"
        lines = [
            f"\n## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: {total} int64 rows "
            f"({nbytes / 2**30:.2f} GiB) rank 0 -> rank 1, {comm.size} ranks\n",
            "| quantity | value |", "|---|---|",
            f"| bytes rank 0 -> rank 1 | {nbytes} ({nbytes / 2**30:.2f} GiB; 2**31 = 2.00 GiB) |",
            f"| max_message | {MAX_MESSAGE} (default) |",
            f"| memory budget per rank | {', '.join(f'{b / 2**30:.2f} GiB' for b in budgets)} "
            f"(default) |",
            f"| rounds | {', '.join(map(str, rounds))} |",
            f"| exchange time, 1st call (slowest rank) | {dt:.2f} s |",
            f"| throughput, 1st call | {gbps:.2f} GB/s ({nbytes / dt / 2**30:.2f} GiB/s) |",
            "| every call: time s (GB/s) | "
            + ", ".join(f"{t:.2f} ({nbytes / t / 1e9:.2f})" for t in times) + " |",
            f"| verification (every call) | {verdict}: {detail} |",
            "| peak RSS (ru_maxrss) | "
            + ", ".join(f"rank {r}: {x / 2**30:.2f} GiB" for r, x in enumerate(rss)) + " |",
            f"| load average (1/5/15 min) before / after | {load_before} / {load_after} |",
            f"| CPUs | {os.cpu_count()} |",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        if not args.no_write:
            res = HERE / "results" / "shuffle_stress.md"
            if not res.exists():
                res.write_text(
                    "# Exchange stress test (benchmarks/shuffle_stress.py)\n\n"
                    "One transfer of more than 2 GiB from rank 0 to rank 1 through "
                    "`hp.exchange` (default `max_message`, so several rounds), verified "
                    "exactly on the receiver. Time includes the whole exchange (counting, "
                    "scatter into the send buffer, Alltoallv rounds, copy out).\n")
            with open(res, "a") as f:
                f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
