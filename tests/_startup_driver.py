"""Run every ahead-of-time built kernel through the public API on all its dtypes:
stats (reproducible and exact; 1-D, 2-D and axis=0), describe (with and without sketch
quantiles), histograms, quantiles, sketches (launched by tests/test_startup.py, once
with HPCPROC_AOT=0 and once without; with HPCPROC_THREADS=2 the large blocks are split
over two threads).

``python _startup_driver.py OUT.npz``: rank 0 saves every result (its raw bytes) and
how each kernel was obtained (``compile_stats``); whether Numba got imported is saved too.
"""

import json
import sys

import numpy as np
from mpi4py import MPI

import hpcproc as hp

comm = MPI.COMM_WORLD
DTYPES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8", "?", "f2", ">f8",
          ">i4"]
results = {}


def data(dt, n, cols=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n,) if cols is None else (n, cols)
    dt = np.dtype(dt)
    if dt.kind == "f":
        a = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
        a = a.astype(dt)
        a.flat[::97] = np.nan if seed % 2 else a.flat[::97]
    elif dt.kind == "b":
        a = rng.integers(0, 2, shape).astype(bool)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, shape, dtype=dt.newbyteorder("="), endpoint=True)
        a = a.astype(dt)
    return a


def put(name, value):
    if isinstance(value, dict):
        for k, v in value.items():
            put(f"{name}.{k}", v)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            put(f"{name}.{i}", v)
    else:
        results[name] = np.frombuffer(np.asarray(value).tobytes(), np.uint8)


for dt in DTYPES:
    for seed in (0, 1):
        g1 = data(dt, 5003, seed=seed)
        g2 = data(dt, 1201, cols=3, seed=seed)
        x1, x2 = hp.DistArray.from_global(g1, comm), hp.DistArray.from_global(g2, comm)
        tag = f"{dt}.{seed}"
        put(f"stats.{tag}", hp.stats(x1))
        put(f"stats0.{tag}", hp.stats(x2, axis=0, skipna=True))
        put(f"stats2.{tag}", hp.stats(x2))
        put(f"desc.{tag}", hp.describe(x1, 23, skipna=True))  # range=None: two passes
        put(f"desc2.{tag}", hp.describe(x2, 7, range=(-3, 3)))
        put(f"exact.{tag}", hp.stats(x1, exact=True, skipna=True))
        put(f"exact0.{tag}", hp.stats(x2, axis=0, exact=True))
        if np.dtype(dt).kind != "f" or seed == 0:  # no NaN: range=None works
            put(f"hist.{tag}", hp.histogram(x1, bins=37))
            w = hp.DistArray.from_global(data("f8", 5003, seed=7), comm)
            put(f"histw.{tag}", hp.histogram(x1, bins=11, weights=w))
            put(f"hist2.{tag}", hp.histogram2d(x1, x1, bins=(5, 7)))
            put(f"hist2w.{tag}", hp.histogram2d(x1, x1, bins=4, weights=w))
        if dt == "?":
            continue  # no quantile of booleans (numpy has none)
        x3 = hp.DistArray.from_global(data(dt, 140_001, seed=seed), comm)  # radix path
        put(f"quant.{tag}", hp.quantile(x3, [0.0, 0.1, 0.5, 0.99, 1.0]))
        put(f"stats3.{tag}", hp.stats(x3))  # > 2**16 rows a rank: split over threads
        put(f"descq.{tag}", hp.describe(x3, 31, range=(-100, 100), skipna=True,
                                        quantiles=[0.1, 0.5, 0.9]))  # with a sketch
        if np.dtype(dt) != np.dtype("f2"):
            sk = hp.QuantileSketch(rel_err=0.01).add(x1.local).merged(comm)
            put(f"sketch.{tag}", sk.counts)

from hpcproc.kernels import compile_stats  # noqa: E402

how = comm.gather(compile_stats())
numba = comm.gather("numba" in sys.modules)
if comm.rank == 0:
    np.savez(sys.argv[1], **results)
    print(json.dumps({"how": how, "numba": numba}))
