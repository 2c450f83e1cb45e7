"""Checkpoint benchmark: save and restore throughput as a ratio to raw IO, same run.

    .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/checkpoint.py [--size 1G] [--repeats 3]

State: one float64 DistArray of ``--size`` bytes in total (each rank ``size/ranks``).
Per repeat, in rotating order, every case is timed between barriers (a sample is the
slowest rank's time; the reported value is the median over repeats):

=============  =========================================================================
raw_write      each rank ``pwrite``s its block to a new file and ``fsync``s it
ckpt_save      ``ck.save(step, {"x": x})``: per-rank HDF5 file + fsync + checksum +
               manifest + atomic rename + directory fsyncs
ckpt_async     ``ck.save(..., blocking=False)`` (the call: a copy of the state), then a
               loop of 10 ms sleeps ("compute") and ``ck.due()`` until the step is
               committed; the total is reported. (A main thread that spins in MPI
               calls meanwhile competes with the writer thread for the 2 cores here.)
raw_read       each rank reads its block back into a new buffer (``pread``)
ckpt_restore   ``Checkpointer(...).restore()``: scan, agree, read, verify checksums
=============  =========================================================================

Before each read case the files are evicted from the page cache
(``posix_fadvise(DONTNEED)``), so reads come from the device for both, and writes start
from the same state. Results go to ``benchmarks/results/checkpoint.md`` (rank 0).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.checkpoint import _format
from hpcproc.io.direct import pread_into, pwrite_from

HERE = os.path.dirname(os.path.abspath(__file__))


def _evict(path: str) -> None:
    for root, _, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _until_committed(ck, step):
    """A step loop whose 'compute' sleeps (does not spin) while the writer works."""
    while ck.last_step != step:
        time.sleep(0.01)
        ck.due(0)


def _timed(comm, fn):
    comm.Barrier()
    t0 = MPI.Wtime()
    out = fn()
    t = MPI.Wtime() - t0
    comm.Barrier()
    return comm.allreduce(t, op=MPI.MAX), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="total state size (e.g. 1G, 256M)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=os.path.join(HERE, "data", "checkpoint"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "checkpoint.md"))
    args = ap.parse_args()
    from hpcproc.cli import parse_size

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    total = parse_size(args.size)
    rows = total // 8
    lo, hi = hp.block_range(rows, size, rank)
    x = hp.DistArray(np.random.default_rng(rank).standard_normal(hi - lo), (rows,), lo, comm)
    nbytes = rows * 8
    if rank == 0:
        shutil.rmtree(args.dir, ignore_errors=True)
        os.makedirs(args.dir)
    comm.Barrier()
    raw = os.path.join(args.dir, f"raw-{rank}.bin")
    ckdir = os.path.join(args.dir, "ckpt")

    def raw_write():
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pwrite_from(fd, memoryview(x.local.view(np.uint8)), 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def raw_read():
        out = np.empty(x.local.shape, dtype=x.dtype)
        fd = os.open(raw, os.O_RDONLY)
        try:
            pread_into(fd, memoryview(out.view(np.uint8)), 0)
        finally:
            os.close(fd)
        return out

    samples = {k: [] for k in ("raw_write", "ckpt_save", "ckpt_async", "ckpt_async_call",
                               "raw_read", "ckpt_restore")}
    step = 0
    with hp.Checkpointer(ckdir, comm, keep=1) as ck:
        for rep in range(args.repeats):
            order = ["w_raw", "w_ckpt", "w_async"]
            order = order[rep % 3:] + order[:rep % 3]
            for case in order:
                if os.path.exists(raw) and case == "w_raw":
                    os.unlink(raw)
                comm.Barrier()
                if case == "w_raw":
                    samples["raw_write"].append(_timed(comm, raw_write)[0])
                elif case == "w_ckpt":
                    step += 1
                    samples["ckpt_save"].append(_timed(comm, lambda: ck.save(step, {"x": x}))[0])
                else:
                    step += 1
                    t_call, _ = _timed(comm, lambda: ck.save(step, {"x": x}, blocking=False))
                    t_wait, _ = _timed(comm, lambda: _until_committed(ck, step))
                    samples["ckpt_async_call"].append(t_call)
                    samples["ckpt_async"].append(t_call + t_wait)
            for case in (["r_raw", "r_ckpt"] if rep % 2 == 0 else ["r_ckpt", "r_raw"]):
                if rank == 0:
                    _evict(ckdir)
                _evict(raw)
                comm.Barrier()
                if case == "r_raw":
                    t, out = _timed(comm, raw_read)
                    assert np.array_equal(out, x.local)
                    samples["raw_read"].append(t)
                else:
                    with hp.Checkpointer(ckdir, comm, keep=1) as ck2:
                        t, out = _timed(comm, ck2.restore)
                    assert out[0] == step and np.array_equal(out[1]["x"].local, x.local)
                    samples["ckpt_restore"].append(t)
                out = None  # free before the next case allocates
    # checksum speed: XXH3-128 of each rank's block, all ranks at once
    t_hash, _ = _timed(comm, lambda: _format.hash_bytes(x.local))
    if rank == 0:
        shutil.rmtree(args.dir, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in samples.items()}
        best = {k: min(v) for k, v in samples.items()}
        gib = nbytes / 2**30
        rate = {k: gib / v for k, v in med.items()}
        lines = [
            "# Checkpoint benchmark",
            "",
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"`mpiexec -n {size} python benchmarks/checkpoint.py --size {args.size} "
            f"--repeats {args.repeats}` on {platform.node()} ({os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.1f}); state {gib:.2f} GiB float64 DistArray, "
            f"{gib / size:.2f} GiB per rank. Medians of {args.repeats}; a sample is the "
            f"slowest rank. Reads start with the files evicted from the page cache.",
            "",
            "| case | median s | GiB/s | ratio to raw (median) | best s | ratio (best) |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def row(label, key, base):
            r_med = "1" if key == base else f"**{med[base] / med[key]:.2f}**"
            r_best = "1" if key == base else f"{best[base] / best[key]:.2f}"
            return (f"| {label} | {med[key]:.3f} | {rate[key]:.2f} | {r_med} | "
                    f"{best[key]:.3f} | {r_best} |")

        lines += [
            row("raw write + fsync", "raw_write", "raw_write"),
            row("checkpoint save", "ckpt_save", "raw_write"),
            row("checkpoint save, async (call + until committed)", "ckpt_async", "raw_write"),
            f"| (async: the call alone, a copy of the state) | {med['ckpt_async_call']:.3f} "
            f"| | | {best['ckpt_async_call']:.3f} | |",
            row("raw read", "raw_read", "raw_read"),
            row("checkpoint restore (incl. checksum verification)", "ckpt_restore", "raw_read"),
            "",
            f"Checksum (XXH3-128, every rank hashing its {gib / size:.2f} GiB at once): "
            f"{nbytes / size / 1e9 / t_hash:.1f} GB/s per rank "
            f"({t_hash / (nbytes / size / 2**30):.3f} s per GiB).",
            "",
            "Samples (s): " + "; ".join(f"{k} " + ", ".join(f"{t:.3f}" for t in v)
                                       for k, v in samples.items()),
            "",
        ]
        text = "\n".join(lines)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
