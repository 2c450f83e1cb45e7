"""Break-it tests for the s24 pass over the s23 changes: the exchange writing its own rows
straight into a result whose tail is the send buffer (every dtype, ``out=``, rounds,
empty ranks, the result's memory), the count by comparison against ``np.bincount``, the
dense group-by with prefetching at the key boundaries and around the 1 MiB threshold,
heavy-key candidates found by hash owners against an all-gather reference, and the
checks of the group-by's names.

Defects found (each test below fails on the code before the fix):

* columns of structured dtypes with different fields (same size) on different ranks were
  taken as one dtype (``dtype.str`` is ``|V<size>`` for every structured dtype): the
  exchange, sort and join moved the bytes and reinterpreted them, a silent wrong answer;
* a 0-d (scalar) column passed the exchange's check for at least one dimension (made one
  row by ``np.ascontiguousarray`` first) and moved as a row;
* ``GroupBy.size(name)`` took any object and made a column ``'None'``, ``"b'n'"``, ``''``;
* the Makefile's ahead-of-time sources missed ``hpcproc/kernels/_prefetch.py``, part of
  the build's digest: after editing it ``make venv`` did nothing and the build, out of
  date, was no longer used.

Every result is compared with an independent numpy / pure-Python reference. Tests marked
``mpi`` run serially and under 2 and 3 ranks; the others once serially.
"""

from __future__ import annotations

import glob
import math
import re
import tracemalloc

import numpy as np
import pytest
from _shuffle_data import DEST_PATTERNS, dest_pattern, split

import hpcproc as hp
from hpcproc.kernels import _aot
from hpcproc.shuffles import _kernels, _skew
from hpcproc.shuffles._exchange import dest_dtype
from hpcproc.shuffles._hashjoin import key_words
from hpcproc.shuffles._reduce import PREFETCH_BYTES
from support import REPO, SERIAL_ONLY, dict_join_pairs

# --------------------------------------------------------------------------------------
# 1. the exchange: every dtype, in place and into out=, one round and several


def _all_dtypes(n, rng):
    """One column of every kind the exchange moves as bytes."""
    st = np.zeros(n, [("a", "i2"), ("b", "<f8"), ("c", "S2")])
    st["a"], st["b"], st["c"] = np.arange(n) % 30000, rng.normal(size=n), b"ab"
    return {
        "b": rng.random(n) < 0.5,
        "i1": rng.integers(-128, 128, n).astype(np.int8),
        "u1": rng.integers(0, 256, n).astype(np.uint8),
        "i2": rng.integers(-9999, 9999, n).astype(np.int16),
        "u2": rng.integers(0, 65536, n).astype(np.uint16),
        "i4": rng.integers(-2**31, 2**31, n).astype(np.int32),
        "u4": rng.integers(0, 2**32, n).astype(np.uint32),
        "i8": rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64),
        "u8": rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
        "f2": rng.normal(size=n).astype(np.float16),
        "f4": rng.normal(size=n).astype(np.float32),
        "f8": rng.normal(size=n),
        "c8": (rng.normal(size=n) + 1j * rng.normal(size=n)).astype(np.complex64),
        "c16": rng.normal(size=n) + 1j * rng.normal(size=n),
        "M8": rng.integers(0, 10**12, n).astype("M8[s]"),
        "m8": rng.integers(0, 10**12, n).astype("m8[ns]"),
        "S7": np.array([b"x%d" % i for i in range(n)], "S7"),
        "U3": np.array(["u%d" % (i % 100) for i in range(n)], "U3"),
        "st": st,
        "be8": rng.integers(-2**40, 2**40, n).astype(">i8"),
        "bef": rng.normal(size=n).astype(">f8"),
        "strided": rng.integers(0, 99, (n, 3))[:, 1],
        "two_d": rng.integers(0, 99, (n, 5)).astype(np.int16),
        "three_d": rng.normal(size=(n, 2, 3)).astype(np.float32),
        "zero": np.zeros((n, 0)),
        "fortran": np.asfortranarray(rng.integers(0, 9, (n, 4))),
    }




@pytest.mark.mpi
@pytest.mark.parametrize("pattern", DEST_PATTERNS)
def test_exchange_every_dtype(comm, pattern):
    """Rows of every dtype reach their rank bit for bit, in source order: 0-3 rows, odd
    counts and a rank holding none; destinations of six integer dtypes; 1, 3 (positions)
    or all 26 columns; in place and into ``out=`` (with spare rows); one round and several
    (small ``max_message``, ``memory_budget=1``). The caller's columns stay as they were;
    a new result owns its memory (the sent tail cut off, not a view of a larger array)."""
    for it, n in enumerate([0, 1, 2, 3, 7, 100, 1500]):
        rng = np.random.default_rng([comm.rank, it, comm.size])
        mine = 0 if (comm.rank == comm.size - 1 and it % 3 == 0) else n
        dest = dest_pattern(pattern, mine, comm, rng).astype(
            [np.uint8, np.uint16, np.int64, np.int8, np.uint64, np.int32][it % 6])
        everything = _all_dtypes(mine, rng)
        names = list(everything)
        take = [names[it % len(names):][:1], names[it:it + 3], names][it % 3]
        cols = {k: everything[k] for k in take}
        before = {k: (v.copy(), v.ctypes.data) for k, v in cols.items()}
        everyone = comm.allgather((cols, dest))
        exp = {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone]).astype(v.dtype)
               for k, v in cols.items()}
        rows = len(next(iter(exp.values())))
        small = 7 if n <= 100 else 5000  # several rounds, a few hundred at most
        for opts in ({}, {"max_message": small}, {"memory_budget": 1}):
            for into in (False, True):
                out = {k: np.empty((rows + 3,) + v.shape[1:], v.dtype)
                       for k, v in cols.items()} if into else None
                got, info = hp.exchange(cols, dest, out=out, **opts)
                assert list(got) == list(cols)
                for k, v in cols.items():
                    g = got[k]
                    assert g.dtype == v.dtype and g.shape == exp[k].shape, (k, g.shape)
                    assert g.tobytes() == exp[k].tobytes(), (pattern, it, k, opts, into)
                    if into:
                        assert g.nbytes == 0 or np.shares_memory(g, out[k]), k
                    elif g.nbytes:
                        assert g.base is None and g.flags.owndata, k
                        assert g.flags.c_contiguous and g.flags.writeable, k
                assert int(info["received"].sum()) == rows
                for k, v in cols.items():
                    np.testing.assert_array_equal(v, before[k][0])
                    assert v.ctypes.data == before[k][1]


@pytest.mark.mpi
def test_exchange_result_holds_no_tail(comm):
    """A new result is its received rows only: the rows sent away are cut off (realloc in
    place, no copy): traced memory after the call is the result's bytes, and the peak is
    about the result plus the sent rows (a copy would add the result once more)."""
    n = 1 << 16
    rng = np.random.default_rng(comm.rank)
    cols = {"a": rng.integers(0, 1 << 40, n)}
    dest = rng.integers(0, comm.size, n).astype(np.uint8)
    hp.exchange(cols, dest)  # first call: communicators, pools, kernels
    tracemalloc.start()
    try:
        got, info = hp.exchange(cols, dest)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = int(info["received"].sum())
    away = n - int(np.sum(dest == comm.rank))
    assert got["a"].nbytes == 8 * total
    assert current < 8 * total + (64 << 10), (current, total)
    assert peak < 8 * (total + away) + 8 * total // 2 + (64 << 10), (peak, total, away)
    everyone = comm.allgather((cols["a"], dest))
    np.testing.assert_array_equal(
        got["a"], np.concatenate([a[d == comm.rank] for a, d in everyone]))


@pytest.mark.mpi
@pytest.mark.parametrize("scalar", [np.float64(3.0), 3.0, np.array(5)])
def test_exchange_scalar_column_is_an_error(comm, scalar):
    """A 0-d column (on one rank, or on all) was made one row by np.ascontiguousarray
    before the check for "at least one dimension" could see it: a scalar moved as a row
    when ``dest`` had one entry. A ShapeMismatchError on every rank; the next call works."""
    from hpcproc.errors import ShapeMismatchError

    for everywhere in (True, False):
        col = scalar if everywhere or comm.rank == comm.size - 1 else np.array([2.0])
        with pytest.raises(ShapeMismatchError, match="at least one dimension"):
            hp.exchange({"a": col}, np.array([0]))
    got, _ = hp.exchange({"a": np.array([float(comm.rank)])}, np.array([0]))
    np.testing.assert_array_equal(got["a"], np.arange(comm.size) if comm.rank == 0 else [])


STRUCTS = [np.dtype([("a", "<i4"), ("b", "<f8")]), np.dtype([("b", "<f8"), ("a", "<i4")]),
           np.dtype([("a", "<f4"), ("b", "<f8")]),
           np.dtype({"names": ["a", "b"], "formats": ["<i4", "<f8"], "offsets": [8, 0]}),
           np.dtype([("a", "<i4"), ("s", [("x", "<f4"), ("y", "<u4")])]),
           np.dtype([("a", "<i4"), ("s", "(2,)<u4")])]


@pytest.mark.mpi
@pytest.mark.parametrize("other", range(1, len(STRUCTS)))
@pytest.mark.parametrize("op", ["exchange", "sort", "shuffle", "join"])
def test_structured_columns_of_different_layouts_are_an_error(comm, op, other):
    """Two structured dtypes of 12 bytes (fields swapped, another field type, other
    offsets, nested fields or a sub-array in place of two fields) on different ranks:
    ``dtype.str`` is ``|V12`` for all of them, so they passed for one dtype and their
    bytes were reinterpreted on the receiving rank (a wrong answer, silently). A
    TypeError on every rank now; the same dtype everywhere still moves exactly."""
    assert len({d.str for d in STRUCTS}) == 1 and STRUCTS[0].itemsize == 12
    k = np.arange(6) + 10 * comm.rank
    calls = {
        "exchange": lambda c: hp.exchange(c, np.arange(6) % comm.size)[0]["x"],
        "sort": lambda c: hp.sort(c, "k").allgather()["x"],
        "shuffle": lambda c: hp.shuffle(c, "k").allgather()["x"],
        "join": lambda c: hp.join(c, {"k": c["k"][::-1].copy()}, "k",
                                  strategy="hash").allgather()["x"]}
    if comm.size > 1:
        dt = STRUCTS[other] if comm.rank == comm.size - 1 else STRUCTS[0]
        with pytest.raises(TypeError, match="different names, dtypes or shapes"):
            calls[op]({"k": k, "x": np.zeros(6, dt)})
    dt = STRUCTS[other]
    x = np.zeros(6, dt)
    x.view(np.uint8).reshape(6, -1)[:] = (np.arange(12) + k[:, None] * 12) % 251
    got = calls[op]({"k": k, "x": x})
    everyone = comm.allgather((k, x))  # compared as raw bytes (np.concatenate would
    # repack a dtype whose fields are out of order)
    if op == "exchange":
        d = np.arange(6) % comm.size
        want = [r.tobytes() for _, b in everyone for r in b[d == comm.rank]]
    else:  # every row once; sorted by key (sort) or in any order (shuffle, join)
        want = [r.tobytes() for _, b in everyone for r in b]
    assert got.dtype == dt
    got = [r.tobytes() for r in got]
    if op in ("shuffle", "join"):
        got, want = sorted(got), sorted(want)
    assert got == want


# --------------------------------------------------------------------------------------
# 2. the count by comparison (up to 8 ranks) against np.bincount


BLOCK = _kernels._BLOCK
COUNT_LENGTHS = [0, 1, 2, 3, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK - 1, 2 * BLOCK,
                 2 * BLOCK + 1, 4 * BLOCK + 3]
COUNT_SIZES = [1, 2, 3, 7, 8, 9, 16, 255, 256, 257, 300]


@SERIAL_ONLY
@pytest.mark.parametrize("size", COUNT_SIZES)
def test_count_dest_is_bincount(size):
    """Both halves' counts at lengths around the comparison block, 1-300 ranks (the
    comparison up to 8, four counters above), destinations random, all the last rank or
    all rank 0, halves anywhere: the count as called, and the four-counter kernel built
    ahead of time and by Numba at every size."""
    dt = dest_dtype(size)
    for n in COUNT_LENGTHS:
        rng = np.random.default_rng([size, n])
        for d in (rng.integers(0, size, n), np.full(n, size - 1), np.zeros(n, int)):
            d = d.astype(dt)
            for half in sorted({n // 2, 0, n, min(n, BLOCK + 1)}):
                want = np.stack([np.bincount(d[:half], minlength=size),
                                 np.bincount(d[half:], minlength=size)])
                for fn in (_kernels.count_dest, _kernels.count_many,
                           _kernels.count_many.dispatcher):
                    got = fn(d, size, half)
                    np.testing.assert_array_equal(got, want, err_msg=f"{size} {n} {half}")


# --------------------------------------------------------------------------------------
# 3. the dense group-by (prefetching above 1 MiB of states) against numpy

#: (key dtype, lowest key, key range): the ends of each type, uint64 across 2**63, and
#: the sums (8 bytes a group) on both sides of the prefetch threshold
DENSE_CASES = [("i1", -128, 256), ("u1", 0, 256), ("i2", -32768, 300), ("u2", 65236, 300),
               ("i4", -2**31, 200_000), ("u4", 2**32 - 200_000, 200_000),
               ("i8", -2**63, 200_000), ("i8", 2**63 - 200_000, 200_000),
               ("u8", 2**64 - 200_000, 200_000), ("u8", 2**63 - 100_000, 200_000),
               ("i8", -5, PREFETCH_BYTES // 8 - 1), ("i8", -5, PREFETCH_BYTES // 8),
               ("i8", 0, PREFETCH_BYTES // 4 + 1), ("?", 0, 2)]


def _dense_reference(k, v):
    keys, inv = np.unique(k, return_inverse=True)
    ok = ~np.isnan(v) if v.dtype.kind == "f" else np.ones(len(v), bool)
    acc = np.float64 if v.dtype.kind == "f" else np.int64
    sm = np.zeros(len(keys), acc)
    np.add.at(sm, inv[ok], v[ok].astype(acc))
    mn = np.full(len(keys), np.inf)
    mx = np.full(len(keys), -np.inf)
    np.minimum.at(mn, inv[ok], v[ok].astype(float))
    np.maximum.at(mx, inv[ok], v[ok].astype(float))
    return keys, np.bincount(inv, minlength=len(keys)), \
        np.bincount(inv[ok], minlength=len(keys)), sm, mn, mx


@pytest.mark.mpi
@pytest.mark.parametrize("case", range(len(DENSE_CASES)))
def test_dense_groupby_at_key_boundaries(comm, case):
    """Keys at both ends of their type (and of the range: the lowest and highest group
    always present), rank 0 empty, NaN values, float16 and int32 values: every group's
    rows, count, sum, min and max against numpy; size() the same rows."""
    kdt, lo, span = DENSE_CASES[case]
    rng = np.random.default_rng([case, 24])
    n = 60_000
    off = rng.integers(0, span, n).astype(np.uint64)
    off[:5], off[5:10] = 0, span - 1
    k = (off % 2).astype(bool) if kdt == "?" else (np.uint64(lo % 2**64) + off).astype(kdt)
    for vdt in ("f2", "i4"):
        if vdt == "f2":
            v = rng.normal(size=n).astype(np.float16)
            v[rng.random(n) < 0.1] = np.nan
        else:
            v = rng.integers(-1000, 1000, n).astype(np.int32)
        data = split({"k": k, "v": v}, comm, "first_empty")
        res = hp.groupby(data, "k", strategy="dense").agg(
            v=["size", "count", "sum", "min", "max"])
        assert res.meta["strategy"] == "dense"
        g = res.allgather()
        keys, size, cnt, sm, mn, mx = _dense_reference(k, v)
        assert g["k"].dtype == k.dtype
        np.testing.assert_array_equal(g["k"], keys)
        np.testing.assert_array_equal(g["v_size"], size)
        np.testing.assert_array_equal(g["v_count"], cnt)
        if vdt == "f2":
            np.testing.assert_allclose(g["v_sum"], sm, rtol=1e-9, atol=1e-9)
        else:
            np.testing.assert_array_equal(g["v_sum"], sm)
        for got, want in ((g["v_min"], mn), (g["v_max"], mx)):
            assert got.dtype == v.dtype
            want = np.where(np.isinf(want), np.nan, want)  # groups of NaN values only
            np.testing.assert_array_equal(got.astype(float), want)
        counted = hp.groupby(data, "k", strategy="dense").size().allgather()
        np.testing.assert_array_equal(counted["count"], size)


@pytest.mark.mpi
def test_dense_groupby_empty_everywhere(comm):
    for kdt in ("i1", "u8", "i8"):
        res = hp.groupby({"k": np.zeros(0, kdt), "v": np.zeros(0)}, "k",
                         strategy="dense").agg(v=["sum", "max"]).allgather()
        assert len(res["k"]) == 0 and res["k"].dtype == np.dtype(kdt)


# --------------------------------------------------------------------------------------
# 4. heavy-key candidates by hash owners


@pytest.fixture
def small_heavy(monkeypatch):
    monkeypatch.setattr(_skew, "MIN_ROWS", 4)


def _norm(x):
    x = x.item() if hasattr(x, "item") else x
    return "nan" if isinstance(x, float) and math.isnan(x) else (0.0 if x == 0 else x)


def _candidate_tables(it, comm):
    """(left, right) key columns of this rank: many keys of about equal weight (more
    candidates than are compared one by one), one or two key columns, integer or float
    keys with NaN, ranks with no rows."""
    rng = np.random.default_rng([it, comm.rank])
    nl = 0 if comm.rank == it % comm.size and comm.size > 1 else 600 + 100 * comm.rank
    nr = [300, 0, 900][it % 3]
    lk = rng.integers(0, [20, 30, 6][it % 3], nl) * 7 - 50
    rk = rng.integers(-50, 200, nr)
    if it % 2:
        lk, rk = lk.astype(np.float64), rk.astype(np.float64)
        lk[::41], rk[::13] = np.nan, np.nan
    left, right = [lk], [rk]
    if it % 4 == 3:
        left.append((np.arange(nl) % 2).astype(np.int8))
        right.append((np.arange(nr) % 2).astype(np.int8))
    return left, right


@pytest.mark.mpi
@pytest.mark.parametrize("it", range(6))
def test_sampled_candidates_are_the_all_gathered_ones(comm, it):
    """The owners' candidates (sparse exchange of the samples, sums on the key's owner,
    an allreduce to concatenate them) are exactly those of an all-gather of every rank's
    sampled keys and weights summed in Python, at several thresholds, on every rank."""
    lk, rk = _candidate_tables(it, comm)
    (ls, lw), (rs, rw) = _skew._sample(lk, comm.rank, 0), _skew._sample(rk, comm.rank, 1)
    mine = [(tuple(int(w) for w in row), float(x))
            for row, x in zip(np.concatenate(key_words(ls, rs)), np.concatenate([lw, rw]))]
    weight = {}
    for part in comm.allgather(mine):
        for key, x in part:
            weight[key] = weight.get(key, 0.0) + x  # multiples of 1/256: exact sums
    for least in (0.5, 20.0, 45.5, 1e9):
        got = _skew._sampled_candidates(lk, rk, least, comm)
        want = sorted(key for key, x in weight.items() if x >= least)
        assert [tuple(int(w) for w in row) for row in got] == want, least
        assert comm.allgather(got.tobytes()) == [got.tobytes()] * comm.size


@pytest.mark.mpi
@pytest.mark.parametrize("it", range(8))
def test_skew_join_many_candidates(comm, small_heavy, it):
    """Joins whose keys are all near the heavy threshold (20 or 30 candidates: the hash
    table lookup, not the one-by-one comparison), one or two key columns, integer or
    float keys, inner and left, against the dict join."""
    lk, rk = _candidate_tables(it, comm)
    L = {"k": lk[0], "lid": np.arange(len(lk[0])) + 10_000 * comm.rank}
    R = {"k": rk[0], "rid": np.arange(len(rk[0])) + 10_000 * comm.rank}
    on = ["k"]
    if len(lk) > 1:
        L["k2"], R["k2"], on = lk[1], rk[1], ["k", "k2"]
    how = ("inner", "left")[it % 2]
    res = hp.join(L, R, on, how=how, strategy="hash")
    g = res.allgather()
    GL = {c: np.concatenate([t[c] for t in comm.allgather(L)]) for c in L}
    GR = {c: np.concatenate([t[c] for t in comm.allgather(R)]) for c in R}
    lpos = {int(x): i for i, x in enumerate(GL["lid"])}
    rpos = {int(x): i for i, x in enumerate(GR["rid"])}
    rid = np.nan_to_num(g["rid"].astype(float), nan=-1).astype(np.int64)
    got = sorted((lpos[int(a)], rpos[int(b)] if b >= 0 else -1) for a, b in zip(g["lid"], rid))

    def rows(T):
        return list(zip(*[[_norm(x) for x in T[c]] for c in on]))

    assert got == dict_join_pairs(rows(GL), rows(GR), how)
    metas = comm.allgather((res.meta["heavy_keys"], res.meta["replicated"]))
    assert all(m == metas[0] for m in metas)


# --------------------------------------------------------------------------------------
# 5. the group-by's names


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["dense", "hash"])
@pytest.mark.parametrize("name,error", [(None, TypeError), (5, TypeError),
                                        (b"n", TypeError), (("a",), TypeError),
                                        ("", ValueError)])
def test_size_name_must_be_a_string(comm, strategy, name, error):
    """``size(name)`` made ``str(name)`` of anything: a column named 'None', "b'n'" or
    '' (no dataset can have that name). A TypeError (ValueError for '') on every rank;
    the next call works."""
    k = np.array([3, 3, 5, 7, 7, 7]) + 10 * comm.rank
    gb = hp.groupby({"k": k}, "k", strategy=strategy)
    with pytest.raises(error, match="name must"):
        gb.size(name)
    got = gb.size(np.str_("n")).allgather()
    assert list(got) == ["k", "n"] and type(list(got)[1]) is str
    want, counts = np.unique(np.concatenate(comm.allgather(k)), return_counts=True)
    np.testing.assert_array_equal(got["k"], want)
    np.testing.assert_array_equal(got["n"], counts)


@pytest.mark.mpi
def test_size_name_differing_between_ranks_is_one_error(comm):
    from hpcproc.errors import ArgumentMismatchError

    k = np.arange(5) + comm.rank
    gb = hp.groupby({"k": k}, "k")
    if comm.size > 1:
        with pytest.raises(ArgumentMismatchError):
            gb.size("n" if comm.rank else None)
    assert gb.size().allgather()["count"].sum() == 5 * comm.size


# --------------------------------------------------------------------------------------
# 6. the build


@SERIAL_ONLY
def test_makefile_rebuilds_when_any_digested_source_changes():
    """``make venv`` rebuilds the ahead-of-time kernels when a file of their source
    digest changes (``_aot.BUILTIN`` and ``_aot.INLINED``): the Makefile's ``AOT_SRC``
    must list every one of them, or an edited file leaves a build that no longer matches
    its digest (unused, with a warning) while ``make`` thinks it current. The prefetch
    intrinsic's module was missing."""
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^AOT_SRC\s*:=\s*\$\(wildcard((?:[^)\\]|\\\n)*)\)", text, re.M)
    assert m, "AOT_SRC not found in the Makefile"
    listed = set()
    for pattern in m.group(1).replace("\\\n", " ").split():
        listed |= {str((REPO / p).resolve()) for p in glob.glob(str(REPO / pattern))}
    for name in _aot.BUILTIN + _aot.INLINED:
        path = str((REPO / (name.replace(".", "/") + ".py")).resolve())
        assert path in listed, f"{name} is in the ahead-of-time digest but not in AOT_SRC"

