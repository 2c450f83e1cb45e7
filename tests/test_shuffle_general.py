"""General (full-range, many-distinct) keys through the shuffle paths, against numpy.

The hash group-by (sort, cut into one slice per rank, merge of the received runs), the
contiguous exchange, the radix-partitioned hash join and the fused dense group-by, at
1, 2 and 3 ranks: full-range int64 keys including int64 min/max, negative keys, uint64
keys above 2**63, Zipf and all-equal keys, NaN values, empty ranks and one row. Plus the
kernels (:func:`run_counts`, :func:`merge_groups`, :func:`hash_join`) alone.
"""

import numpy as np
import pytest
from _shuffle_data import LAYOUTS, split

import hpcproc as hp
from hpcproc.shuffles._exchange import MAX_MESSAGE, exchange_runs
from hpcproc.shuffles._hashjoin import hash_join
from hpcproc.shuffles._merge import merge_groups, run_counts

pytestmark = pytest.mark.mpi

I64 = np.iinfo(np.int64)


def full_range(kind, n, seed=0):
    """Key columns over the whole int64 range (the cases where the dense path is out)."""
    rng = np.random.default_rng(seed)
    if kind == "full":
        k = rng.integers(I64.min, I64.max, n, dtype=np.int64, endpoint=True)
        k[: min(n, 4)] = [I64.min, I64.max, -1, 0][: min(n, 4)]
        return k
    if kind == "few_full":  # many repeats of a few full-range keys, incl. the extremes
        pool = np.array([I64.min, I64.max, -(2**40), 2**40 + 3, 0, -1], np.int64)
        return pool[rng.integers(0, pool.size, n)]
    if kind == "zipf_full":
        pool = rng.integers(I64.min, I64.max, 4096, dtype=np.int64)
        w = np.arange(1, 4097, dtype=float) ** -1.2
        return pool[rng.choice(4096, size=n, p=w / w.sum())]
    if kind == "equal":
        return np.full(n, I64.min, np.int64)
    if kind == "uint_high":
        return rng.integers(2**63 - 5, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    raise ValueError(kind)


KINDS = ("full", "few_full", "zipf_full", "equal", "uint_high")


def _values(n, seed):
    v = np.random.default_rng(seed + 1).normal(size=n)
    v[np.random.default_rng(seed + 2).random(n) < 0.1] = np.nan
    return v


def _group_reference(k, v):
    u, inv = np.unique(k, return_inverse=True)
    inv = inv.reshape(-1)
    ok = ~np.isnan(v)
    ng = u.size
    ref = {"size": np.bincount(inv, minlength=ng), "count": np.bincount(inv[ok], minlength=ng),
           "sum": np.bincount(inv[ok], weights=v[ok], minlength=ng)}
    mn = np.full(ng, np.inf)
    mx = np.full(ng, -np.inf)
    np.minimum.at(mn, inv[ok], v[ok])
    np.maximum.at(mx, inv[ok], v[ok])
    ref["min"] = np.where(ref["count"] > 0, mn, np.nan)
    ref["max"] = np.where(ref["count"] > 0, mx, np.nan)
    return u, ref


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 3000])
def test_hash_groupby_full_range(comm, kind, layout, n):
    k, v = full_range(kind, n, seed=n), _values(n, n)
    res = hp.groupby(split({"k": k, "v": v}, comm, layout), "k", strategy="hash").agg(
        v=["sum", "count", "min", "max", "size"])
    assert res.meta["strategy"] == "hash"
    g = res.allgather()
    u, ref = _group_reference(k, v)
    np.testing.assert_array_equal(g["k"], u)  # one row per key, sorted in rank order
    assert g["k"].dtype == k.dtype
    for a in ("size", "count", "min", "max"):
        np.testing.assert_array_equal(g[f"v_{a}"], ref[a])
    np.testing.assert_allclose(g["v_sum"], ref["sum"], rtol=1e-12, atol=1e-12)
    local = res.local()["k"]
    assert np.all(local[1:] > local[:-1])


@pytest.mark.parametrize("kind", ["full", "zipf_full"])
def test_hash_groupby_multikey_and_forced(comm, kind):
    n = 2500
    k = full_range(kind, n, seed=3)
    k2 = np.random.default_rng(4).integers(-2, 2, n).astype(np.int32)
    v = np.random.default_rng(5).integers(-(2**40), 2**40, n)
    t = split({"a": k, "b": k2, "v": v}, comm, "uneven")
    g = hp.groupby(t, ["a", "b"], max_message=4096).agg(v="sum").allgather()
    combined = np.rec.fromarrays([k, k2])
    u, inv = np.unique(combined, return_inverse=True)
    np.testing.assert_array_equal(g["a"], u.f0)
    np.testing.assert_array_equal(g["b"], u.f1)
    np.testing.assert_array_equal(g["v_sum"], np.bincount(inv.reshape(-1), minlength=u.size,
                                                          weights=v).astype(np.int64))


@pytest.mark.parametrize("kind", ["uniform", "zipf", "negative", "uint_top"])
def test_dense_groupby_fused_kernel(comm, kind):
    n = 5000
    rng = np.random.default_rng(6)
    if kind == "uniform":
        k = rng.integers(0, 1000, n)
    elif kind == "zipf":
        k = (rng.zipf(1.3, n) % 700).astype(np.int64)
    elif kind == "negative":
        k = rng.integers(I64.min, I64.min + 300, n, dtype=np.int64)
    else:  # a small range at the top of uint64: key - low wraps
        k = rng.integers(2**64 - 300, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    v = rng.normal(size=n).astype(np.float32)
    v[rng.random(n) < 0.2] = np.nan
    res = hp.groupby(split({"k": k, "v": v}, comm, "first_empty"), "k").agg(
        v=["sum", "count", "min", "max", "size"])
    assert res.meta["strategy"] == "dense"
    g = res.allgather()
    u, ref = _group_reference(k, v.astype(np.float64))
    np.testing.assert_array_equal(g["k"], u)
    for a in ("size", "count"):
        np.testing.assert_array_equal(g[f"v_{a}"], ref[a])
    np.testing.assert_allclose(g["v_sum"], ref["sum"], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(g["v_min"], ref["min"].astype(np.float32))
    g2 = hp.groupby(split({"k": k}, comm, "uneven"), "k").size().allgather()
    np.testing.assert_array_equal(g2["count"], ref["size"])


def test_exchange_runs(comm):
    size, rank = comm.size, comm.rank
    rng = np.random.default_rng(rank)
    counts = rng.integers(0, 50, size) if rank != size - 1 else np.zeros(size, np.int64)
    n = int(counts.sum())
    cols = {"a": np.arange(n, dtype=np.int64) + 1000 * rank,
            "b": np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.int16)}
    for mm in (MAX_MESSAGE, 16):  # one round, and the general path
        got, info = exchange_runs(cols, counts, comm, max_message=mm)
        every = comm.allgather(counts)
        want = []
        for s in range(size):
            off = int(np.sum(every[s][:rank]))
            want.append(np.arange(off, off + every[s][rank]) + 1000 * s)
        want = np.concatenate(want) if want else np.empty(0, np.int64)
        np.testing.assert_array_equal(got["a"], want)
        np.testing.assert_array_equal(got["b"][:, 0], want % 1000)
        assert list(info["received"]) == [e[rank] for e in every]


def test_run_counts_and_merge_groups():
    rng = np.random.default_rng(7)
    for n, runs, words in [(0, 1, 1), (0, 4, 1), (1, 3, 1), (500, 1, 1), (2000, 5, 2),
                           (777, 8, 1), (3000, 3, 1)]:
        K = rng.integers(0, 20 if words > 1 else 200, (n, words)).astype(np.uint64)
        K[::7, 0] = np.uint64(2**64 - 1)
        cuts = np.sort(rng.integers(0, n + 1, runs - 1))
        parts = np.split(K, cuts)
        # every run sorted with distinct keys (one rank's pre-aggregated groups)
        parts = [np.unique(p, axis=0) if p.shape[0] else p for p in parts]
        K = np.ascontiguousarray(np.concatenate(parts)) if n else K
        counts = np.array([p.shape[0] for p in parts], np.int64)
        keys, gid = merge_groups(K, counts)
        want = np.unique(K, axis=0) if K.shape[0] else K
        np.testing.assert_array_equal(keys, want)
        np.testing.assert_array_equal(keys[gid], K)  # every row maps to its own key
        for a, b in zip(np.r_[0, np.cumsum(counts)[:-1]], np.cumsum(counts)):
            assert np.all(np.diff(gid[a:b]) > 0)  # increasing within a run
        Ks = keys
        S = np.sort(rng.integers(0, 21, (runs - 1, words)).astype(np.uint64), axis=0)
        S = S[np.lexsort(S.T[::-1])]
        got = run_counts(Ks, S, runs)
        dest = np.array([sum(tuple(s) <= tuple(r) for s in S) for r in Ks], np.int64)
        np.testing.assert_array_equal(got, np.bincount(dest, minlength=runs))
    with pytest.raises(ValueError):
        merge_groups(np.zeros((3, 1), np.uint64), np.array([1, 1]))


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("keep", [True, False])
def test_hash_join_kernel(ordered, keep):
    rng = np.random.default_rng(8)
    for nl, nr, span in [(0, 5, 10), (5, 0, 10), (1, 1, 1), (3000, 200, 300),
                         (20000, 6000, 2**64 - 1), (500, 5000, 5)]:
        Kr = rng.integers(0, span, (nr, 1), dtype=np.uint64, endpoint=True)
        Kl = rng.integers(0, span, (nl, 1), dtype=np.uint64, endpoint=True)
        if nr and nl:
            Kl[::3] = Kr[rng.integers(0, nr, Kl[::3].shape[0])]
        li, ri = hash_join(Kl, Kr, keep, "right" if ordered or keep else "smaller")
        li = np.arange(nl) if li is None else li
        got = list(zip(li.tolist(), ri.tolist()))
        want = []
        for i in range(nl):
            m = np.flatnonzero(Kr[:, 0] == Kl[i, 0]).tolist()
            want += [(i, j) for j in m] or ([(i, -1)] if keep else [])
        if ordered:
            assert got == want  # left order, matches in right order
        else:
            assert sorted(got) == want


@pytest.mark.parametrize("layout", ["even", "all_on_last", "first_empty"])
@pytest.mark.parametrize("how", ["inner", "left"])
def test_join_full_range(comm, layout, how):
    rng = np.random.default_rng(9)
    dim = np.unique(full_range("full", 3000, seed=9))
    fact = np.concatenate([dim[rng.integers(0, dim.size, 4000)],
                           full_range("full", 300, seed=10), [I64.min, I64.max]])
    w = rng.random(dim.size)
    val = rng.random(fact.size)
    L = split({"key": fact, "val": val, "lid": np.arange(fact.size)}, comm, layout)
    R = split({"key": dim, "w": w}, comm, "uneven")
    res = hp.join(L, R, "key", how=how, strategy="hash")
    g = res.allgather()
    pos = {int(x): i for i, x in enumerate(dim)}
    want_pairs = sorted((i, pos.get(int(x), -1)) for i, x in enumerate(fact)
                        if how == "left" or int(x) in pos)
    lid = g["lid"].tolist()
    wgot = g["w"]
    got = sorted(zip(lid, [pos.get(int(fact[i]), -1) for i in lid]))
    assert got == want_pairs
    np.testing.assert_array_equal(g["key"], fact[g["lid"]])
    matched = np.array([int(fact[i]) in pos for i in lid], bool)
    np.testing.assert_array_equal(wgot[matched], w[[pos[int(fact[i])] for i in
                                                    np.asarray(lid)[matched]]])
    assert np.isnan(wgot[~matched]).all()
    want_sum = sum(val[i] * w[pos[int(x)]] for i, x in enumerate(fact) if int(x) in pos)
    np.testing.assert_allclose(np.nansum(g["val"] * wgot), want_sum, rtol=1e-12)


@pytest.mark.parametrize("layout", ["even", "all_on_last", "first_empty"])
@pytest.mark.parametrize("kind", ["uniform", "zipf", "equal", "negative", "nan_last"])
def test_dense_groupby_several_columns(comm, kind, layout):
    # the dense path's states: rows and the first column's sum interleaved, the second
    # column's sum alone, NaN counts reduced only where a rank saw a NaN, min/max asked
    # for one column only; groups split over the ranks by the present keys
    n = 4000
    rng = np.random.default_rng(9)
    if kind == "uniform":
        k = rng.integers(0, 1 << 12, n)
    elif kind == "zipf":
        k = ((rng.zipf(1.2, n) - 1) % 3000).astype(np.int64)
    elif kind == "equal":
        k = np.full(n, 42, np.int64)
    else:  # negative keys; for nan_last, NaN values only in the last rows
        k = rng.integers(-2000, -1000, n).astype(np.int32)
    v = rng.normal(size=n)
    if kind == "nan_last":
        v[-n // 10:][rng.random(n // 10) < 0.5] = np.nan
    w = rng.integers(-100, 100, n).astype(np.int16)
    res = hp.groupby(split({"k": k, "v": v, "w": w}, comm, layout), "k",
                     strategy="dense").agg(v=["sum", "count", "mean"], w=["min", "max", "sum"])
    assert res.meta["strategy"] == "dense"
    rows = np.array(res.meta["rank_rows"])
    assert rows.max() - rows.min() <= 1  # present groups split evenly
    g = res.allgather()
    u, ref = _group_reference(k, v)
    np.testing.assert_array_equal(g["k"], u)
    assert g["k"].dtype == k.dtype
    np.testing.assert_array_equal(g["v_count"], ref["count"])
    np.testing.assert_allclose(g["v_sum"], ref["sum"], rtol=1e-9, atol=1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(g["v_mean"], ref["sum"] / ref["count"], rtol=1e-9)
    inv = np.unique(k, return_inverse=True)[1].reshape(-1)
    wmin = np.full(u.size, 1000)
    np.minimum.at(wmin, inv, w)
    wmax = np.full(u.size, -1000)
    np.maximum.at(wmax, inv, w)
    np.testing.assert_array_equal(g["w_min"], wmin)
    np.testing.assert_array_equal(g["w_max"], wmax)
    assert g["w_min"].dtype == np.int16
    np.testing.assert_array_equal(g["w_sum"], np.bincount(inv, weights=w, minlength=u.size))
    sz = hp.groupby(split({"k": k}, comm, layout), "k", strategy="dense").size().allgather()
    np.testing.assert_array_equal(sz["count"], ref["size"])
