"""What the drivers that run a rank out of memory share (``_fail_together_driver.py``,
``_break_s25a_driver.py``): the address-space cap and a small join checked against a dict
join of every rank's rows (after the agreed error: the communicator still works and its
ranks are in step)."""

from __future__ import annotations

import collections
import resource

import numpy as np

import hpcproc as hp

#: This process's address-space limits before any cap.
SOFT, HARD = resource.getrlimit(resource.RLIMIT_AS)


def cap(extra: int) -> None:
    """Cap this process's address space at what it uses now + ``extra`` bytes."""
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + extra, HARD))


def uncap() -> None:
    """The limits as they were before :func:`cap`."""
    resource.setrlimit(resource.RLIMIT_AS, (SOFT, HARD))


def small_join_ok(comm, strategy: str = "hash") -> bool:
    """A small join (with a heavy key) against a dict join of the gathered rows."""
    rank = comm.rank
    rng = np.random.default_rng(rank)
    lk = np.concatenate([rng.integers(0, 50, 300), np.full(100, 7)])
    rk = rng.integers(0, 50, 200)
    left = {"k": lk, "a": rank * 1000 + np.arange(lk.size)}
    right = {"k": rk, "b": rank * 1000 + np.arange(rk.size)}
    got = hp.join(left, right, "k", strategy=strategy, comm=comm).local()
    pairs = comm.allgather(sorted(zip(got["a"].tolist(), got["b"].tolist())))
    lall = [x for r in comm.allgather(list(zip(lk.tolist(), left["a"].tolist()))) for x in r]
    rall = [x for r in comm.allgather(list(zip(rk.tolist(), right["b"].tolist()))) for x in r]
    index = collections.defaultdict(list)
    for k, b in rall:
        index[k].append(b)
    expect = sorted((a, b) for k, a in lall for b in index[k])
    return sorted(p for r in pairs for p in r) == expect
