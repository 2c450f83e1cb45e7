"""Run the shuffle kernels through the public API (sort, group-by, join, exchange,
shuffle, distinct) on many key and value dtypes (launched by tests/test_startup_shuffles.py, once
with HPCPROC_AOT=0 and once without).

``python _startup_shuffles_driver.py OUT.npz [common]``: rank 0 saves every result (its
raw bytes, gathered); the last line of stdout is a JSON list (one entry per rank) of
whether Numba got imported and which kernel calls missed an ahead-of-time build.
``common``: only the common cases (int64/float64 keys and values), which must run
without Numba.
"""

import importlib
import json
import sys

import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.kernels import _aot
from hpcproc.kernels._kernel import Kernel

comm = MPI.COMM_WORLD
COMMON = len(sys.argv) > 2 and sys.argv[2] == "common"
KEYS = ["i8", "f8"] if COMMON else ["i8", "f8", "i4", "f4", "u8", "u1", "i2"]
VALUES = ["i8", "f8"] if COMMON else ["i8", "u8", "f8", "f4", "i4"]
results = {}


def data(dt, n, seed, span=None):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dt)
    if dt.kind == "f":
        x = (rng.standard_normal(n) * 100).astype(dt)
        if span:
            x = np.round(x / 10).astype(dt)  # repeated keys
        x[::53] = np.nan
        x[1::71] = -0.0
        return x
    info = np.iinfo(dt)
    lo, hi = (info.min, info.max) if span is None else (max(info.min, -span),
                                                        min(info.max, span))
    return rng.integers(lo, hi, n, dtype=dt, endpoint=True)


def local(cols):
    n = len(next(iter(cols.values())))
    a, b = n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size
    return hp.DistTable.from_local({k: np.ascontiguousarray(v[a:b]) for k, v in cols.items()},
                                   comm)


def put(name, value):
    if hasattr(value, "allgather"):
        value = value.allgather()
    if isinstance(value, dict):
        for k, v in value.items():
            put(f"{name}.{k}", v)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            put(f"{name}.{i}", v)
    else:
        results[name] = np.frombuffer(np.asarray(value).tobytes(), np.uint8)


AGGS = ["sum", "count", "min", "max", "mean"]
n = 6007
for kd in KEYS:
    for span in (None, 300):  # full range (general keys), repeated keys
        tag = f"{kd}.{span}"
        k = data(kd, n, 1, span)
        for vd in VALUES:
            v = data(vd, n, 2)
            t = local({"k": k, "v": v, "id": np.arange(n)})
            put(f"sort.{tag}.{vd}", hp.sort(t, "k"))
            put(f"gb.{tag}.{vd}", hp.groupby(t, "k").agg(v=AGGS))
            if np.dtype(kd).kind != "f":
                put(f"gbh.{tag}.{vd}", hp.groupby(t, "k", strategy="hash").agg(v=AGGS))
        t = local({"k": k, "v": data("f8", n, 3), "w": data("i8", n, 4, 50),
                   "s": data("i2", n, 5), "c": data("f8", 2 * n, 6).reshape(n, 2),
                   "b": np.arange(3 * n, dtype=np.uint8).reshape(n, 3)})
        put(f"sortd.{tag}", hp.sort(t, "k", ascending=False))
        for part in ("hash", "range"):
            put(f"shuf.{part}.{tag}", hp.shuffle(t, "k", part))
        put(f"sort2.{tag}", hp.sort(t, ["w", "k"]))
        put(f"gb2.{tag}", hp.groupby(t, ["w", "k"]).agg(v=["sum", "count"], s="max"))
        put(f"size.{tag}", hp.value_counts(t, "k"))
        put(f"uniq.{tag}", hp.unique(hp.DistArray.from_global(k, comm)))
        put(f"sorta.{tag}", hp.sort(hp.DistArray.from_global(k, comm)))
        r = local({"k": data(kd, n // 3, 7, span), "rid": np.arange(n // 3)})
        for how in ("inner", "left"):
            put(f"join.{tag}.{how}", hp.join(t, r, on="k", how=how, strategy="hash"))
        dest = (np.arange(t.local_rows) * 7 % comm.size).astype(np.int64)
        cols = {name: t.local(name) for name in ("k", "v", "s", "c", "b")}
        out, _ = hp.exchange(cols, dest, comm)
        put(f"exch.{tag}", {name: np.concatenate(comm.allgather(c)) for name, c in out.items()})

if not COMMON:  # the dense group-by of every other value dtype (float16 as float32)
    k = data("i8", n, 8, 300)
    for vd in ("i1", "i2", "u1", "u2", "u4", "f2", "?"):
        v = data("u1", n, 9) % 2 == 1 if vd == "?" else data(vd, n, 9)
        t = local({"k": k, "v": v, "f": data("f8", n, 10)})
        put(f"gbd.{vd}", hp.groupby(t, "k").agg(v=AGGS, f=["sum", "max"]))
        put(f"gbd2.{vd}", hp.groupby(t, "k").agg(f="sum", v=AGGS))

report = {"numba": "numba" in sys.modules, "status": _aot.status(), "misses": []}
for name in _aot.BUILTIN:
    if not name.startswith("hpcproc.shuffles"):
        continue
    mod = importlib.import_module(name)
    for attr, k in sorted(vars(mod).items()):
        if not isinstance(k, Kernel) or k.__module__ != name:
            continue
        missed = sorted(" ".join(keys) for keys, fn in k._found.items() if fn is None)
        if missed or k._disp is not None:
            report["misses"].append(f"{name}.{attr}: " + ("; ".join(missed) or "dispatcher"))
reports = comm.gather(report)
if comm.rank == 0:
    np.savez(sys.argv[1], **results)
    print(json.dumps(reports))
