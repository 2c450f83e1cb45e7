"""MPI side of tests/test_many_ranks.py: every capability on tiny data at many ranks.

``python _many_ranks_script.py DIR`` (under ``mpiexec -n P``, P = 8 or 16) runs each
capability on data where some ranks hold no rows (5 rows, 0 rows, fewer rows than
ranks) and compares the result with numpy on rank 0, which holds the whole data. Rank 0
prints one line ``MANY {capability: "OK" | "FAIL: why"}``. A checkpoint saved at P
ranks goes to ``DIR/ck-P``; a checkpoint saved by another rank count (``DIR/ck-*``) is
restored here and compared (restore on a different rank count).
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

import hpcproc as hp
from hpcproc.partition import block_range

comm = MPI.COMM_WORLD
P, R = comm.size, comm.rank
D = Path(sys.argv[1])
ROWS = {"n37": 37, "n5": 5, "n0": 0}


def data(n, seed=0):
    rng = np.random.default_rng(seed + n)
    return np.round(rng.standard_normal(n) * 100, 2)


def keys(n):
    return (np.arange(n) * 7919) % 6


def setup():
    """Rank 0 writes the inputs; an error there is raised on every rank (no hang)."""
    err = None
    if R == 0:
        try:
            with h5py.File(D / f"in{P}.h5", "w") as f:
                for name, n in ROWS.items():
                    f[name] = data(n)
                    f.create_dataset("z" + name, data=data(n), chunks=(2,), maxshape=(None,),
                                     compression="gzip")
                f["m"] = data(40).reshape(10, 4)
                f["key"] = keys(37)
                f["val"] = data(37, 1)
        except Exception as exc:  # noqa: BLE001
            err = repr(exc)
    err = comm.bcast(err, root=0)
    if err:
        raise SystemExit(f"setup failed: {err}")


def mine(n):
    lo, hi = block_range(n, P, R)
    return lo, hi


def dist(a):
    return hp.DistArray.from_global(a, comm=comm)


def agree(ok):
    """True on every rank only if ``ok`` on every rank."""
    return comm.allreduce(bool(ok), op=MPI.LAND)


def close(a, b, rtol=1e-12):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=1e-12,
                       equal_nan=True)


IN = None  # the input file (set in main)


# --- capabilities: each returns True (or raises / returns a reason string) ---------------
def cap_read_contiguous():
    return all(np.array_equal(hp.read(IN, "/" + k, comm=comm).allgather(), data(n))
               for k, n in ROWS.items())


def cap_read_chunked_gzip():
    return all(np.array_equal(hp.read(IN, "/z" + k, comm=comm).allgather(), data(n))
               for k, n in ROWS.items())


def cap_write():
    out = str(D / f"w{P}.h5")
    for k, n in ROWS.items():
        hp.write(out, "/" + k, dist(data(n)), mode="a" if k != "n37" else "w")
    comm.Barrier()
    ok = True
    if R == 0:
        with h5py.File(out) as f:
            ok = all(np.array_equal(f[k][...], data(n)) for k, n in ROWS.items())
    return agree(ok)


def cap_table_roundtrip():
    t = hp.read_table(IN, {"key": "/key", "val": "/val"}, comm=comm)
    out = str(D / f"t{P}.h5")
    hp.write_table(out, t, group="/t")
    comm.Barrier()
    ok = True
    if R == 0:
        with h5py.File(out) as f:
            ok = np.array_equal(f["t/key"][...], keys(37)) and np.array_equal(f["t/val"][...],
                                                                             data(37, 1))
    return agree(ok)


def cap_stats_axis_none():
    for k, n in ROWS.items():
        s = hp.stats(hp.read(IN, "/" + k, comm=comm))
        a = data(n)
        if s["count"] != n:
            return f"{k}: count {s['count']} != {n}"
        if n and not (close(s["mean"], a.mean()) and close(s["std"], a.std())
                      and s["min"] == a.min() and s["max"] == a.max()):
            return f"{k}: {s} vs numpy mean {a.mean()} std {a.std()}"
    return True


def cap_stats_axis_0():
    s = hp.stats(hp.read(IN, "/m", comm=comm), axis=0)
    a = data(40).reshape(10, 4)
    return close(s["mean"], a.mean(0)) and close(s["std"], a.std(0)) and \
        close(s["min"], a.min(0)) and close(s["max"], a.max(0))


def cap_histogram():
    for k, n in (("n37", 37), ("n5", 5)):
        c, e = hp.histogram(hp.read(IN, "/" + k, comm=comm), bins=6)
        rc, re_ = np.histogram(data(n), bins=6)
        if not (np.array_equal(c, rc) and close(e, re_)):
            return f"{k}: {c} vs {rc}"
    return True


def cap_histogram2d():
    x = hp.read(IN, "/n37", comm=comm)
    y = hp.read(IN, "/val", comm=comm)
    H, xe, ye = hp.histogram2d(x, y, bins=4)
    rH, rxe, rye = np.histogram2d(data(37), data(37, 1), bins=4)
    return np.array_equal(H, rH) and close(xe, rxe) and close(ye, rye)


def cap_quantile():
    q = [0, 0.25, 0.5, 0.9, 1]
    for k, n in (("n37", 37), ("n5", 5)):
        v = hp.quantile(hp.read(IN, "/" + k, comm=comm), q)
        if not np.array_equal(np.asarray(v, float), np.quantile(data(n), q)):
            return f"{k}: {v} vs {np.quantile(data(n), q)}"
    return True


def cap_quantile_sketch():
    x = hp.read(IN, "/n37", comm=comm)
    sk = hp.QuantileSketch(0.01).add(x.local, comm=comm).merged(comm)
    est = np.asarray(sk.quantile([0.1, 0.5, 0.9]))
    exact = np.quantile(data(37), [0.1, 0.5, 0.9])
    return sk.count == 37 and bool(np.all(np.abs(est - exact) <= 0.03 * np.abs(exact) + 2))


def _twice(v):
    return 2.0 * v + 1.0


def _block_sq(b):
    return b * b


def _bsum(b):
    return b.sum()


def _merge(a, b):
    return a + b


def cap_map_map_blocks_reduce():
    for k, n in (("n37", 37), ("n5", 5)):
        x = hp.read(IN, "/" + k, comm=comm)
        a = data(n)
        if not close(hp.map(_twice, x).allgather(), 2 * a + 1):
            return f"map {k}"
        if not close(hp.map_blocks(_block_sq, x).allgather(), a * a):
            return f"map_blocks {k}"
        if not close(hp.reduce(_bsum, _merge, x), a.sum()):
            return f"reduce {k}"
    return True


def cap_scan():
    lo, hi = mine(5)
    got = hp.scan(hi - lo, comm=comm)
    inc = hp.scan(np.array([hi - lo, 1]), comm=comm, exclusive=False)
    return agree(got == lo and np.array_equal(inc, [hi, R + 1]))


def _table(n=37):
    lo, hi = mine(n)
    return hp.DistTable.from_local({"key": keys(n)[lo:hi], "val": data(n)[lo:hi]}, comm=comm)


def cap_sort():
    for n in (37, 5, 0):
        s = hp.sort(_table(n), "key").allgather()
        order = np.argsort(keys(n), kind="stable")
        if not (np.array_equal(s["key"], keys(n)[order]) and
                np.array_equal(s["val"], data(n)[order])):
            return f"{n} rows"
    return True


def _group_ref(n):
    k, v = keys(n), data(n)
    u = np.unique(k)
    return u, np.array([v[k == x].sum() for x in u]), np.array([(k == x).sum() for x in u])


def _groupby(strategy):
    for n in (37, 5):
        g = hp.groupby(_table(n), "key", strategy=strategy).agg({"val": ["sum", "count"]})
        out = g.allgather()
        order = np.argsort(out["key"])
        u, sums, counts = _group_ref(n)
        scol = next(c for c in out if "sum" in c)
        ccol = next(c for c in out if "count" in c)
        if not (np.array_equal(out["key"][order], u) and close(out[scol][order], sums)
                and np.array_equal(out[ccol][order], counts)):
            return f"{strategy} {n}: {out}"
    return True


def cap_groupby_dense():
    return _groupby("dense")


def cap_groupby_hash():
    return _groupby("hash")


def _right():
    lo, hi = mine(4)
    rk = np.array([0, 2, 4, 9])
    return hp.DistTable.from_local({"key": rk[lo:hi], "w": rk[lo:hi] * 10.0}, comm=comm), rk


def _join(how):
    right, rk = _right()
    out = hp.join(_table(), right, "key", how=how).allgather()
    k, v = keys(37), data(37)
    pairs = sorted((float(vv), float(kk * 10.0)) for kk, vv in zip(k, v) if kk in rk)
    if how == "left":
        pairs += sorted((float(vv), np.nan) for kk, vv in zip(k, v) if kk not in rk)
    got = list(zip(out["val"].tolist(), out["w"].tolist()))
    got_m = sorted(p for p in got if p[1] == p[1])
    got_n = sorted(p for p in got if p[1] != p[1])
    want_m = sorted(p for p in pairs if p[1] == p[1])
    want_n = sorted(p[0] for p in pairs if p[1] != p[1])
    return got_m == want_m and [p[0] for p in got_n] == want_n


def cap_join_inner():
    return _join("inner")


def cap_join_left():
    return _join("left")


def cap_unique_value_counts():
    x = dist(keys(37).astype(np.int64))
    u = hp.unique(x).allgather()
    vc = hp.value_counts(x).allgather()
    ru, rc = np.unique(keys(37), return_counts=True)
    return np.array_equal(u, ru) and np.array_equal(vc["value"], ru) and \
        np.array_equal(vc["count"], rc)


def cap_rebalance():
    n = 5 * P + 3
    a = np.arange(n, dtype=np.float64)
    local = a if R == P - 1 else a[:0]  # every row on the last rank
    out = hp.rebalance(hp.DistArray.from_local(local, comm=comm))
    lo, hi = mine(n)
    return agree(np.array_equal(out.local, a[lo:hi])) and np.array_equal(out.allgather(), a)


def cap_exchange():
    lo, hi = mine(23)
    rows = np.arange(lo, hi, dtype=np.int64)
    dest = (rows * 5) % P
    got, _ = hp.exchange({"r": rows}, dest, comm=comm)
    want = np.array([r for src in range(P) for r in range(*block_range(23, P, src))
                     if (r * 5) % P == R], dtype=np.int64)
    return agree(np.array_equal(np.sort(got["r"]), want))


def _ck_state(step, p_any=None):
    return {"a": dist(data(37) * step), "t": _table(5), "n": step}


def _check_restored(got, step):
    if got is None:
        return f"nothing restored (step {step} expected)"
    s, st = got
    t = st["t"].allgather()
    ok = s == step and np.array_equal(st["a"].allgather(), data(37) * step) and \
        np.array_equal(t["key"], keys(5)) and np.array_equal(t["val"], data(5)) and st["n"] == step
    return True if ok else f"restored step {s} with other data"


def cap_checkpoint_same_ranks():
    with hp.Checkpointer(str(D / f"ck-{P}"), comm=comm, keep=2) as ck:
        ck.save(1, _ck_state(1))
        ck.save(2, _ck_state(2))
    with hp.Checkpointer(str(D / f"ck-{P}"), comm=comm, keep=2) as ck:
        return _check_restored(ck.restore(), 2)


def cap_checkpoint_other_ranks():
    others = sorted(p for p in D.glob("ck-*") if p.name != f"ck-{P}")
    if not others:
        return "SKIP: no checkpoint of another rank count (run the other launch first)"
    for other in others:
        with hp.Checkpointer(str(other), comm=comm, keep=2) as ck:
            r = _check_restored(ck.restore(), 2)
            if r is not True:
                return f"{other.name}: {r}"
    return True


def cap_diff():
    same_ = hp.diff(IN, "/n37", IN, "/n37", comm=comm)
    other = hp.diff(IN, "/n37", IN, "/val", comm=comm)
    want = int(np.sum(data(37) != data(37, 1)))
    return same_["equal"] and not other["equal"] and other["differing"] == want


def cap_validate_dataset():
    a = data(37)
    rep = hp.validate_dataset(IN, "/n37", {"min": float(np.sort(a)[3]), "max": 1e9}, comm=comm)
    bad = next(c for c in rep["checks"] if c.get("rule") == "min")
    return (not rep["ok"]) and bad.get("violations") == 3


CAPS = {k[4:]: v for k, v in globals().items() if k.startswith("cap_")}


def main():
    global IN
    setup()
    IN = str(D / f"in{P}.h5")
    results, seconds = {}, {}
    for name, fn in CAPS.items():
        t0 = time.monotonic()
        if R == 0:
            print(f"START {name}", file=sys.stderr, flush=True)
        try:
            r = fn()
            r = "OK" if r is True else (r if isinstance(r, str) and r.startswith("SKIP")
                                        else f"FAIL: {r}")
        except Exception as exc:  # noqa: BLE001 - recorded, then the ranks agree below
            r = f"FAIL: {type(exc).__name__}: {exc} | {traceback.format_exc(limit=-2)[-400:]}"
        outs = comm.gather(r, root=0)
        if R == 0:
            bad = [f"rank {i}: {o}" for i, o in enumerate(outs) if o != outs[0]]
            results[name] = outs[0] if not bad else f"FAIL: ranks disagree: {bad[:3]}"
            seconds[name] = round(time.monotonic() - t0, 3)
    if R == 0:
        print("MANY " + json.dumps({"results": results, "seconds": seconds}), flush=True)
    os.environ.pop("HPCPROC_TRACE", None)


if __name__ == "__main__":
    main()
