"""Break-it tests for the s25b pass over the s25 changes: the dense group-by's pairs of
sum and count (``dense_pairs``, beyond ``SPLIT_STATE`` bytes of state) and its prefetch
threshold, ``hp.unique(array, by="value")`` returning an array, and ``hp.exchange``'s
column keys that are equal as strings.

Defects found (each test below fails on the code before the fix):

* the dense group-by returned a big-endian integer key (``'>i8'``, ``'>u4'``, ...) in
  native byte order, the hash group-by in the key's own dtype: the dtype of
  ``groupby(...).agg`` / ``unique`` / ``value_counts`` keys depended on the key range;
* ``DistTable.from_local``, ``DistTable(...)`` and the mapping input of the shuffles
  (``hp.sort``, ``hp.groupby``, ``hp.join``, ``hp.unique``) made columns whose keys are
  equal as strings (``{1: a, "1": b}``) one column, the second silently replacing the
  first (the exchange raises for them since ac13c5b).

No defect found in the pairs of sum and count themselves: every value dtype (big-endian
too), NaN/inf/-0.0, int64 sums that wrap, counts beside all-NaN groups, uint64 keys
across 2**63 and near 2**64, int64 keys at both ends, spans just below and just above
``SPLIT_STATE // 12`` groups, empty ranks and one row give numpy's result.

Every result is compared with an independent numpy / plain-Python reference. Tests
marked ``mpi`` run serially and under 2 and 3 ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp
from hpcproc.shuffles import grouping

# --------------------------------------------------------------------------------------
# 1. the dense group-by's pairs of sum and count


def _acc(dtype):
    dtype = np.dtype(dtype)
    return np.float64 if dtype.kind == "f" else np.uint64 if dtype.kind == "u" else np.int64


def _group_reference(k, v, aggs):
    """Per distinct key of ``k`` (sorted): each aggregate of ``v`` in plain numpy."""
    uk = np.unique(k)
    acc = _acc(v.dtype)
    out = {a: [] for a in aggs}
    for key in uk:
        x = v[k == key]
        ok = x[~np.isnan(x)] if v.dtype.kind == "f" else x
        for a in aggs:
            if a == "size":
                out[a].append(x.shape[0])
            elif a == "count":
                out[a].append(ok.shape[0])
            elif a == "sum":  # numpy's sum: integers wrap in 64 bits
                with np.errstate(over="ignore"):
                    out[a].append(np.sum(ok.astype(acc), dtype=acc))
            elif a == "mean":
                out[a].append(ok.astype(np.float64).mean() if ok.shape[0] else np.nan)
    return uk, {a: np.array(x) for a, x in out.items()}


def _values(dtype, n, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(n) < 0.4
    if dtype.kind == "f":
        v = (rng.normal(size=n) * 50).astype(dtype)
        v[rng.random(n) < 0.1] = np.nan
        v[1], v[2], v[3] = np.inf, -0.0, -np.inf
        return v
    info = np.iinfo(dtype)
    native = dtype.newbyteorder("=")
    return rng.integers(info.min, info.max, n, dtype=native, endpoint=True).astype(dtype)


def _check_groups(got, k, cols, spec):
    uk = np.unique(k)
    np.testing.assert_array_equal(got["k"], uk)
    for c, aggs in spec.items():
        _, ref = _group_reference(k, cols[c], aggs)
        for a in aggs:
            g = got[f"{c}_{a}"]
            if a in ("size", "count"):
                assert g.dtype == np.int64
                np.testing.assert_array_equal(g, ref[a])
            elif a == "mean" or cols[c].dtype.kind == "f":
                np.testing.assert_allclose(g, ref[a], rtol=1e-9, atol=1e-9, equal_nan=True)
            else:  # integer sums: exact, wrapped as numpy's
                assert g.dtype == ref[a].dtype, (c, a)
                np.testing.assert_array_equal(g, ref[a])


PAIR_DTYPES = ("f8", "f4", "f2", ">f8", "i8", ">i8", "i4", "i2", "i1", "u8", "u4", "u1", "?")


@pytest.mark.mpi
@pytest.mark.parametrize("below", [True, False], ids=["at-split", "above-split"])
@pytest.mark.parametrize("layout", ["even", "all_on_last", "uneven"])
def test_dense_pairs_at_the_split_every_dtype(comm, below, layout, monkeypatch):
    """A key span of exactly ``SPLIT_STATE // 12`` groups (rows counted with the first
    column's sums: no pairs) and one more (pairs, unless min/max or unsigned sums): every
    value dtype first or second, with NaN, inf, -0.0, against numpy; pairs are taken."""
    rng = np.random.default_rng([25, below, len(layout)])
    span = grouping.SPLIT_STATE // 12 + (0 if below else 1)
    n = 1500
    k = rng.integers(0, span, n) - 77
    k[0], k[1] = -77, span - 78  # the span exactly
    seen = []
    real = grouping.dense_pairs
    monkeypatch.setattr(grouping, "dense_pairs", lambda *a: seen.append(1) or real(*a))
    for dt in PAIR_DTYPES:
        cols = {"v": _values(dt, n, rng), "f": _values("f8", n, rng)}
        t = split({"k": k, **cols}, comm, layout)
        for spec in ({"v": ["sum", "count", "mean", "size"]},
                     {"f": ["sum", "count"], "v": ["sum", "mean", "count"]},
                     {"v": ["sum", "count"], "f": ["sum", "mean"]}):
            r = hp.groupby(t, "k", strategy="dense").agg(spec)
            assert r.meta["strategy"] == "dense"
            _check_groups(r.allgather(), k, cols, spec)
    paired = comm.allreduce(len(seen))
    assert (paired == 0) == below


BIG = 2 * (grouping.SPLIT_STATE // 12 + 1)  # a span of pairs
KEYS = {
    "u64-across-2**63": lambda r, n: np.uint64(2**63 - BIG // 2) + r.integers(0, BIG, n).astype(
        np.uint64),
    "u64-top": lambda r, n: np.uint64(2**64 - 1) - r.integers(0, BIG, n).astype(np.uint64),
    "i64-bottom": lambda r, n: np.iinfo(np.int64).min + r.integers(0, BIG, n),
    "i64-top": lambda r, n: np.iinfo(np.int64).max - r.integers(0, BIG, n),
    "i32-bottom": lambda r, n: (r.integers(0, BIG, n) - 2**31).astype(np.int32),
    "u32-top": lambda r, n: (2**32 - 1 - r.integers(0, BIG, n)).astype(np.uint32),
    "one-row": lambda r, n: np.array([-5]),
    "all-equal": lambda r, n: np.full(n, 3),
}


@pytest.mark.mpi
@pytest.mark.parametrize("kind", list(KEYS))
@pytest.mark.parametrize("layout", ["even", "all_on_last", "uneven"])
def test_dense_pairs_keys_overflow_and_nan(comm, kind, layout, monkeypatch):
    """Pairs of sum and count (forced for one row and all-equal keys): keys at the ends of
    their type, int64 sums that wrap (numpy's), all-NaN groups (count 0, mean NaN,
    sum 0), inf and -inf in one group (NaN sum): numpy's result."""
    rng = np.random.default_rng([25, len(kind), len(layout)])
    k = KEYS[kind](rng, 2000)
    n = k.shape[0]
    big = np.full(n, np.iinfo(np.int64).max // 3, np.int64)
    big[::2] = np.iinfo(np.int64).min // 3 + 1
    f = rng.normal(size=n)
    f[rng.random(n) < 0.3] = np.nan
    f[:2] = [np.inf, -np.inf][:n]
    cols = {"big": big, "f": f, "nan": np.full(n, np.nan)}
    if n < 1000:
        monkeypatch.setattr(grouping, "SPLIT_STATE", 0)
    t = split({"k": k, **cols}, comm, layout)
    for spec in ({"big": ["sum", "count", "mean", "size"]}, {"f": ["sum", "count", "mean"]},
                 {"nan": ["sum", "count", "mean", "size"], "big": ["sum"]}):
        with np.errstate(invalid="ignore"):
            r = hp.groupby(t, "k", strategy="dense", dense_limit=1 << 23).agg(spec)
            assert r.meta["strategy"] == "dense"
            got = r.allgather()
            _check_groups(got, k, cols, spec)
        assert got["k"].dtype == k.dtype


# --------------------------------------------------------------------------------------
# 2. the dense key's dtype, unique


@pytest.mark.mpi
@pytest.mark.parametrize("dt", [">i8", ">i4", ">u8", ">u4", ">i2", ">u2", "<i8", "i1"])
@pytest.mark.parametrize("strategy", ["dense", "hash"])
def test_group_keys_keep_their_dtype_big_endian_too(comm, dt, strategy):
    """The keys of a group-by, value_counts and unique are of the key's dtype, byte order
    included, whichever strategy (was: the dense one native, the hash one not)."""
    rng = np.random.default_rng(251)
    info = np.iinfo(np.dtype(dt))
    top = np.array(info.max, np.dtype(dt).newbyteorder("="))
    k = (top - rng.integers(0, 50, 300).astype(top.dtype)).astype(dt)
    k[:3] = top - top.dtype.type(49)
    v = rng.normal(size=k.shape[0])
    t = split({"k": k, "v": v}, comm, "uneven")
    r = hp.groupby(t, "k", strategy=strategy).agg(v=["sum", "count"])
    assert r.meta["strategy"] == strategy
    got = r.allgather()
    uk, counts = np.unique(k, return_counts=True)
    assert got["k"].dtype == k.dtype
    np.testing.assert_array_equal(got["k"], uk)
    np.testing.assert_array_equal(got["v_count"], counts)
    arr = hp.DistArray.from_local(split({"k": k}, comm, "uneven").local()["k"], comm)
    for by in (None, "value"):
        u = hp.unique(arr, by=by, strategy=strategy)
        assert isinstance(u, hp.DistArray)
        g = u.allgather()
        assert g.dtype == k.dtype
        np.testing.assert_array_equal(g, uk)
    vc = hp.value_counts(arr, strategy=strategy).allgather()
    assert vc["value"].dtype == k.dtype
    np.testing.assert_array_equal(vc["count"], counts)


@pytest.mark.mpi
@pytest.mark.parametrize("dt", ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4",
                                "f8", ">f8", "?"])
@pytest.mark.parametrize("n", [0, 1, 57])
def test_unique_of_an_array_is_an_array(comm, dt, n):
    """``hp.unique`` of a DistArray or a local ndarray, its key unnamed, named
    ``"value"`` or ``["value"]``: an array of the distinct values (NaN once, last; -0.0
    and 0.0 one value), numpy's; of a table with a column ``value``: a table."""
    rng = np.random.default_rng([n, len(dt)])
    a = rng.integers(0 if np.dtype(dt).kind in "ub" else -5, 5, n).astype(dt)
    if np.dtype(dt).kind == "f" and n > 3:
        a[:4] = np.nan, -0.0, 0.0, np.inf
    want = np.unique(a)
    local = split({"a": a}, comm, "uneven").local()["a"]
    for by in (None, "value", ["value"]):
        for data in (hp.DistArray.from_local(local, comm), local):
            u = hp.unique(data, by=by, comm=comm)
            assert isinstance(u, hp.DistArray) and not isinstance(u, hp.DistTable)
            g = u.allgather()
            assert g.dtype == a.dtype
            np.testing.assert_array_equal(g, want)
    t = hp.DistTable.from_local({"value": local, "b": local}, comm)
    for by in ("value", ["value", "b"]):
        u = hp.unique(t, by=by)
        assert isinstance(u, hp.DistTable)
        np.testing.assert_array_equal(u.allgather()["value"], want)


# --------------------------------------------------------------------------------------
# 3. column keys equal as strings


CLASHES = {
    "int": lambda n: {1: np.zeros(n), "1": np.ones(n)},
    "numpy-int": lambda n: {np.int64(1): np.zeros(n), "1": np.ones(n)},
    "tuple": lambda n: {(1,): np.zeros(n), "(1,)": np.ones(n)},
    "bool": lambda n: {True: np.zeros(n), "True": np.ones(n)},
    "None": lambda n: {None: np.zeros(n), "None": np.ones(n)},
}


@pytest.mark.mpi
@pytest.mark.parametrize("clash", list(CLASHES))
def test_exchange_keys_equal_as_strings(comm, clash):
    """Keys of any type equal as strings: a ValueError on every rank; bytes keys are
    other names (``"b'1'"``) and move."""
    n = 3
    with pytest.raises(ValueError, match="given twice"):
        hp.exchange(CLASHES[clash](n), np.zeros(n, int), comm)
    got, _ = hp.exchange({b"1": np.arange(n), "1": -np.arange(n)}, np.zeros(n, int), comm)
    if comm.rank == 0:
        assert sorted(got) == ["1", "b'1'"]
        np.testing.assert_array_equal(got["b'1'"], np.tile(np.arange(n), comm.size))
        np.testing.assert_array_equal(got["1"], -np.tile(np.arange(n), comm.size))


@pytest.mark.mpi
@pytest.mark.parametrize("clash", list(CLASHES))
@pytest.mark.parametrize("op", ["from_local", "from_arrays", "DistTable", "sort", "groupby",
                                "unique", "join"])
def test_table_keys_equal_as_strings_are_an_error(comm, clash, op):
    """A table made of columns whose keys are the same as strings lost one of them
    silently (the second replaced the first): now a ValueError, on every rank for the
    collective calls."""
    n = 4
    cols = CLASHES[clash](n)
    name = str(next(iter(cols)))
    calls = {
        "from_local": lambda: hp.DistTable.from_local(cols, comm),
        "from_arrays": lambda: hp.DistTable.from_arrays(
            {k: hp.DistArray.from_local(v, comm) for k, v in cols.items()}),
        "DistTable": lambda: hp.DistTable(cols, n, 0, comm),
        "sort": lambda: hp.sort(cols, by=name, comm=comm),
        "groupby": lambda: hp.groupby(cols, name, comm).size("n"),
        "unique": lambda: hp.unique(cols, name, comm),
        "join": lambda: hp.join(cols, {name: np.arange(n)}, on=name, comm=comm),
    }
    with pytest.raises(ValueError, match="given twice"):
        calls[op]()
    # one such key (not a clash): a column named by its string
    ok = hp.DistTable.from_local({1: np.arange(n)}, comm)
    assert list(ok.local()) == ["1"]


@pytest.mark.mpi
@pytest.mark.parametrize("op", ["from_local", "sort", "groupby"])
def test_keys_equal_as_strings_on_one_rank_raise_on_every_rank(comm, op):
    """Only the last rank passes the clash: every rank raises a ValueError (the
    agreement on the arguments' keys, or the clash itself), none is left waiting."""
    n = 3
    last = comm.rank == comm.size - 1
    cols = {1: np.zeros(n), "1": np.ones(n)} if last else {"1": np.ones(n)}
    calls = {
        "from_local": lambda: hp.DistTable.from_local(cols, comm),
        "sort": lambda: hp.sort(cols, by="1", comm=comm),
        "groupby": lambda: hp.groupby(cols, "1", comm).size("n"),
    }
    with pytest.raises(ValueError, match="given twice|ranks passed different"):
        calls[op]()
    comm.Barrier()
