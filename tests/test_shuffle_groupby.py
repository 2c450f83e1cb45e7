"""``hp.groupby``, ``hp.value_counts``, ``hp.unique`` against numpy references (1, 2, 3 ranks)."""

import numpy as np
import pytest
from _shuffle_data import LAYOUTS, group_reference, keys, split

import hpcproc as hp

pytestmark = pytest.mark.mpi

AGGS = ["sum", "mean", "count", "min", "max", "size"]


def _reference(key_cols, v):
    n = len(v)
    uk, g = group_reference(key_cols, n)
    ng = len(uk[0]) if uk else 0
    ok = ~np.isnan(v) if v.dtype.kind == "f" else np.ones(n, bool)
    ref = {"size": np.bincount(g, minlength=ng), "count": np.bincount(g[ok], minlength=ng)}
    ref["sum"] = np.array([v[ok & (g == i)].sum() for i in range(ng)])
    ref["min"] = np.array([v[ok & (g == i)].min() if ref["count"][i] else np.nan
                           for i in range(ng)])
    ref["max"] = np.array([v[ok & (g == i)].max() if ref["count"][i] else np.nan
                           for i in range(ng)])
    with np.errstate(invalid="ignore"):
        ref["mean"] = np.where(ref["count"] > 0, ref["sum"] / np.maximum(ref["count"], 1), np.nan)
    return uk, ref


def _check(result, names, key_cols, v, vname="v"):
    g = result.allgather()
    uk, ref = _reference(key_cols, v)
    for name, col in zip(names, uk):
        np.testing.assert_array_equal(g[name], col)
        assert g[name].dtype == col.dtype
    for a in AGGS:
        got = g[f"{vname}_{a}"]
        if a in ("sum", "mean") and v.dtype.kind == "f":
            np.testing.assert_allclose(got, ref[a], rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(got, ref[a])
    assert result.meta["rank_rows"] == result.comm.allgather(result.local_rows)


@pytest.mark.parametrize("strategy", ["auto", "dense", "hash"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["uniform", "zipf", "equal"])
def test_groupby_int_key(comm, kind, layout, strategy):
    n = 2500
    k = keys(kind, n, seed=21)
    v = np.random.default_rng(22).normal(size=n)
    v[::11] = np.nan
    t = split({"k": k, "v": v}, comm, layout)
    r = hp.groupby(t, "k", strategy=strategy).agg(v=AGGS)
    assert r.meta["strategy"] == ("hash" if strategy == "hash" else "dense")
    _check(r, ["k"], [k], v)


def test_groupby_wide_int_key_uses_hash(comm):
    n = 2000
    k = keys("wide", n, seed=4) // 2**50 * 2**40  # few thousand values, a wide range
    w = np.random.default_rng(3).integers(-50, 50, n).astype(np.int32)
    r = hp.groupby(split({"k": k, "w": w}, comm, "uneven"), "k").agg(w=AGGS)
    assert r.meta["strategy"] == "hash"
    _check(r, ["k"], [k], w, "w")
    assert r["w_min"].dtype == np.int32 and r["w_sum"].dtype == np.int64


def test_groupby_float_nan_keys_and_several_keys(comm):
    n = 2000
    rng = np.random.default_rng(8)
    k1 = keys("float_nan", n, seed=8)
    k2 = rng.integers(0, 3, n).astype(np.int16)
    v = rng.random(n)
    t = split({"a": k1, "b": k2, "v": v}, comm, "first_empty")
    _check(hp.groupby(t, "a").agg(v=AGGS), ["a"], [k1], v)
    _check(hp.groupby(t, ["a", "b"]).agg({"v": AGGS}), ["a", "b"], [k1, k2], v)
    _check(hp.groupby(t, ["b", "a"]).agg(v=AGGS), ["b", "a"], [k2, k1], v)


def test_groupby_forced_large_count_path(comm):
    n = 3000
    k = keys("wide", n, seed=6)
    v = np.arange(n, dtype=float)
    r = hp.groupby(split({"k": k, "v": v}, comm), "k", strategy="hash",
                   max_message=128, memory_budget=1).agg(v=AGGS)
    assert r.meta["rounds"] > 1 or comm.size == 1
    _check(r, ["k"], [k], v)


@pytest.mark.parametrize("strategy", ["dense", "hash"])
def test_groupby_zipf_skew_balanced(comm, strategy):
    # Zipf(1.2) keys: after pre-aggregation every rank holds about the same number of
    # groups (never more than 2x the average), whatever the key frequencies
    n = 20000
    w = np.arange(1, (1 << 14) + 1, dtype=float) ** -1.2
    k = np.random.default_rng(1).choice(1 << 14, size=n, p=w / w.sum())
    r = hp.groupby(split({"k": k, "v": np.ones(n)}, comm), "k", strategy=strategy).agg(v="sum")
    counts = np.array(r.meta["rank_rows"])
    assert counts.max() <= 2 * counts.mean()
    u, c = np.unique(k, return_counts=True)
    g = r.allgather()
    np.testing.assert_array_equal(g["k"], u)
    np.testing.assert_array_equal(g["v_sum"], c.astype(float))


def test_value_counts_and_unique(comm):
    n = 1500
    x = keys("float_nan", n, seed=12)
    arr = split({"x": x}, comm, "all_on_last")["x"]
    u, c = np.unique(x, return_counts=True, equal_nan=True)
    vc = hp.value_counts(arr).allgather()
    np.testing.assert_array_equal(vc["value"], u)
    np.testing.assert_array_equal(vc["count"], c)
    for by in (None, "value"):  # an array's key named or not: an array (was a table)
        un = hp.unique(arr, by=by)
        assert isinstance(un, hp.DistArray)
        np.testing.assert_array_equal(un.allgather(), u)
    k = keys("zipf", n, seed=13)
    t = split({"k": k, "j": k % 3}, comm)
    ut = hp.unique(t, ["j", "k"]).allgather()
    uk, _ = group_reference([k % 3, k], n)
    np.testing.assert_array_equal(ut["j"], uk[0])
    np.testing.assert_array_equal(ut["k"], uk[1])
    assert list(ut) == ["j", "k"]


def test_groupby_empty_and_errors(comm):
    t = split({"k": np.zeros(0, dtype=np.int64), "v": np.zeros(0)}, comm)
    for strategy in ("auto", "dense", "hash"):
        r = hp.groupby(t, "k", strategy=strategy).agg(v=["sum", "mean"])
        assert len(r) == 0 and r.columns == ["k", "v_sum", "v_mean"]
    t = split({"k": np.arange(5.0), "v": np.zeros(5)}, comm)
    with pytest.raises(ValueError, match="aggregates must be"):
        hp.groupby(t, "k").agg(v="median")
    with pytest.raises(KeyError, match="nope"):
        hp.groupby(t, "k").agg(nope="sum")
    with pytest.raises(ValueError, match="dense"):
        hp.groupby(t, "k", strategy="dense").agg(v="sum")


def test_groupby_uint64_and_big_endian_keys(comm):
    """Keys the hash strategy reads raw (native uint64) or must encode (big-endian)."""
    n = 3000
    rng = np.random.default_rng(12)
    u = (np.uint64(2**63) + rng.integers(0, 40, n).astype(np.uint64) * np.uint64(2**50))
    v = rng.normal(size=n)
    _check(hp.groupby(split({"k": u, "v": v}, comm, "uneven"), "k", strategy="hash")
           .agg(v=AGGS), ["k"], [u], v)
    b = rng.integers(-30, 30, n).astype(">i8")
    r = hp.groupby(split({"k": b, "v": v}, comm), "k", strategy="hash").agg(v=AGGS)
    g = r.allgather()
    np.testing.assert_array_equal(g["k"], np.unique(b))
    np.testing.assert_array_equal(g["v_count"], np.unique(b, return_counts=True)[1])


@pytest.mark.parametrize("strategy", ["auto", "hash", "dense"])
@pytest.mark.parametrize("dtype", ["i8", "u8", "i4"])
def test_mean_of_large_integers_does_not_wrap(comm, strategy, dtype):
    """The mean of integers is numpy's (a float64 sum), although their sum wraps like
    numpy's int64/uint64 sum: 4 x 2**62 has sum 0 in int64 but mean 2**62."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    k = rng.integers(0, 5, 600)
    top = np.full(600, info.max, dtype) - rng.integers(0, 1000, 600).astype(dtype)
    v = np.where(rng.random(600) < 0.5, top, np.array(info.max // 3, dtype))
    r = hp.groupby(split({"k": k, "v": v}, comm, "uneven"), "k",
                   strategy=strategy).agg(v=["mean", "sum", "count"]).gather()
    r = comm.bcast(r, root=0)
    assert sorted(r) == ["k", "v_count", "v_mean", "v_sum"]  # no helper column leaks
    for i, key in enumerate(r["k"]):
        sel = v[k == key]
        np.testing.assert_allclose(r["v_mean"][i], np.mean(sel), rtol=1e-13)  # sum order
        assert r["v_sum"][i] == np.sum(sel)  # the integer sum wraps as numpy's does


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"])
def test_key_range_kernel_matches_numpy(dtype):
    """The dense group-by's one-pass min/max against numpy's two reductions."""
    from hpcproc.shuffles._reduce import key_range
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    cases = [rng.integers(info.min, info.max, 1001, dtype=dtype, endpoint=True),
             np.minimum(rng.zipf(1.2, 777), min(info.max, 2**62)).astype(dtype),
             np.full(65, info.max, dtype), np.full(1, info.min, dtype),
             np.array([info.max, info.min, 0, info.max], dtype)[::-1].copy()]
    if info.min < 0:
        cases.append(rng.integers(info.min, 0, 513, dtype=dtype))
    for a in cases:
        out = np.empty(2, a.dtype)
        key_range(a, out)
        assert (out[0], out[1]) == (a.min(), a.max())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["i8", "u8"])
def test_dense_groupby_at_the_integer_extremes(comm, layout, dtype):
    """A small key range at either end of int64 / uint64 takes the dense path."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    for base, sign in ((info.min, 1), (info.max, -1)):
        off = rng.integers(0, 50, 2000)
        k = np.array([base + sign * int(o) for o in off], dtype=dtype)
        v = rng.normal(size=k.shape[0])
        r = hp.groupby(split({"k": k, "v": v}, comm, layout), "k").agg(v=AGGS)
        assert r.meta["strategy"] == "dense"
        _check(r, ["k"], [k], v)


def _dense_table(comm, layout, seed, n, half_span, wdtype):
    """``(table, k, v)``: keys in [-half_span, half_span), float64 values with 10% NaN,
    small integers ``w`` of ``wdtype``, laid out by ``layout``."""
    rng = np.random.default_rng(seed)
    k = rng.integers(-half_span, half_span, n)
    v = rng.normal(size=n)
    v[rng.random(n) < 0.1] = np.nan
    w = rng.integers(-5, 5, n).astype(wdtype)
    return split({"k": k, "v": v, "w": w}, comm, layout), k, v


def _same_bytes(got, want):
    """Two gathered results: the same columns, dtypes and bytes."""
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].tobytes() == want[name].tobytes(), name


@pytest.mark.parametrize("layout", ["even", "first_empty", "uneven"])
def test_dense_count_chunks_give_the_same_bytes(comm, layout, monkeypatch):
    """Row counts are int32 per chunk of ``COUNT_CHUNK`` rows, added into int64 counts
    (reduced as int64) when all ranks together hold more: forced here with 7-row chunks,
    the result is the one-chunk result to the byte, and numpy's."""
    from hpcproc.shuffles import grouping
    t, k, v = _dense_table(comm, layout, 11, 1500, 40, np.int32)
    spec = {"v": AGGS, "w": ["sum", "min", "max", "mean"]}
    one = hp.groupby(t, "k", strategy="dense").agg(spec).allgather()
    sizes = hp.groupby(t, "k", strategy="dense").size().allgather()
    monkeypatch.setattr(grouping, "COUNT_CHUNK", 7)
    r = hp.groupby(t, "k", strategy="dense").agg(spec)
    assert r.meta["strategy"] == "dense"
    _same_bytes(r.allgather(), one)
    counted = hp.groupby(t, "k", strategy="dense").size().allgather()
    np.testing.assert_array_equal(counted["count"], sizes["count"])
    np.testing.assert_array_equal(counted["count"], np.unique(k, return_counts=True)[1])
    _check(r, ["k"], [k], v)


@pytest.mark.parametrize("layout", ["even", "first_empty", "uneven"])
def test_dense_rows_counted_in_their_own_pass_give_the_same_bytes(comm, layout, monkeypatch):
    """Beyond ``SPLIT_STATE`` bytes of state the rows are counted beside the first
    column's sums (one array of pairs), or in a pass of their own when that column has
    min/max: forced both ways, alone and with 7-row count chunks, the result is the same
    to the byte and numpy's; a real key span beyond the limit (300,000 groups) takes
    those paths by default."""
    from hpcproc.shuffles import grouping
    t, k, v = _dense_table(comm, layout, 12, 2000, 60, np.int16)
    rng = np.random.default_rng(13)
    specs = [{"v": AGGS, "w": ["sum", "min", "max", "mean"]}, {"w": ["sum"]}, {"v": ["count"]}]
    for spec in specs:
        runs = []
        for limit, chunk in ((1 << 62, grouping.COUNT_CHUNK), (0, grouping.COUNT_CHUNK),
                             (0, 7), (1 << 62, 7)):
            monkeypatch.setattr(grouping, "SPLIT_STATE", limit)
            monkeypatch.setattr(grouping, "COUNT_CHUNK", chunk)
            r = hp.groupby(t, "k", strategy="dense").agg(spec)
            assert r.meta["strategy"] == "dense"
            runs.append(r.allgather())
        for other in runs[1:]:
            _same_bytes(other, runs[0])
        if "v" in spec and len(spec["v"]) > 1:
            monkeypatch.setattr(grouping, "SPLIT_STATE", 0)
            _check(hp.groupby(t, "k", strategy="dense").agg(spec), ["k"], [k], v)
    monkeypatch.undo()
    big = rng.integers(0, 300_000, 8000)  # span * 12 bytes > SPLIT_STATE
    assert 300_000 * 12 > grouping.SPLIT_STATE
    vb = rng.normal(size=big.size)
    vb[rng.random(vb.size) < 0.1] = np.nan
    tb = split({"k": big, "v": vb}, comm, layout)
    r = hp.groupby(tb, "k", strategy="dense").agg({"v": AGGS})
    assert r.meta["strategy"] == "dense"
    _check(r, ["k"], [big], vb)
    # without min/max the rows are counted beside the sums (one array of pairs): the
    # same bytes
    sub = ["sum", "count", "mean", "size"]
    paired = hp.groupby(tb, "k", strategy="dense").agg({"v": sub}).allgather()
    got = r.allgather()
    for a in sub:
        assert paired[f"v_{a}"].tobytes() == got[f"v_{a}"].tobytes(), a


def _values(dtype, n, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(n) < 0.3
    if dtype.kind == "f":
        v = (rng.normal(size=n) * 50).astype(dtype)
        v[rng.random(n) < 0.1] = np.nan
        return v
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["uniform", "zipf", "equal", "negative", "u64-top", "one"])
def test_dense_every_value_dtype_first_or_second(comm, layout, kind):
    """The dense path of every value dtype (each ahead-of-time compiled), first (it
    counts the rows, before a float64 column with NaNs) and second (after an int64
    one), every aggregate: numpy's result, and the same bytes as the chunked path.
    Uniform, Zipf, all-equal, negative and uint64 keys near 2**64, and one row; empty
    ranks by the layouts."""
    from hpcproc.shuffles import grouping
    rng = np.random.default_rng(23)
    n = 1 if kind == "one" else 900
    k = {"uniform": rng.integers(0, 300, n), "zipf": (rng.zipf(1.3, n) - 1) % 257,
         "equal": np.full(n, 7), "negative": rng.integers(-500, -100, n),
         "u64-top": np.uint64(2**64 - 1) - rng.integers(0, 90, n).astype(np.uint64),
         "one": np.array([-3])}[kind]
    for dt in ("f8", "f4", "f2", "i8", "u8", "i4", "i2", "i1", "u4", "u2", "u1", "?"):
        v, f, w = _values(dt, n, rng), _values("f8", n, rng), rng.integers(-9, 9, n)
        t = split({"k": k, "v": v, "f": f, "w": w}, comm, layout)
        for spec in ({"v": AGGS, "f": AGGS}, {"w": ["sum", "min"], "v": AGGS}):
            r = hp.groupby(t, "k").agg(spec)
            assert r.meta["strategy"] == "dense"
            got = r.allgather()
            assert list(got) == ["k"] + [f"{c}_{a}" for c, aggs in spec.items() for a in aggs]
            for name, col in (("v", v), ("f", f)):
                if name in spec:
                    cols = {a: got[f"{name}_{a}"] for a in AGGS}
                    _check_cols(cols, got["k"], k, col, dt if name == "v" else "f8")
            if "f" in spec:  # no min/max, states beyond SPLIT_STATE: rows beside the sums
                sub = {"v": ["sum", "count", "mean", "size"]}
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(grouping, "SPLIT_STATE", 0)
                    paired = hp.groupby(t, "k").agg(sub).allgather()
                for a in sub["v"]:
                    assert paired[f"v_{a}"].dtype == got[f"v_{a}"].dtype, (dt, a)
                    assert paired[f"v_{a}"].tobytes() == got[f"v_{a}"].tobytes(), (dt, a)
            with pytest.MonkeyPatch.context() as mp:  # int64 row counts, 5-row chunks
                mp.setattr(grouping, "COUNT_CHUNK", 5)
                chunked = hp.groupby(t, "k").agg(spec).allgather()
            assert list(chunked) == list(got)
            for name in got:
                assert chunked[name].dtype == got[name].dtype, (dt, name)
                assert chunked[name].tobytes() == got[name].tobytes(), (dt, name)


def _check_cols(cols, gk, k, v, dt):
    """The group-by columns ``cols`` (aggregate -> values) of keys ``gk`` against numpy."""
    uk, ref = _reference([k], v.astype(np.float64))
    np.testing.assert_array_equal(gk, uk[0])
    assert gk.dtype == k.dtype
    dt = np.dtype(dt)
    for a in ("size", "count"):
        np.testing.assert_array_equal(cols[a], ref[a])
        assert cols[a].dtype == np.int64
    np.testing.assert_allclose(cols["mean"], ref["mean"], rtol=1e-9)
    if dt.kind == "f":
        np.testing.assert_allclose(cols["sum"], ref["sum"], rtol=1e-9, atol=1e-9)
        assert cols["sum"].dtype == np.float64
        for a in ("min", "max"):
            np.testing.assert_array_equal(cols[a], ref[a].astype(dt))
            assert cols[a].dtype == dt
        return
    # exact: integer sums wrap in int64 / uint64 as numpy's do
    acc = np.uint64 if dt.kind == "u" else np.int64
    with np.errstate(over="ignore"):
        sums = [np.sum(v[k == u].astype(acc)) for u in uk[0]]
    np.testing.assert_array_equal(cols["sum"], np.array(sums, acc))
    assert cols["sum"].dtype == acc
    for a, fn in (("min", np.min), ("max", np.max)):
        np.testing.assert_array_equal(cols[a], np.array([fn(v[k == u]) for u in uk[0]], dt))
        assert cols[a].dtype == dt
