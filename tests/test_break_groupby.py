"""Attacks on the group-by: the hash path's merge of sorted runs and the dense path.

Every result is compared with an independent numpy reference (np.unique, bincount,
ufunc.at) over the whole input, whatever the ranks hold: Zipf and all-equal keys, keys
on one rank only, empty ranks, more ranks than groups, NaN values, int64/uint64 keys at
their extremes, dense_limit boundaries. Marked ``mpi``: serial and under 2 and 3 ranks.
"""

import numpy as np
import pytest

import hpcproc as hp


def _local(data, comm, weights):
    """This rank's rows of ``data`` (a dict of equal-length columns) cut by ``weights``."""
    n = len(next(iter(data.values())))
    w = np.asarray(weights, float)[:comm.size]
    w = w if w.sum() else np.ones(comm.size)
    cuts = np.concatenate(([0], np.round(np.cumsum(w) / w.sum() * n))).astype(int)
    return {c: v[cuts[comm.rank]:cuts[comm.rank + 1]] for c, v in data.items()}


def _reference(k, v):
    u, inv = np.unique(k, return_inverse=True)
    inv = inv.reshape(-1)
    ok = ~np.isnan(v)
    cnt = np.bincount(inv[ok], minlength=u.size)
    mn = np.full(u.size, np.inf)
    mx = np.full(u.size, -np.inf)
    np.minimum.at(mn, inv[ok], v[ok])
    np.maximum.at(mx, inv[ok], v[ok])
    mn[cnt == 0] = mx[cnt == 0] = np.nan
    sm = np.bincount(inv[ok], weights=v[ok], minlength=u.size)
    return u, {"size": np.bincount(inv, minlength=u.size), "count": cnt, "min": mn, "max": mx,
               "sum": sm}


def _keys(kind, n, rng):
    if kind == "zipf":
        return np.minimum(rng.zipf(1.3, n), 5000).astype(np.int64)
    if kind == "equal":
        return np.full(n, -7, np.int64)
    if kind == "i64-extremes":
        return rng.choice(np.array([-2**63, -2**63 + 1, -1, 0, 2**63 - 1], np.int64), n)
    if kind == "u64-high":  # uint64 keys >= 2**63, a small range: dense
        return rng.integers(0, 40, n).astype(np.uint64) + np.uint64(2**64 - 40)
    if kind == "u64-across":  # a small range across 2**63
        return rng.integers(0, 40, n).astype(np.uint64) + np.uint64(2**63 - 20)
    return rng.integers(0, 2, n).astype(np.int32)  # two groups, fewer than 3 ranks


KINDS = ["zipf", "equal", "i64-extremes", "u64-high", "u64-across", "two"]
LAYOUTS = [(1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 3), (5, 1, 0)]


@pytest.mark.mpi
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", ["auto", "hash", "dense"])
def test_groupby_against_numpy(comm, kind, strategy):
    rng = np.random.default_rng(len(kind))
    for n in (0, 1, 3, 2000):
        k = _keys(kind, n, rng)
        if strategy == "dense" and kind == "i64-extremes" and n > 1:
            continue  # a range of up to 2**64 keys: refused (test_forced_dense_...)
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.1] = np.nan
        u, ref = _reference(k, v)
        for layout in LAYOUTS:
            for mm in ({}, {"max_message": 64}):
                t = _local({"k": k, "v": v}, comm, layout)
                res = hp.groupby(t, "k", comm=comm, strategy=strategy, **mm).agg(
                    v=["size", "count", "min", "max", "sum", "mean"])
                g = res.allgather()
                assert g["k"].dtype == k.dtype
                np.testing.assert_array_equal(g["k"], u)
                for a in ("size", "count", "min", "max"):
                    np.testing.assert_array_equal(g[f"v_{a}"], ref[a], err_msg=a)
                np.testing.assert_allclose(g["v_sum"], ref["sum"], rtol=1e-12, atol=1e-12)


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["auto", "hash"])
def test_extreme_integer_values(comm, strategy):
    """int64/uint64 values at their extremes: min/max exact in the value dtype, sums
    wrap as numpy's do."""
    k = np.array([3, 3, 9, 9, 3], np.int64)
    for v in (np.array([2**63 - 1, -2**63, 5, -5, 1], np.int64),
              np.array([2**64 - 1, 0, 2**63, 1, 7], np.uint64)):
        for layout in LAYOUTS:
            g = hp.groupby(_local({"k": k, "v": v}, comm, layout), "k", comm=comm,
                           strategy=strategy).agg(v=["min", "max", "sum"]).allgather()
            for i, key in enumerate((3, 9)):
                sel = v[k == key]
                assert g["v_min"][i] == sel.min() and g["v_max"][i] == sel.max()
                assert g["v_min"].dtype == v.dtype
                with np.errstate(over="ignore"):
                    assert g["v_sum"][i] == sel.sum()


@pytest.mark.mpi
def test_dense_limit_boundary(comm):
    """A key range of exactly dense_limit groups is dense, one more is hashed; the
    results agree with numpy either way, also with keys at the int64 minimum."""
    for lo in (0, -2**63):
        for span, how in ((100, "dense"), (101, "hash")):
            k = np.array([lo, lo + span - 1] * 5, np.int64)
            v = np.arange(10.0)
            g = hp.groupby(_local({"k": k, "v": v}, comm, (1, 2, 0)), "k", comm=comm,
                           dense_limit=100).agg(v="sum")
            assert g.meta["strategy"] == how
            got = g.allgather()
            np.testing.assert_array_equal(got["k"], [lo, lo + span - 1])
            np.testing.assert_array_equal(got["v_sum"], [20.0, 25.0])


@pytest.mark.mpi
def test_forced_dense_refuses_a_huge_range(comm):
    """strategy='dense' over a key range wider than dense_limit: one clear error on
    every rank (it used to be numpy's 'Maximum allowed dimension exceeded' or 'array is
    too big' from allocating 2**63 groups)."""
    k = np.array([2**64 - 1, 2**63, 0, 5], np.uint64)
    t = _local({"k": k, "v": np.ones(4)}, comm, (1, 1, 1))
    with pytest.raises(ValueError, match="strategy='dense'.*dense_limit"):
        hp.groupby(t, "k", comm=comm, strategy="dense").agg(v="sum")
    with pytest.raises(ValueError, match="dense_limit=10 "):
        hp.groupby(_local({"k": np.array([0, 10], np.int64)}, comm, (1, 1, 1)), "k",
                   comm=comm, strategy="dense", dense_limit=10).size()
    g = hp.groupby(_local({"k": np.array([0, 9], np.int64)}, comm, (1, 1, 1)), "k",
                   comm=comm, strategy="dense", dense_limit=10).size().allgather()
    np.testing.assert_array_equal(g["count"], [1, 1])


@pytest.mark.mpi
def test_multi_column_keys(comm):
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([-2**63, 0, 2**63 - 1], np.int64), 500)
    b = rng.integers(0, 3, 500).astype(np.uint64) + np.uint64(2**64 - 3)
    v = rng.standard_normal(500)
    for layout in LAYOUTS:
        g = hp.groupby(_local({"a": a, "b": b, "v": v}, comm, layout), ["a", "b"],
                       comm=comm).agg(v=["count", "max"]).allgather()
        pairs = sorted(set(zip(a.tolist(), b.tolist())))
        assert list(zip(g["a"].tolist(), g["b"].tolist())) == pairs
        for i, (x, y) in enumerate(pairs):
            sel = v[(a == x) & (b == y)]
            assert g["v_count"][i] == sel.size and g["v_max"][i] == sel.max()
