"""Summary statistics of distributed arrays and of datasets streamed block by block."""

from __future__ import annotations

import time

from .array import DistArray
from .collectives import allreduce_state
from .io import blocks
from .kernels.moments import Moments, merge_moments, moments_of

__all__ = ["stats", "stats_file"]


def stats(x: DistArray, ddof: int = 0) -> dict:
    """count, sum, mean, std, var, min, max of all elements of ``x``.

    Collective; every rank gets the same dict.
    """
    if not isinstance(x, DistArray):
        raise TypeError(f"stats expects a DistArray, got {type(x).__name__}")
    return allreduce_state(moments_of(x.local), merge_moments, x.comm).as_dict(ddof)


def stats_file(path: str, dataset: str, comm=None, block_bytes: int = 64 << 20,
               method: str = "auto", ddof: int = 0) -> dict:
    """Statistics of a dataset read block by block (memory bounded by ``block_bytes``).

    Collective. Adds ``timings`` (seconds: read and compute, max over ranks) and
    ``bytes`` (dataset size) to the result.
    """
    state, t_read, t_comp, t0 = Moments(), 0.0, 0.0, time.perf_counter()
    nbytes = 0
    it = blocks(path, dataset, block_bytes=block_bytes, comm=comm, method=method)
    while True:
        t1 = time.perf_counter()
        blk = next(it, None)
        t2 = time.perf_counter()
        t_read += t2 - t1
        if blk is None:
            break
        nbytes += blk.local.nbytes
        state = merge_moments(state, moments_of(blk.local))
        t_comp += time.perf_counter() - t2
    local = (state, nbytes, t_read, t_comp, time.perf_counter() - t0)
    total = allreduce_state(local, _merge_timed, comm)
    result = total[0].as_dict(ddof)
    result["bytes"] = int(total[1])
    result["timings"] = {"read": total[2], "compute": total[3],
                         "total": max(total[4], time.perf_counter() - t0)}
    return result


def _merge_timed(a, b):
    return (merge_moments(a[0], b[0]), a[1] + b[1], *(max(u, v) for u, v in zip(a[2:], b[2:])))
