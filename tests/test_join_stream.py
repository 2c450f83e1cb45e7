"""The join's streaming column gather (unique build keys: a dimension table) and its
rank assignment, at 1, 2, 3 ranks, against numpy references computed here.

When no build key repeats and every probe row is in the output once (each matches, or
a left join), a build column is moved in build-partition order, picked per probe row
and put back into probe order (``_hashjoin.Matches.build``), the last such column in
place of the matches: every width (1, 2, 4, 8 bytes; others by row numbers), signed
values (a conditional expression would round them through float64), several columns,
left joins with and without missing rows, a left side smaller than the right (the
table built on the left), empty ranks, one row, all-equal and full-range keys."""

import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp
from hpcproc.shuffles._encode import encoded_chunks
from hpcproc.shuffles._hashjoin import hash_join, rank_dests
from hpcproc.shuffles._kernels import hash_dest

pytestmark = pytest.mark.mpi

I64 = np.iinfo(np.int64)


def _payload(rng, n):
    """One column of every width and kind, negative values included."""
    return {"i1": rng.integers(-128, 128, n).astype(np.int8),
            "u2": rng.integers(0, 65536, n).astype(np.uint16),
            "i4": rng.integers(-2**31, 2**31, n).astype(np.int32),
            "f4": rng.normal(size=n).astype(np.float32),
            "i8": rng.integers(I64.min, I64.max, n, dtype=np.int64, endpoint=True),
            "u8": rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
            "f8": rng.normal(size=n),
            "b": rng.random(n) < 0.5,
            "t": rng.integers(-10**9, 10**9, n).astype("datetime64[s]"),
            "c16": rng.normal(size=n) + 1j * rng.normal(size=n),   # 16 bytes: row numbers
            "m": rng.integers(-9, 9, (n, 2))}                     # 2-D: row numbers


def _dim_fact(case, rng):
    """(fact keys, distinct dimension keys)."""
    if case == "full_range":
        dim = np.unique(rng.integers(I64.min, I64.max, 2500, dtype=np.int64, endpoint=True))
        dim = np.r_[dim[1:-1], I64.min, I64.max]
        return rng.permutation(dim)[rng.integers(0, dim.size, 6000)], rng.permutation(dim)
    if case == "one_row":
        return np.array([-5]), np.array([-5])
    if case == "all_equal":  # every fact row has the one dimension key
        return np.full(700, I64.min), np.array([I64.min])
    if case == "negative":
        dim = -1 - rng.permutation(1000) * 7
        return dim[rng.integers(0, dim.size, 3000)], dim
    raise ValueError(case)


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("strategy", ["hash", "broadcast"])
@pytest.mark.parametrize("case", ["full_range", "one_row", "all_equal", "negative"])
def test_unique_build_columns(comm, case, strategy, how, missing):
    rng = np.random.default_rng(["full_range", "one_row", "all_equal", "negative"].index(case))
    fact, dim = _dim_fact(case, rng)
    if missing:  # some fact keys absent from the dimension (and a dimension key unused)
        fact = np.r_[fact, dim[:1] ^ 1, 12345]
        dim = dim[dim != 12345]
    rc = _payload(rng, dim.size)
    if how == "left":
        del rc["m"]  # int 2-D: allowed (float64), kept simple below
    L = split({"key": fact, "lid": np.arange(fact.size)}, comm, "first_empty")
    R = split({"key": dim, "rid": np.arange(dim.size), **rc}, comm, "uneven")
    res = hp.join(L, R, "key", how=how, strategy=strategy)
    g = res.allgather()
    pos = {int(k): j for j, k in enumerate(dim)}
    want_rid = np.array([pos.get(int(k), -1) for k in fact])
    lid = g["lid"]
    rid = np.nan_to_num(g["rid"], nan=-1).astype(np.int64) if how == "left" else g["rid"]
    want_lid = np.arange(fact.size) if how == "left" else np.flatnonzero(want_rid >= 0)
    np.testing.assert_array_equal(np.sort(lid), want_lid)
    np.testing.assert_array_equal(rid, want_rid[lid])
    np.testing.assert_array_equal(g["key"], fact[lid])
    hit = rid >= 0
    for name, col in rc.items():
        got = g[name]
        if how == "left" and col.dtype.kind in "biu":
            assert got.dtype == np.float64, name
            np.testing.assert_array_equal(got[hit], col[rid[hit]].astype(np.float64))
            assert np.isnan(got[~hit]).all(), name
            continue
        assert got.dtype == col.dtype, name
        np.testing.assert_array_equal(got[hit], col[rid[hit]])
        if how == "left":
            assert (np.isnat(got[~hit]) if name == "t" else np.isnan(got[~hit])).all(), name
    local = res.local("lid")  # per rank: the fact rows in the order they arrived
    assert np.all(np.diff(local) > 0)


@pytest.mark.parametrize("strategy", ["hash", "broadcast-left"])
def test_small_left_builds_on_the_left(comm, strategy):
    """An inner join whose left side is the smaller one: the right rows keep their
    order and are returned once each; the left columns are gathered."""
    rng = np.random.default_rng(4)
    dim = rng.permutation(np.unique(rng.integers(I64.min, I64.max, 300, dtype=np.int64)))
    fact = dim[rng.integers(0, dim.size, 5000)]
    lc = _payload(rng, dim.size)
    L = split({"key": dim, "lid": np.arange(dim.size), **lc}, comm, "all_on_last")
    R = split({"key": fact, "rid": np.arange(fact.size), "w": rng.random(fact.size)},
              comm, "even")
    if strategy == "hash":
        res = hp.join(L, R, "key", strategy="hash")
    else:
        lbytes = sum(v.nbytes for v in lc.values()) + 16 * dim.size
        res = hp.join(L, R, "key", broadcast_bytes=lbytes)
    assert res.meta["strategy"] == strategy
    g = res.allgather()
    np.testing.assert_array_equal(np.sort(g["rid"]), np.arange(fact.size))
    pos = {int(k): j for j, k in enumerate(dim)}
    np.testing.assert_array_equal(g["lid"], [pos[int(k)] for k in fact[g["rid"]]])
    for name, col in lc.items():
        np.testing.assert_array_equal(g[name], col[g["lid"]])
    assert np.all(np.diff(res.local("rid")) > 0)
    res.local("w")[:] = -1.0  # the output owns its columns
    assert np.all(R.local("w") >= 0)


def test_hash_join_kernel_unique_build():
    """The index form of the local join on unique build keys, every probe row matching
    (no pairs made) and not, with and without unmatched rows kept."""
    rng = np.random.default_rng(6)
    for nb in (0, 1, 5000):
        Kr = rng.permutation(np.unique(rng.integers(0, 2**64 - 1, nb, dtype=np.uint64,
                                                    endpoint=True))).reshape(-1, 1)
        nb = Kr.shape[0]
        Kl = Kr[rng.integers(0, max(nb, 1), 9000 if nb else 0)].copy()
        for extra in (0, 7):
            K = np.r_[Kl, rng.integers(0, 10, (extra, 1)).astype(np.uint64) * 0 + 3]
            for keep in (False, True):
                li, ri = hash_join(K, Kr, keep, "right")
                li = np.arange(K.shape[0]) if li is None else li
                pos = {int(k): j for j, k in enumerate(Kr[:, 0])}
                want = [(i, pos.get(int(k), -1)) for i, k in enumerate(K[:, 0])]
                if not keep:
                    want = [p for p in want if p[1] >= 0]
                assert list(zip(li.tolist(), ri.tolist())) == want


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 256, 300])
def test_rank_dests_match_hash_partition(size):
    """The join's ranks are ``hash % size`` exactly (a mask for powers of two), plain
    and encoded keys."""
    rng = np.random.default_rng(size)
    k = rng.integers(I64.min, I64.max, 5000, dtype=np.int64, endpoint=True)
    for lk, rk in (([k], [k[::-1].copy()]), ([k.astype(np.float64)], [k[:7] * 1.0]),
                   ([k.astype(np.int32), k % 3], [k[:9].astype(np.int32), k[:9] % 3])):
        for cols, dest in zip((lk, rk), rank_dests(lk, rk, size), strict=True):
            want = np.concatenate([_ref_dest(K, size) for _, _, K in encoded_chunks(cols)])
            if len(cols) == 1 and cols[0].dtype == np.int64:
                want = _ref_dest(cols[0].view(np.uint64).reshape(-1, 1), size)
            np.testing.assert_array_equal(dest.astype(np.int64), want)
            assert dest.size == 0 or int(dest.max()) < size


def _ref_dest(K, size):
    out = np.empty(K.shape[0], np.int64)
    hash_dest(K, size, out)
    return out


@pytest.mark.parametrize("words", [1, 2])
def test_hash_join_kernel_one_repeated_key_among_many(words):
    """A build side of unique keys but one, over many partitions: the join first runs
    without chain links and goes on with them from the partition of the repeated key
    (the matches of the partitions before it, written over the spent probe keys, kept)."""
    rng = np.random.default_rng(words)
    for rep in (0, 1000, 19999):
        Kr = rng.permutation(np.unique(rng.integers(0, 2**64 - 1, (20000, words),
                                                    dtype=np.uint64, endpoint=True), axis=0))
        Kr = np.r_[Kr, Kr[rep:rep + 1], Kr[rep:rep + 1]]  # one key three times, at the end
        Kl = np.r_[Kr[rng.integers(0, Kr.shape[0], 30000)], Kr[:1] ^ np.uint64(1)]
        for keep in (False, True):
            li, ri = hash_join(Kl, Kr, keep, "right")
            li = np.arange(Kl.shape[0]) if li is None else li
            rows = {}
            for j, k in enumerate(map(tuple, Kr.tolist())):
                rows.setdefault(k, []).append(j)
            want = []
            for i, k in enumerate(map(tuple, Kl.tolist())):
                want += [(i, j) for j in rows.get(k, [])] or ([(i, -1)] if keep else [])
            assert list(zip(li.tolist(), ri.tolist())) == want
