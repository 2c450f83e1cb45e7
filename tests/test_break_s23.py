"""Break-it tests for the s23 changes: the hash join's heavy keys (skew), the hash
group-by freeing its columns as they move (``exchange_runs(consume=True)``), and the
exchange's two-stream scatter with few rows per rank and many ranks.

Every result is compared with an independent reference (a dict-based join, numpy
group aggregates, numpy's boolean selection for the exchange). Tests marked ``mpi`` run
serially and under 2 and 3 ranks; the others run once serially (some launch their own
``mpiexec``, always with a timeout)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp
from hpcproc import memory
from hpcproc.errors import ArgumentMismatchError
from hpcproc.shuffles import _exchange, _skew
from support import SERIAL_ONLY, dict_join_pairs, hpcproc_cmd, run

SCRIPT = Path(__file__).with_name("_break_s23.py")

# --------------------------------------------------------------------------------------
# 1. the skewed hash join


@pytest.fixture
def small_heavy(monkeypatch):
    """Keys of a few hundred rows can be heavy (the default needs 4096 rows)."""
    monkeypatch.setattr(_skew, "MIN_ROWS", 4)


def _norm(x):
    """A key as a Python value: NaN one token, -0.0 as 0.0 (ints stay exact)."""
    x = x.item() if hasattr(x, "item") else x
    return "nan" if isinstance(x, float) and math.isnan(x) else (0.0 if x == 0 else x)


def _key_tuples(cols, on):
    n = len(cols[on[0]])
    return [tuple(_norm(cols[k][i]) for k in on) for i in range(n)]


def _check_join(comm, res, L, R, on, how):
    """The gathered result against the dict join of the global tables ``L`` and ``R``
    (with ``lid``/``rid`` row ids), whole rows, and meta identical on every rank."""
    g = res.allgather()
    exp = dict_join_pairs(_key_tuples(L, on), _key_tuples(R, on), how)
    rid = np.nan_to_num(g["rid"].astype(float), nan=-1).astype(np.int64)
    assert sorted(zip(g["lid"].tolist(), rid.tolist())) == exp
    for k in on:  # the key columns come from the left row
        assert [_norm(v) for v in g[k]] == [_norm(v) for v in L[k][g["lid"]]]
    hit = rid >= 0
    if "y" in R:  # a right value column rides with its row, NaN where unmatched
        np.testing.assert_array_equal(g["y"][hit], R["y"][rid[hit]])
        assert np.isnan(g["y"][~hit]).all()
    metas = comm.allgather({k: res.meta[k] for k in ("heavy_keys", "replicated", "join_rows",
                                                      "rank_rows", "strategy")})
    assert all(m == metas[0] for m in metas), metas
    rep, rows = res.meta["replicated"], res.meta["join_rows"]
    # every replicated row is on every rank, every other row on one
    assert sum(r[0] for r in rows) == len(L["lid"]) + rep["left"] * (comm.size - 1)
    assert sum(r[1] for r in rows) == len(R["rid"]) + rep["right"] * (comm.size - 1)
    assert res.meta["rank_rows"][comm.rank] == res.local_rows
    assert sum(res.meta["rank_rows"]) == len(exp)
    return g


def _keys(dtype, n, heavy_share, rng, heavy=5):
    """``n`` keys of ``dtype``: ``heavy`` in about ``heavy_share`` of the rows, else
    values 0..60 (NaN, -0.0 and +0.0 among them for floats; True heavy for bool)."""
    dt = np.dtype(dtype)
    base = np.where(rng.random(n) < heavy_share, heavy, rng.integers(0, 61, n))
    if dt.kind == "b":
        return np.where(base == heavy, True, base % 2 == 0).astype(dt)
    if dt.kind == "f":
        x = base.astype(np.float64)
        x[base == 7] = np.nan
        x[(base == 0) & (rng.random(n) < 0.5)] = -0.0
        return x.astype(dt)
    return base.astype(dt)


DTYPE_PAIRS = [("i1", "i1"), ("i2", "i8"), ("i4", "i4"), ("i8", "i8"), (">i8", ">i8"),
               ("<i8", ">i8"), ("u1", "u1"), ("u2", "u4"), ("u8", "u8"), ("u8", "i8"),
               ("i1", "u8"), (">u4", "u2"), ("f2", "f2"), ("f4", "f8"), ("f8", "f8"),
               (">f8", "f4"), ("?", "?"), ("?", "i1")]
#: (left share, right share) of the heavy key; "none": the heavy left key has no match
PLACES = {"left": (0.5, 0.05), "right": (0.02, 0.6), "both": (0.4, 0.4), "none": (0.5, 0.0)}


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("ldt,rdt", DTYPE_PAIRS)
def test_skew_join_every_key_dtype(comm, small_heavy, ldt, rdt, place, how):
    rng = np.random.default_rng([7, len(ldt), len(rdt)])
    nl, nr = 900, 300 if place != "right" else 900
    sl, sr = PLACES[place]
    lk, rk = _keys(ldt, nl, sl, rng), _keys(rdt, nr, sr, rng)
    if place == "none" and np.dtype(rdt).kind != "b":
        rk[rk == 5] = 6  # the heavy left key is nowhere on the right
    L = {"k": lk, "lid": np.arange(nl)}
    R = {"k": rk, "rid": np.arange(nr), "y": rng.normal(size=nr)}
    res = hp.join(split(L, comm, "uneven"), split(R, comm, "uneven"), "k", how=how,
                  strategy="hash")
    _check_join(comm, res, L, R, ["k"], how)
    if comm.size > 1:  # the case does reach the skew path
        assert res.meta["heavy_keys"] >= 1, res.meta
    else:
        assert res.meta["heavy_keys"] == 0


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["inner", "left"])
def test_skew_join_multi_column_keys(comm, small_heavy, how):
    """A heavy (int8, float with NaN, bool) key; the right side's float key is float32
    and its int key int64."""
    rng = np.random.default_rng(11)
    nl, nr = 1200, 400
    hot = rng.random(nl) < 0.5
    L = {"a": np.where(hot, 3, rng.integers(0, 9, nl)).astype(np.int8),
         "f": np.where(hot, np.nan, rng.integers(0, 3, nl).astype(float)),
         "b": np.where(hot, True, rng.random(nl) < 0.5), "lid": np.arange(nl)}
    L["f"][(L["f"] == 0) & (rng.random(nl) < 0.5)] = -0.0
    R = {"a": rng.integers(0, 9, nr), "f": rng.integers(0, 3, nr).astype(np.float32),
         "b": rng.random(nr) < 0.5, "rid": np.arange(nr), "y": rng.normal(size=nr)}
    R["f"][:30] = np.nan
    R["a"][:30], R["b"][:30] = 3, True  # 30 right rows of the heavy key
    res = hp.join(split(L, comm), split(R, comm, "first_empty"), ["a", "f", "b"], how=how,
                  strategy="hash")
    _check_join(comm, res, L, R, ["a", "f", "b"], how)
    assert res.meta["heavy_keys"] >= (comm.size > 1)


def _layout_case(name, rng):
    """(left keys, right keys, left layout, right layout) of a shape of data."""
    if name == "heavy_on_one_rank":  # the heavy rows first: all on rank 0 (even layout)
        lk = np.concatenate([np.full(700, 5), rng.integers(0, 500, 700)])
        return lk, np.concatenate([[5, 5, 5], rng.integers(0, 500, 97)]), "even", "even"
    if name == "heavy_on_every_rank":
        lk = np.where(rng.random(1400) < 0.5, 5, rng.integers(0, 500, 1400))
        return lk, np.concatenate([[5, 5], rng.integers(0, 500, 98)]), "even", "even"
    if name == "all_one_key":  # 1000 x 7 output rows of one key
        return np.full(1000, 3), np.full(7, 3), "uneven", "all_on_last"
    if name == "all_one_key_both_big":
        return np.full(300, 3), np.full(200, 3), "first_empty", "uneven"
    if name == "empty_right":
        return np.where(rng.random(800) < 0.6, 5, rng.integers(0, 99, 800)), \
            np.zeros(0, np.int64), "even", "even"
    if name == "empty_left":
        return np.zeros(0, np.int64), np.full(800, 5), "even", "even"
    if name == "one_left_row":
        return np.array([5]), np.where(rng.random(900) < 0.7, 5, rng.integers(0, 9, 900)), \
            "all_on_last", "even"
    if name == "one_right_row":
        return np.where(rng.random(900) < 0.7, 5, rng.integers(0, 9, 900)), np.array([5]), \
            "uneven", "all_on_last"
    raise ValueError(name)


LAYOUT_CASES = ["heavy_on_one_rank", "heavy_on_every_rank", "all_one_key",
                "all_one_key_both_big", "empty_right", "empty_left", "one_left_row",
                "one_right_row"]


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_skew_join_layouts(comm, small_heavy, case, how):
    rng = np.random.default_rng(3)
    lk, rk, llay, rlay = _layout_case(case, rng)
    L = {"k": lk, "lid": np.arange(len(lk))}
    R = {"k": rk, "rid": np.arange(len(rk)), "y": rng.normal(size=len(rk))}
    res = hp.join(split(L, comm, llay), split(R, comm, rlay), "k", how=how, strategy="hash")
    _check_join(comm, res, L, R, ["k"], how)


@pytest.mark.mpi
def test_skew_left_join_unmatched_heavy_rows_once(comm, small_heavy):
    """Heavy keys with no match: a left-heavy key absent on the right (kept in place),
    and a right-heavy key whose left rows are replicated to every rank but match on
    some ranks only: every left row is in the output exactly once (or once per
    match)."""
    rng = np.random.default_rng(5)
    lk = np.concatenate([np.full(600, -1), np.full(40, 9), rng.integers(100, 400, 600)])
    rk = np.concatenate([np.full(700, 9), rng.integers(100, 400, 200)])
    L = {"k": lk, "lid": np.arange(len(lk))}
    R = {"k": rk, "rid": np.arange(len(rk)), "y": rng.normal(size=len(rk))}
    res = hp.join(split(L, comm, "uneven"), split(R, comm, "all_on_last"), "k", how="left",
                  strategy="hash")
    g = _check_join(comm, res, L, R, ["k"], "left")
    counts = np.bincount(g["lid"], minlength=len(lk))
    assert (counts[lk == -1] == 1).all()  # unmatched: once, NaN
    assert (counts[lk == 9] == 700).all()  # replicated: once per right row, no extra
    if comm.size > 1:
        assert res.meta["heavy_keys"] == 2 and res.meta["replicated"]["left"] == 40


@pytest.mark.mpi
def test_skew_many_to_many_heavy_key(comm, small_heavy):
    rng = np.random.default_rng(9)
    lk = np.where(rng.random(1500) < 0.3, 4, rng.integers(0, 400, 1500))
    rk = np.where(rng.random(600) < 0.25, 4, rng.integers(0, 400, 600))
    L = {"k": lk, "lid": np.arange(len(lk))}
    R = {"k": rk, "rid": np.arange(len(rk)), "y": rng.normal(size=len(rk))}
    for how in ("inner", "left"):
        res = hp.join(split(L, comm), split(R, comm, "uneven"), "k", how=how,
                      strategy="hash")
        _check_join(comm, res, L, R, ["k"], how)
        assert res.meta["heavy_keys"] >= (comm.size > 1)


def _budget_tables():
    """Key 5 in 2000 of 3000 left rows, 40 right rows of it (a right row: int64 key,
    int64 rid, int16 y = 18 bytes; replicating key 5 costs 720 bytes); key -1 in 600
    more left rows, on no right row (costs nothing to replicate); the other keys of the
    two sides never meet."""
    rng = np.random.default_rng(1)
    lk = np.concatenate([np.full(2000, 5), np.full(600, -1), rng.integers(100, 2000, 400)])
    rk = np.concatenate([np.full(40, 5), rng.integers(2000, 4000, 200)])
    L = {"k": lk, "lid": np.arange(len(lk))}
    R = {"k": rk, "rid": np.arange(len(rk)),
         "y": rng.integers(0, 99, len(rk)).astype(np.int16)}
    return L, R


@pytest.mark.mpi
@pytest.mark.parametrize("budget,heavy,replicated", [
    (0, 1, 0), (1, 1, 0), (719, 1, 0), (720, 2, 40), (721, 2, 40)])
def test_skew_replication_budget_boundary(comm, small_heavy, budget, heavy, replicated):
    """The replicated rows' bytes fit ``replicate_bytes`` (exactly at the boundary
    too); a key that does not fit is hash-partitioned; a heavy key with nothing to
    replicate is handled even with a budget of 0."""
    L, R = _budget_tables()
    row_bytes = sum(v.dtype.itemsize for v in R.values())
    assert row_bytes * 40 == 720  # the boundary, computed from the dtypes
    for how in ("inner", "left"):
        res = hp.join(split(L, comm), split(R, comm, "uneven"), "k", how=how,
                      strategy="hash", replicate_bytes=budget)
        g = _check_join(comm, res, L, R, ["k"], how)
        assert len(g["lid"]) == 2000 * 40 + (0 if how == "inner" else 1000)
        if comm.size > 1:
            assert res.meta["heavy_keys"] == heavy
            assert res.meta["replicated"] == {"left": 0, "right": replicated}
        else:
            assert res.meta["heavy_keys"] == 0


@pytest.mark.mpi
@pytest.mark.parametrize("options", [dict(memory_budget=1), dict(max_message=64),
                                     dict(memory_budget=1, max_message=1000)])
def test_skew_join_small_memory_budget(comm, small_heavy, options):
    """The replicated rows appended after an exchange of several rounds."""
    L, R = _budget_tables()
    R["v"] = np.arange(2 * len(R["k"]), dtype=np.float32).reshape(-1, 2)  # 2-D rows
    for how in ("inner", "left"):
        res = hp.join(split(L, comm, "uneven"), split(R, comm), "k", how=how,
                      strategy="hash", **options)
        g = _check_join(comm, res, L, R, ["k"], how)
        hit = ~np.isnan(g["rid"].astype(float))
        np.testing.assert_array_equal(g["v"][hit], R["v"][g["rid"][hit].astype(int)])
        if comm.size > 1:
            assert res.meta["heavy_keys"] == 2
            assert res.meta["rounds"] > 1 or "max_message" not in options


@pytest.mark.mpi
def test_skew_join_random_cases(comm, small_heavy):
    """Random dtypes, sizes (0-3 rows and more), heavy shares, budgets and layouts."""
    dts = ["i1", "u2", "i4", "i8", "u8", ">i8", "f4", "f8", "?"]
    for it in range(30):
        rng = np.random.default_rng([it, 23])
        ldt = dts[rng.integers(len(dts))]
        rdt = ldt if rng.random() < 0.5 or np.dtype(ldt).kind == "f" else "i8"
        nl, nr = (int(rng.choice([0, 1, 2, 3, 200, 700])) for _ in range(2))
        L = {"k": _keys(ldt, nl, rng.choice([0, 0.5, 1]), rng), "lid": np.arange(nl)}
        R = {"k": _keys(rdt, nr, rng.choice([0, 0.5, 1]), rng), "rid": np.arange(nr),
             "y": rng.normal(size=nr)}
        how = ("inner", "left")[it % 2]
        lay = ["even", "all_on_last", "first_empty", "uneven"]
        res = hp.join(split(L, comm, lay[it % 4]), split(R, comm, lay[(it // 4) % 4]), "k",
                      how=how, strategy="hash",
                      replicate_bytes=int(rng.choice([0, 50, 1 << 20])))
        _check_join(comm, res, L, R, ["k"], how)


@pytest.mark.mpi
@pytest.mark.parametrize("arg", ["skew", "broadcast_bytes", "replicate_bytes",
                                 "memory_budget"])
def test_skew_arguments_that_differ_between_ranks(comm, small_heavy, arg):
    """One rank passes another skew / broadcast_bytes / replicate_bytes / memory_budget:
    one clear error naming the argument on every rank, never a hang or a silent mix;
    the next join works."""
    L, R = _budget_tables()
    tl, tr = split(L, comm), split(R, comm)
    value = {"skew": comm.rank == 0, "broadcast_bytes": 720 + comm.rank,
             "replicate_bytes": 720 + comm.rank,
             "memory_budget": (1 << 20) if comm.rank == 0 else None}[arg]
    if comm.size > 1:
        with pytest.raises(ArgumentMismatchError, match=f"`{arg}`"):
            hp.join(tl, tr, "k", strategy="hash", **{arg: value})
    # the same value spelled differently on the ranks is the same argument
    same = {"skew": np.bool_(True) if comm.rank else True,
            "broadcast_bytes": np.int64(720) if comm.rank else 720,
            "replicate_bytes": np.int64(720) if comm.rank else 720,
            "memory_budget": np.int64(1 << 20) if comm.rank else 1 << 20}[arg]
    res = hp.join(tl, tr, "k", strategy="hash", **{arg: same})
    _check_join(comm, res, L, R, ["k"], "inner")


@pytest.mark.mpi
def test_negative_broadcast_bytes_is_an_error(comm):
    """A negative byte budget was taken silently (as 0 by the skew plan, as 'never' by
    auto): it is a ValueError naming the argument, on every rank."""
    k = np.arange(4, dtype=np.int64) + 4 * comm.rank
    with pytest.raises(ValueError, match="broadcast_bytes must be >= 0"):
        hp.join({"k": k}, {"k": k}, "k", broadcast_bytes=-1)
    res = hp.join({"k": k}, {"k": k}, "k", broadcast_bytes=0)  # 0 is fine
    assert res.num_rows == 4 * comm.size


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", ["S3", "U2", "c16", "M8[s]", "V8"])
def test_unsupported_key_dtype_is_one_clear_error(comm, small_heavy, dtype):
    k = np.zeros(300, dtype)
    with pytest.raises(TypeError, match="key column 'k' must be bool, integer or float"):
        hp.join({"k": k}, {"k": k}, "k", strategy="hash")


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name] = data


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [2, 3])
def test_cli_join_heavy_key(tmp_path, ranks):
    """``hpcproc join`` with the default thresholds: key 7 in half of 200,000 big-endian
    left rows (3 right rows of it), key -9 in 10,000 more left rows on no right row.
    The output file against the dict join, every left row of a left join exactly once
    per match (or once), and the output spread over the ranks (the plain hash join
    puts 300,000 of the 400,000 rows on one rank)."""
    rng = np.random.default_rng(ranks)
    nl = 200_000
    lk = np.where(rng.random(nl) < 0.5, 7, rng.integers(0, 50_000, nl))
    lk[rng.random(nl) < 0.05] = -9
    rk = np.concatenate([[7, 7, 7], rng.integers(100, 50_000, 2000)]).astype(np.int32)
    _write(tmp_path / "l.h5", key=lk.astype(">i8"), lid=np.arange(nl))
    _write(tmp_path / "r.h5", key=rk, rid=np.arange(len(rk)), y=rng.normal(size=len(rk)))
    for how in ("inner", "left"):
        out = tmp_path / f"{how}.h5"
        proc = run(hpcproc_cmd("join", tmp_path / "l.h5", tmp_path / "r.h5", "--on", "/key",
                               "--left-with", "/lid", "--right-with", "/rid",
                               "--right-with", "/y", "--how", how, "--strategy", "hash",
                               "--out", out, "--json"), ranks=ranks, timeout=240)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        with h5py.File(out) as f:
            got = {k: f[k][...] for k in f}
        rid = np.nan_to_num(got["rid"].astype(float), nan=-1).astype(np.int64)
        exp = dict_join_pairs(lk.tolist(), rk.tolist(), how)
        assert sorted(zip(got["lid"].tolist(), rid.tolist())) == exp
        np.testing.assert_array_equal(got["key"], lk[got["lid"]])
        hit = rid >= 0
        np.testing.assert_array_equal(got["y"][hit],
                                      np.asarray(h5py.File(tmp_path / "r.h5")["y"])[rid[hit]])
        rows = np.array(summary["rank_rows"])
        assert rows.sum() == len(exp) and rows.max() <= 1.25 * rows.mean(), rows


# --------------------------------------------------------------------------------------
# 2. the caller's columns are never consumed, modified or freed


def _user_table(comm):
    rng = np.random.default_rng([comm.rank, 2])
    n = 400 + 37 * comm.rank
    base = rng.integers(-5, 6, 2 * n)
    val = rng.normal(size=n)
    val[::7] = np.nan
    ro = rng.integers(0, 9, n).astype(np.uint64)
    ro.flags.writeable = False
    return {"key": base[::2],  # a strided view
            "val": val, "same": val,  # one array, two columns
            "ival": rng.integers(-100, 100, n).astype(np.int32),
            "ro": ro,  # read-only
            "be": rng.normal(size=n).astype(">f8"),
            "k8": rng.integers(0, 1 << 40, n),  # a plain 64-bit key (hash paths)
            "fcol": np.asfortranarray(rng.integers(0, 9, (n, 3)))[:, 1]}  # strided column


AGGS = ["sum", "mean", "count", "min", "max", "size"]


@pytest.mark.mpi
def test_user_columns_intact_after_groupby_join_sort(comm):
    cols = _user_table(comm)
    table = hp.DistTable.from_local(dict(cols), comm)
    snap = {k: (v.copy(), v.flags.writeable, v.ctypes.data) for k, v in cols.items()}
    given = dict(cols)

    def intact(what):
        assert list(cols) == list(given) and table.columns == list(given), what
        for k, v in cols.items():
            assert v is given[k] and table.local(k) is v, (what, k)
            c, w, p = snap[k]
            assert v.ctypes.data == p and v.flags.writeable == w, (what, k)
            np.testing.assert_array_equal(v, c, err_msg=f"{what}: {k}")

    spec = {c: AGGS for c in ["val", "same", "ival", "ro", "be", "key", "k8", "fcol"]}
    for data in (cols, table):
        for strategy in ("auto", "hash", "dense"):
            for by in ("key", "k8", "ro", ["key", "ro"], "fcol", "be"):
                if strategy == "dense" and by not in ("key", "ro", "fcol"):
                    continue
                for options in ({}, {"max_message": 64}):
                    gb = hp.groupby(data, by, strategy=strategy, **options)
                    gb.agg(spec)
                    gb.size()
                    gb.agg(val="mean")
                    gb.agg(key="sum")  # the key aggregated as a value
                    intact(f"groupby {strategy} {by} {options}")
        for by in ("key", "k8", "be", ["key", "ival"]):
            hp.sort(data, by)
            intact(f"sort {by}")
        for how in ("inner", "left"):
            for strategy in ("hash", "broadcast"):
                other = {"key": cols["key"], "w": cols["val"], "r2": cols["ro"]}
                hp.join(data, other, "key", how=how, strategy=strategy)
                hp.join(other, data, "key", how=how, strategy=strategy, suffix="_x")
                hp.join(data, data, ["key", "ro"], how=how, strategy=strategy)
                intact(f"join {how} {strategy}")
        hp.value_counts(data, "key")
        hp.unique(data, "key")
        intact("value_counts/unique")


def _group_reference(keys, values):
    """{key tuple: row indices} over the global rows (NaN one key, -0.0 as 0.0)."""
    groups = {}
    for i, k in enumerate(zip(*[[_norm(x) for x in col] for col in keys])):
        groups.setdefault(k, []).append(i)
    return groups


def _order(t):
    return tuple((1, 0) if x == "nan" else (0, x) for x in t)


@pytest.mark.mpi
@pytest.mark.parametrize("layout", ["even", "all_on_last", "first_empty", "uneven"])
@pytest.mark.parametrize("max_message", [_exchange.MAX_MESSAGE, 40])
@pytest.mark.parametrize("kind", ["int64", "float", "two"])
def test_hash_groupby_against_numpy(comm, layout, max_message, kind):
    """The hash group-by (its columns consumed as they move, or several rounds with
    ``max_message=40``) against numpy aggregates of the global rows."""
    rng = np.random.default_rng(4)
    n = 1500
    key = rng.integers(-2**40, 2**40, 300)[rng.integers(0, 300, n)]
    if kind == "float":
        key = np.round(rng.normal(size=n), 1)
        key[rng.random(n) < 0.1] = np.nan
        key[key == 0] = -0.0
    v = rng.normal(size=n)
    v[rng.random(n) < 0.2] = np.nan
    cols = {"k": key, "j": (np.arange(n) % 3).astype(np.int8), "v": v,
            "i": rng.integers(-50, 50, n).astype(np.int16),
            "u": rng.integers(0, 2**63, n).astype(np.uint64)}
    by = ["k", "j"] if kind == "two" else ["k"]
    spec = {"v": AGGS, "i": AGGS, "u": ["sum", "min", "max", "count"]}
    res = hp.groupby(split(cols, comm, layout), by, strategy="hash",
                     max_message=max_message).agg(spec)
    assert res.meta["strategy"] == "hash"
    g = res.allgather()
    groups = _group_reference([cols[c] for c in by], None)
    keys = sorted(groups, key=_order)
    assert [tuple(_norm(g[c][j]) for c in by) for j in range(len(g[by[0]]))] == keys
    for j, kt in enumerate(keys):
        idx = groups[kt]
        for c, aggs in spec.items():
            x = cols[c][idx]
            x = x[~np.isnan(x)] if x.dtype.kind == "f" else x
            acc = np.float64 if x.dtype.kind == "f" else \
                np.uint64 if x.dtype.kind == "u" else np.int64
            want = {"size": len(idx), "count": len(x), "sum": x.sum(dtype=acc),
                    "mean": x.astype(float).mean() if len(x) else np.nan,
                    "min": x.min() if len(x) else np.nan,
                    "max": x.max() if len(x) else np.nan}
            for a in aggs:
                got = g[f"{c}_{a}"][j]
                if cols[c].dtype.kind == "f" or a == "mean":
                    assert np.isclose(got, want[a], rtol=1e-12, equal_nan=True), (kt, c, a)
                else:
                    assert got == want[a], (kt, c, a)


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["dense", "hash"])
@pytest.mark.parametrize("key,call", [
    ("count", lambda g: g.size()), ("v_sum", lambda g: g.agg(v="sum")),
    ("v_max", lambda g: g.agg(v=["min", "max"])), ("count", "value_counts")])
def test_groupby_output_name_that_is_a_key_is_an_error(comm, strategy, key, call):
    """A key column named like an output column (``count`` of ``.size()`` and
    ``value_counts``, ``v_sum`` of ``agg(v="sum")``) was silently replaced by it: the
    result had counts (or sums) and no keys. It is a ValueError naming the column, on
    every rank, before anything moves."""
    k = np.array([3, 3, 5, 7, 7, 7]) + 10 * comm.rank
    data = {key: k, "v": np.ones(6)}
    with pytest.raises(ValueError, match=f"column {key!r}"):
        if call == "value_counts":
            hp.value_counts(data, key, strategy=strategy)
        else:
            call(hp.groupby(data, key, strategy=strategy))


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["dense", "hash"])
@pytest.mark.parametrize("by", ["count", ["count", "_count"]])
def test_unique_of_keys_named_like_the_counts(comm, strategy, by):
    """``unique`` drops the counts, so keys named ``count`` (``unique`` once returned no
    column for them) give their distinct values; ``size(name)`` names the counts."""
    k = np.array([3, 3, 5, 7, 7, 7]) + 10 * comm.rank
    names = [by] if isinstance(by, str) else by
    data = {n: k * (i + 1) for i, n in enumerate(names)}
    if strategy == "dense" and len(names) > 1:
        pytest.skip("dense takes one key")
    got = hp.unique(data, by, strategy=strategy).allgather()
    want = np.unique(np.concatenate([k + 10 * (r - comm.rank) for r in range(comm.size)]))
    assert list(got) == names
    for i, n in enumerate(names):
        np.testing.assert_array_equal(got[n], want * (i + 1))
    counted = hp.groupby({"k": k}, "k", strategy=strategy).size("n").allgather()
    assert list(counted) == ["k", "n"]
    np.testing.assert_array_equal(counted["n"], np.unique(
        np.concatenate([k + 10 * (r - comm.rank) for r in range(comm.size)]),
        return_counts=True)[1])


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["dense", "hash"])
def test_groupby_key_named_size(comm, strategy):
    """A key named ``size`` (the internal name of the row counts) keeps its values
    next to ``count``."""
    k = np.array([3, 3, 5, 7, 7, 7]) + 10 * comm.rank
    res = hp.groupby({"size": k}, "size", strategy=strategy).size().allgather()
    want, counts = np.unique(np.concatenate([k + 10 * (r - comm.rank)
                                             for r in range(comm.size)]), return_counts=True)
    assert list(res) == ["size", "count"]
    np.testing.assert_array_equal(res["size"], want)
    np.testing.assert_array_equal(res["count"], counts)
    plain = hp.groupby({"k": k}, "k", strategy=strategy).agg().allgather()  # no aggregate
    assert list(plain) == ["k", "size"]
    np.testing.assert_array_equal(plain["size"], counts)


BAD_LIMITS = [({"memory_budget": 0}, ValueError, "memory_budget"),
              ({"memory_budget": -5}, ValueError, "memory_budget"),
              ({"memory_budget": "64M"}, TypeError, "memory_budget must be an integer"),
              ({"memory_budget": 1.5}, TypeError, "memory_budget must be an integer"),
              ({"max_message": 0}, ValueError, "max_message"),
              ({"max_message": 1 << 40}, ValueError, "max_message"),
              ({"max_message": "1"}, TypeError, "max_message must be an integer")]


@pytest.mark.mpi
@pytest.mark.parametrize("kwargs,error,match", BAD_LIMITS)
@pytest.mark.parametrize("op", ["groupby_hash", "groupby_dense", "join", "sort", "shuffle",
                                "exchange"])
def test_bad_memory_limits_are_one_clear_error(comm, op, kwargs, error, match):
    """The hash group-by (whose exchange of sorted runs checked neither) took a
    budget of 0 or below, a string and a max_message beyond the 2**31 the exchange
    keeps its counts under; a string budget failed elsewhere in ``int()`` naming no
    argument, a float was truncated. Every shuffle raises the same error, on every
    rank; the next call works."""
    k = (np.arange(300) % 37) * 10**9 + comm.rank
    calls = {
        "groupby_hash": lambda **kw: hp.groupby({"k": k, "v": k}, "k", strategy="hash",
                                                **kw).agg(v="sum"),
        "groupby_dense": lambda **kw: hp.groupby({"k": k % 37, "v": k}, "k",
                                                 strategy="dense", **kw).agg(v="sum"),
        "join": lambda **kw: hp.join({"k": k}, {"k": k}, "k", strategy="hash", **kw),
        "sort": lambda **kw: hp.sort({"k": k}, "k", **kw),
        "shuffle": lambda **kw: hp.shuffle({"k": k}, "k", partitioner="range", **kw),
        "exchange": lambda **kw: hp.exchange({"k": k}, np.zeros(300, int), **kw)}
    with pytest.raises(error, match=match):
        calls[op](**kwargs)
    calls[op](memory_budget=1 << 20, max_message=1 << 16)  # nothing left pending


# --------------------------------------------------------------------------------------
# 3. the exchange: two streams, positions, 0-3 rows per rank, many ranks


@pytest.fixture(params=["retained", "pooled"])
def staging(request):
    before = memory.retaining()
    memory.retain_memory(request.param == "retained")
    yield request.param
    memory.retain_memory(before)


@pytest.mark.mpi
@pytest.mark.parametrize("pattern", ["to_first", "to_last", "kept", "random", "reversed"])
def test_exchange_few_rows_per_rank(comm, staging, pattern):
    """0, 1, 2 or 3 rows per rank (and odd larger counts), 1-7 columns of mixed widths
    (the positions path from 3 columns on), 2-D row-word columns, one round and many."""
    for it in range(12):
        rng = np.random.default_rng([comm.rank, it])
        n = (it + comm.rank) % 4 if it < 8 else int(rng.integers(4, 60)) | 1
        dest = {"to_first": np.zeros(n, int), "to_last": np.full(n, comm.size - 1),
                "kept": np.full(n, comm.rank), "random": rng.integers(0, comm.size, n),
                "reversed": np.full(n, comm.size - 1 - comm.rank)}[pattern]
        cols = {"a": rng.integers(0, 2**62, n).astype(">u8"),
                "b": rng.integers(0, 256, (n, 3)).astype(np.uint8),
                "c": rng.integers(0, 2**40, (n, 2)),
                "z": np.zeros((n, 0)),
                "d": rng.random(n) < 0.5,
                "e": np.array([b"r%d" % i for i in range(n)], "S5"),
                "f": rng.normal(size=(n, 2, 2)).astype(np.float32)}
        cols = dict(list(cols.items())[:1 + it % 7])
        everyone = comm.allgather((cols, dest))
        exp = {k: np.concatenate([c[k][d == comm.rank] for c, d in everyone]).astype(v.dtype)
               for k, v in cols.items()}
        for max_message in (_exchange.MAX_MESSAGE, 7):
            got, info = hp.exchange(cols, dest.astype(np.uint8), max_message=max_message)
            for k in cols:
                assert got[k].dtype == exp[k].dtype and got[k].shape == exp[k].shape, k
                assert got[k].tobytes() == exp[k].tobytes(), (it, k, max_message)
            assert info["received"].sum() == len(exp["a"])


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 4, 5, 8, 9, 12])
def test_exchange_and_skew_join_on_many_ranks(ranks):
    """1-12 ranks (oversubscribed, small data): both scatter stream layouts (up to 8
    ranks: two streams, above: one) and the skewed join's remainder arithmetic."""
    proc = run([sys.executable, str(SCRIPT)],
               ranks=ranks, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, size, checks, heavy = proc.stdout.split()
    assert ok == "ok" and int(size) == ranks and int(checks) > 300
    assert (int(heavy) > 0) == (ranks > 1)

