"""Launched by test_break_s23.py under ``mpiexec -n N`` (N up to 12, oversubscribed,
small data): the exchange with 0-3 rows per rank and the skewed hash join, each against
an independent reference. Prints ``ok <ranks> <checks> <heavy>`` on rank 0; any
mismatch raises (the job exits non-zero)."""

from __future__ import annotations

import math

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc import memory
from hpcproc.shuffles import _skew
from support import dict_join_pairs

comm = MPI.COMM_WORLD
SIZE, RANK = comm.size, comm.rank


def _table(rng, n, ncol):
    """Up to 7 columns of mixed widths: big-endian words, 3-byte rows, 2-word rows,
    bools, bytes, 2x2 float32 rows, a zero-width column."""
    cols = {"a": rng.integers(0, 2**62, n).astype(">u8"),
            "b": rng.integers(0, 256, (n, 3)).astype(np.uint8),
            "c": rng.integers(0, 2**40, (n, 2)),
            "d": rng.integers(0, 2, n).astype(bool),
            "e": np.array([b"r%d" % i for i in range(n)], "S5"),
            "f": rng.normal(size=(n, 2, 2)).astype(np.float32),
            "z": np.zeros((n, 0))}
    return dict(list(cols.items())[:ncol])


def exchanges() -> int:
    """Every rank holds 0-3 rows (or up to 40); destinations all to rank 0, all to the
    last rank, all kept, or random; 1-7 columns; one round and many (max_message 7)."""
    checks = 0
    for retain in (True, False):  # staging buffers made per call, or pooled
        memory.retain_memory(retain)
        for it in range(16):
            rng = np.random.default_rng([RANK, it, SIZE])
            n = (it + RANK) % 4 if it < 12 else int(rng.integers(0, 40))
            dest = [np.zeros(n, int), np.full(n, SIZE - 1), np.full(n, RANK),
                    rng.integers(0, SIZE, n)][it % 4]
            cols = _table(rng, n, 3 + it % 5)
            everyone = comm.allgather((cols, dest))
            exp = {k: np.concatenate([c[k][d == RANK] for c, d in everyone]).astype(v.dtype)
                   for k, v in cols.items()}
            for max_message in (hp.shuffles._exchange.MAX_MESSAGE, 7):
                got, _ = hp.exchange(cols, dest.astype(np.int32), max_message=max_message)
                for k in cols:
                    assert got[k].dtype == exp[k].dtype and got[k].shape == exp[k].shape, k
                    assert got[k].tobytes() == exp[k].tobytes(), (SIZE, RANK, it, k)
                    checks += 1
    memory.retain_memory(True)
    return checks


def _norm(x):
    x = x.item() if hasattr(x, "item") else x
    return "nan" if isinstance(x, float) and math.isnan(x) else (0.0 if x == 0 else x)


def joins() -> tuple[int, int]:
    """Skewed hash joins (heavy keys left, right, both, unmatched), rows split unevenly
    (some ranks empty), against the dict-based reference join."""
    _skew.MIN_ROWS = 4
    checks = heavy = 0
    for it in range(12):
        rng = np.random.default_rng(it)  # the same global tables on every rank
        nl, nr = [(600, 40), (40, 600), (500, 300), (300, 0), (1, 200)][it % 5]
        lk = np.where(rng.random(nl) < 0.6, 5, rng.integers(0, 300, nl))
        rk = np.where(rng.random(nr) < (0.7 if it % 5 in (1, 2) else 0.05), 5,
                      rng.integers(0, 300, nr))
        if it % 3 == 2:
            lk[lk == 5] = -1  # the heavy left key has no match
        how = ("inner", "left")[it % 2]
        cuts = np.sort(rng.integers(0, [nl + 1, nr + 1], (SIZE - 1, 2)), axis=0)
        edges = np.vstack([[0, 0], cuts, [nl, nr]])
        (a, c), (b, d) = edges[RANK], edges[RANK + 1]
        L = {"k": lk[a:b].astype(np.int32), "lid": np.arange(a, b)}
        R = {"k": rk[c:d], "rid": np.arange(c, d)}
        res = hp.join(L, R, "k", how=how, strategy="hash")
        g = res.allgather()
        rid = np.nan_to_num(g["rid"].astype(float), nan=-1).astype(int)
        got = sorted(zip(g["lid"].tolist(), rid.tolist()))
        exp = dict_join_pairs([_norm(v) for v in lk], [_norm(v) for v in rk], how)
        assert got == exp, (SIZE, it, len(got), len(exp))
        metas = comm.allgather((res.meta["heavy_keys"], res.meta["replicated"],
                                res.meta["join_rows"]))
        assert all(m == metas[0] for m in metas), metas
        rep = res.meta["replicated"]
        assert sum(r[0] for r in res.meta["join_rows"]) == nl + rep["left"] * (SIZE - 1)
        assert sum(r[1] for r in res.meta["join_rows"]) == nr + rep["right"] * (SIZE - 1)
        heavy += res.meta["heavy_keys"] > 0
        checks += 1
    return checks, heavy


if __name__ == "__main__":
    n = exchanges()
    m, heavy = joins()
    if RANK == 0:
        print(f"ok {SIZE} {n + m} {heavy}", flush=True)
