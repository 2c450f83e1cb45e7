"""Statistics, histogram, quantiles and user kernels on a distributed array.

Run: mpiexec -n 4 python examples/kernels.py
Every rank holds one block of a 1M-value array; every call below is collective. The
script checks each result against numpy on the whole array (it can: the example data
is small enough to exist on every rank too).
"""

import math

import numpy as np
from mpi4py import MPI

import hpcproc as hp


def softplus(v):  # a plain Python function: hp.map compiles it with Numba
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


def block_sum_max(block):  # user-defined mergeable reduction: (sum of squares, max)
    return (block * block).sum(), block.max() if block.size else -np.inf


def merge_sum_max(a, b):
    return a[0] + b[0], max(a[1], b[1])


def main():
    comm = MPI.COMM_WORLD
    data = np.random.default_rng(0).standard_normal(1_000_000) * 2 + 1
    x = hp.DistArray.from_global(data, comm)

    s = hp.stats(x)
    counts, edges = hp.histogram(x, bins=16)
    q = hp.quantile(x, [0.01, 0.5, 0.99])
    sketch = hp.quantile(x, [0.01, 0.5, 0.99], method="sketch", rel_err=0.01)
    y = hp.map(softplus, x)
    ssq, mx = hp.reduce(block_sum_max, merge_sum_max, x)
    offset = hp.scan(len(x.local), comm=comm)
    y_mean = hp.stats(y)["mean"]

    checks = {
        "stats": math.isclose(s["var"], data.var(), rel_tol=1e-12) and s["max"] == data.max(),
        "histogram": np.array_equal(counts, np.histogram(data, 16)[0]),
        "quantile (exact)": np.array_equal(q, np.quantile(data, [0.01, 0.5, 0.99])),
        "quantile (sketch, 1%)": bool(np.all(np.abs(sketch - q) <= 0.01 * np.abs(q) + 1e-12)),
        "map": math.isclose(y_mean, np.logaddexp(0, data).mean(), rel_tol=1e-12),
        "reduce": math.isclose(ssq, (data * data).sum(), rel_tol=1e-12) and mx == data.max(),
        "scan": offset == x.offset,
    }
    checks["scan"] = all(comm.allgather(checks["scan"]))
    if comm.rank == 0:
        print(f"{comm.size} ranks, {data.size} values: mean {s['mean']:.6f} std {s['std']:.6f}")
        print("quantiles 1%, 50%, 99%:", q, "sketch:", np.round(sketch, 4))
        for name, ok in checks.items():
            print(f"  {name:24s} agrees with numpy: {ok}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
