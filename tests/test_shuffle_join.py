"""``hp.join`` against a pure-numpy nested-loop merge reference (1, 2, 3 ranks)."""

import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp

pytestmark = pytest.mark.mpi


def _merge_reference(lk, rk, how):
    """(left row, right row or -1) pairs of an equi-join; NaN keys match NaN keys."""
    pairs = []
    for i in range(len(lk[0])):
        match = np.ones(len(rk[0]), dtype=bool)
        for a, b in zip(lk, rk):
            x = a[i]
            match &= (b == x) | (np.isnan(b.astype(float)) & (x != x))
        hit = np.flatnonzero(match).tolist()
        pairs += [(i, j) for j in hit]
        if how == "left" and not hit:
            pairs.append((i, -1))
    return sorted(pairs)


def _got_pairs(res):
    g = res.allgather()
    return sorted(zip(g["lid"].tolist(), np.nan_to_num(g["rid"], nan=-1).astype(int).tolist()))


def _tables(comm, lk, rk, layout="even"):
    L = split({**lk, "lid": np.arange(len(next(iter(lk.values()))))}, comm, layout)
    R = split({**rk, "rid": np.arange(len(next(iter(rk.values())))).astype(np.int64)}, comm,
              "uneven")
    return L, R


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("strategy", ["hash", "auto"])
@pytest.mark.parametrize("case", ["many_to_many", "no_match", "float_nan", "two_keys",
                                  "empty_right"])
def test_join(comm, how, strategy, case):
    rng = np.random.default_rng(31)
    nl, nr = 300, 200
    if case == "many_to_many":
        lk, rk = {"k": rng.integers(0, 40, nl)}, {"k": rng.integers(20, 60, nr).astype(np.int32)}
    elif case == "no_match":
        lk, rk = {"k": rng.integers(0, 40, nl)}, {"k": rng.integers(100, 140, nr)}
    elif case == "float_nan":
        a, b = np.round(rng.normal(size=nl), 1), np.round(rng.normal(size=nr), 1)
        a[::10], b[::15] = np.nan, np.nan
        lk, rk = {"k": a}, {"k": b}
    elif case == "two_keys":
        lk = {"k": rng.integers(0, 8, nl), "j": rng.integers(0, 3, nl).astype(np.int8)}
        rk = {"k": rng.integers(0, 8, nr), "j": rng.integers(0, 3, nr).astype(np.int8)}
    else:
        lk, rk = {"k": rng.integers(0, 40, nl)}, {"k": np.zeros(0, dtype=np.int64)}
    L, R = _tables(comm, lk, rk, "all_on_last" if case == "no_match" else "even")
    on = list(lk)
    res = hp.join(L, R, on, how=how, strategy=strategy)
    exp = _merge_reference([lk[k] for k in on], [rk[k] for k in on], how)
    assert _got_pairs(res) == exp
    assert res.columns == on + ["lid", "rid"]
    if how == "left":
        assert res["rid"].dtype == np.float64
    want = "hash" if strategy == "hash" else "broadcast-right"  # auto: a small right table
    assert res.meta["strategy"] == want
    # key columns come from the left table, rows are whole
    g = res.allgather()
    for k in on:
        np.testing.assert_array_equal(g[k], lk[k][g["lid"]])
    if strategy != "hash":  # broadcast of the right side keeps the left order
        assert np.all(np.diff(g["lid"]) >= 0)


def test_join_broadcast_left_and_suffix(comm):
    rng = np.random.default_rng(2)
    small = {"k": rng.integers(0, 10, 30), "x": rng.random(30)}
    big = {"k": rng.integers(0, 10, 500), "x": rng.random(500)}
    L, R = _tables(comm, small, big)
    res = hp.join(L, R, "k", broadcast_bytes=L.num_rows * 24 + 1, how="inner")
    # the right table is larger than the threshold, the left one is broadcast
    right_bytes = sum(comm.allgather(sum(v.nbytes for v in R.local().values())))
    assert right_bytes > L.num_rows * 24 + 1
    assert res.meta["strategy"] == "broadcast-left"
    assert res.columns == ["k", "x", "lid", "x_right", "rid"]
    g = res.allgather()
    assert sorted(zip(g["lid"], g["rid"])) == _merge_reference([small["k"]], [big["k"]], "inner")
    np.testing.assert_array_equal(g["x"], small["x"][g["lid"]])
    np.testing.assert_array_equal(g["x_right"], big["x"][g["rid"]])


def test_join_forced_large_count_path(comm):
    rng = np.random.default_rng(4)
    lk, rk = {"k": rng.integers(0, 500, 800)}, {"k": rng.integers(0, 500, 700)}
    L, R = _tables(comm, lk, rk, "uneven")
    res = hp.join(L, R, "k", strategy="hash", max_message=64, memory_budget=1)
    assert res.meta["rounds"] > 1 or comm.size == 1
    assert _got_pairs(res) == _merge_reference([lk["k"]], [rk["k"]], "inner")


def test_join_errors(comm):
    L = split({"k": np.arange(5)}, comm)
    with pytest.raises(ValueError, match="how must be"):
        hp.join(L, L, "k", how="outer")
    with pytest.raises(KeyError, match="zz"):
        hp.join(L, L, "zz")


@pytest.mark.parametrize("strategy", ["hash", "broadcast"])
def test_join_uint64_with_int64_exact(comm, strategy):
    """uint64 keys against int64 keys compare exactly: beyond 2**53 neighbours differ
    (a float64 common type would merge them), negative and >= 2**63 values never match."""
    rng = np.random.default_rng(8)
    base = 1 << 60
    lk = np.concatenate([(base + rng.integers(0, 20, 200)).astype(np.uint64),
                         np.array([2**63 + 5, 2**64 - 1, 7], dtype=np.uint64)])
    rk = np.concatenate([base + rng.integers(0, 20, 150),
                         np.array([-(2**63) + 5, -1, 7], dtype=np.int64)])
    L, R = _tables(comm, {"k": lk}, {"k": rk})
    res = hp.join(L, R, "k", how="left", strategy=strategy)
    exp = sorted((i, j) for i in range(len(lk)) for j in
                 ([j for j in range(len(rk)) if int(rk[j]) == int(lk[i])] or [-1]))
    assert _got_pairs(res) == exp
    assert res["k"].dtype == np.uint64
