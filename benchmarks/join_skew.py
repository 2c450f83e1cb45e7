"""The hash join with skewed keys: heavy-key handling (``skew=True``) against the plain
hash partitioning (``skew=False``), in one run, and the cost of the detection.

    flock /tmp/hpcproc-bench.lock .venv/bin/mpiexec -n 2 .venv/bin/python \\
        benchmarks/join_skew.py --rows 2^22 --repeat 3

Data (in memory, fixed seeds, spread evenly over the ranks): ``--rows`` N fact rows
(int64 key, float64 value) and N/4 dimension rows (distinct keys 1..N/4, float64), an
inner join on the key with ``strategy="hash"``. Workloads: ``zipf`` (fact keys
``numpy.random.zipf(1.2)``: the most frequent key holds about 18 % of the rows),
``hot30`` (one key in 30 % of the fact rows, the others uniform) and ``uniform`` (fact
keys uniform over the dimension keys). With more ranks than cores the times mean nothing,
the row ratios still do. Per workload and setting: the
median over ``--repeat`` runs (after one warm-up) of the slowest rank's time, the rows
joined by the busiest rank over the average (``meta["join_rows"]``), the output rows of
the busiest rank over the average, and the detection alone (``_skew.plan``, median).
Skew off and on alternate run by run. ``--detect-only``: the detection alone (median of
``--repeat``, no join), its candidate step, and as the baseline the all-gather of every
rank's sample that the owners' step replaced, alternating run by run. Appends to
``benchmarks/results/join_skew.md`` with the load average.

``--model-ranks P`` (one process, no timing): the bytes one rank receives in the
candidate step at ``P`` ranks, computed from a sample of every rank's block of this data
(its keys are independent draws, so the 256 sampled rows of a side are drawn directly;
the weights, distinct keys and owner hash are ``_skew``'s), for the all-gather that
was replaced and for the owners' exchange (its share of the sample, the exchange's
counts, the candidates twice through the allreduce, their exact counts), and the time
the all-gather's merge of every rank's sample took on each rank (measured here): printed
only.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI
from shuffle import timed  # benchmarks/shuffle.py: barrier, run, slowest rank's time

import hpcproc as hp
from hpcproc.comm import lib_comm
from hpcproc.shuffles import _skew
from hpcproc.shuffles._exchange import dest_dtype
from hpcproc.shuffles._hashjoin import key_words
from hpcproc.shuffles._kernels import hash_dest
from hpcproc.shuffles.joins import BROADCAST_BYTES

RESULTS = Path(__file__).resolve().parent / "results" / "join_skew.md"


def _count(text: str) -> int:
    return int(eval(text.replace("^", "**"), {"__builtins__": {}}))


def _data_keys(kind, rng, rows, dims):
    if kind == "zipf":
        return rng.zipf(1.2, rows).astype(np.int64)
    if kind == "hot30":
        return np.where(rng.random(rows) < 0.3, 1, rng.integers(1, dims + 1, rows))
    return rng.integers(1, dims + 1, rows)


def _data(kind, n, comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    a, b = hp.block_range(n, size, rank)
    rng = np.random.default_rng([11, rank])
    dims = n // 4
    k = _data_keys(kind, rng, b - a, dims)
    fact = {"key": k, "val": rng.random(b - a)}
    da, db = hp.block_range(dims, size, rank)
    dim = {"key": np.arange(da + 1, db + 1, dtype=np.int64), "w": rng.random(db - da)}
    return fact, dim


def _ratio(counts):
    counts = np.asarray(counts, dtype=float)
    return float(counts.max() / max(counts.mean(), 1.0))


def _gathered_candidates(lk, rk, least, comm):
    """The baseline of ``--detect-only``: the candidate step that the owners' scheme
    replaced (every rank all-gathers every rank's distinct sampled keys and weights)."""
    lc = lib_comm(comm)
    (ls, lw), (rs, rw) = _skew._sample(lk, lc.rank, 0), _skew._sample(rk, lc.rank, 1)
    keys, weights = _skew._distinct(np.concatenate(key_words(ls, rs)),
                                    np.concatenate([lw, rw]))
    parts = lc.allgather((keys, weights))
    keys, weights = _skew._distinct(np.concatenate([p[0] for p in parts]),
                                    np.concatenate([p[1] for p in parts]))
    return keys[weights >= least]


def _detect(fact, dim, comm, repeat):
    """(heavy keys, median times of ``_skew.plan`` and of its candidate step, and of
    the all-gather candidate step, over ``repeat`` runs after a warm-up, alternating)."""
    lk, rk = [fact["key"]], [dim["key"]]
    rows = np.array([comm.allreduce(len(fact["key"])), comm.allreduce(len(dim["key"]))])
    least = rows.sum() / (_skew.SHARE * comm.Get_size()) / 2
    runs = {"plan": lambda: _skew.plan(lk, rk, rows, (16, 16), BROADCAST_BYTES, comm),
            "owners": lambda: _skew._sampled_candidates(lk, rk, least, comm),
            "allgather": lambda: _gathered_candidates(lk, rk, least, comm)}
    times = {k: [] for k in runs}
    for i in range(repeat + 1):
        for name, run in runs.items():
            out, dt = timed(comm, run)
            if name == "plan":
                plan = out
            if i:
                times[name].append(dt)
    return (plan.heavy if plan else 0), {k: float(np.median(v)) for k, v in times.items()}


def _model_bytes(kind, n, ranks):
    """(candidates, all-gather bytes per rank, owners' mean and max bytes per rank) of
    the candidate step at ``ranks`` ranks (one-word keys, 16 bytes a key and weight)."""
    dims = n // 4
    recv = np.zeros(ranks)
    old, keys, weights = [], [], []
    for r in range(ranks):
        a, b = hp.block_range(n, ranks, r)
        da, db = hp.block_range(dims, ranks, r)
        rng = np.random.default_rng([11, r])
        m, md = min(b - a, _skew.SAMPLE_ROWS), min(db - da, _skew.SAMPLE_ROWS)
        ls = _data_keys(kind, rng, m, dims)
        rs = rng.integers(da + 1, db + 1, md) if md < db - da else np.arange(da + 1, db + 1)
        lw, rw = np.full(m, (b - a) / max(m, 1)), np.full(md, (db - da) / max(md, 1))
        K, w = _skew._distinct(np.concatenate(key_words([ls], [rs])), np.concatenate([lw, rw]))
        old.append(len(pickle.dumps((K, w), protocol=5)))
        owner = np.empty(K.shape[0], dest_dtype(ranks))
        hash_dest(K, ranks, owner)
        np.add.at(recv, owner.astype(np.int64), 16)
        keys.append(K)
        weights.append(w)
    t0 = time.perf_counter()  # the all-gather's merge, on every rank
    K, w = _skew._distinct(np.concatenate(keys), np.concatenate(weights))
    merge = time.perf_counter() - t0
    cand = int((w >= (n + dims) / (_skew.SHARE * ranks) / 2).sum())
    extra = 8 * ranks + 2 * 8 * cand + 16 * cand
    return cand, sum(old) - min(old), recv.mean() + extra, recv.max() + extra, merge


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=_count, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--detect-only", action="store_true",
                    help="time the heavy-key detection alone (no join)")
    ap.add_argument("--model-ranks", type=int, metavar="P",
                    help="print the candidate step's bytes received per rank at P ranks")
    args = ap.parse_args()
    if args.model_ranks:
        for kind in ("zipf", "hot30", "uniform"):
            cand, old, mean, most, merge = _model_bytes(kind, args.rows, args.model_ranks)
            print(f"{kind}: {args.model_ranks} ranks, {args.rows} fact rows, {cand} "
                  f"candidates: all-gather {old / 1e6:.2f} MB per rank (merged in "
                  f"{merge * 1e3:.0f} ms on each); owners {mean / 1e3:.1f} KB mean, "
                  f"{most / 1e3:.1f} KB on the busiest rank")
        return
    comm = MPI.COMM_WORLD
    lines = []
    for kind in ("zipf", "hot30", "uniform"):
        fact, dim = _data(kind, args.rows, comm)
        if args.detect_only:
            heavy, t = _detect(fact, dim, comm, args.repeat)
            lines.append(f"| {kind} | {heavy} | {t['plan'] * 1e3:.2f} ms | "
                         f"{t['owners'] * 1e3:.2f} ms | {t['allgather'] * 1e3:.2f} ms | "
                         f"{t['allgather'] / t['owners']:.2f}x |")
            continue
        times = {False: [], True: []}
        meta = {}
        for i in range(args.repeat + 1):
            for skew in (False, True):
                res, dt = timed(comm, lambda s=skew: hp.join(fact, dim, "key", comm=comm,
                                                             strategy="hash", skew=s))
                if i:
                    times[skew].append(dt)
                meta[skew] = res.meta
                del res
        detect = _detect(fact, dim, comm, args.repeat)[1]["plan"]
        off, on = np.median(times[False]), np.median(times[True])
        lines.append(
            f"| {kind} | {off:.3f} | {on:.3f} | {off / on:.2f}x | "
            f"{_ratio([a + b for a, b in meta[False]['join_rows']]):.2f} / "
            f"{_ratio([a + b for a, b in meta[True]['join_rows']]):.2f} | "
            f"{_ratio(meta[False]['rank_rows']):.2f} / {_ratio(meta[True]['rank_rows']):.2f} | "
            f"{meta[True]['heavy_keys']} | {detect * 1e3:.1f} ms |")
    if comm.Get_rank() == 0:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        head = (f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
                f"{comm.Get_size()} ranks, {args.rows} fact rows, median of {args.repeat}, "
                f"load average at the end {load}\n\n"
                "| keys | skew off (s) | skew on (s) | off / on | busiest rank's joined "
                "rows / average, off / on | busiest rank's output / average, off / on | "
                "heavy keys | detection |\n|---|---|---|---|---|---|---|---|\n")
        if args.detect_only:
            head = head.split("\n\n")[0].replace(", median of", ", detection only, median of")
            head += ("\n\n| keys | heavy keys | detection | its candidate step (owners) "
                     "| all-gather candidate step (before) | all-gather / owners |\n"
                     "|---|---|---|---|---|---|\n")
        text = head + "\n".join(lines) + "\n"
        print(text)
        with open(RESULTS, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
