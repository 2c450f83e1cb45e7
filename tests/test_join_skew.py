"""``hp.join`` with heavy keys (skew): the rows of a heavy key stay on their ranks, the
other side's rows of it are replicated. Results against a dict-based join written here
(no numpy join logic), the per-rank balance against the plain hash join's (1, 2, 3 ranks).
"""

import math

import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp
from hpcproc.shuffles import _skew
from hpcproc.shuffles._hashjoin import key_words
from hpcproc.shuffles.joins import _key_cols
from support import dict_join_pairs

pytestmark = pytest.mark.mpi

N = 6000  # left rows; MIN_ROWS is lowered so that keys of a few hundred rows are heavy


@pytest.fixture(autouse=True)
def small_heavy_keys(monkeypatch):
    monkeypatch.setattr(_skew, "MIN_ROWS", 64)


def _norm(x):
    x = x.item() if hasattr(x, "item") else x
    return "nan" if isinstance(x, float) and math.isnan(x) else (0.0 if x == 0 else x)


def _rows(cols):
    n = len(next(iter(cols.values())))
    return [tuple(_norm(cols[k][i]) for k in cols) for i in range(n)]


def _zipf(rng, n, a=1.2, keys=2000):
    w = np.arange(1, keys + 1, dtype=float) ** -a
    return rng.choice(keys, size=n, p=w / w.sum()).astype(np.int64)


def _case(name):
    """(left key columns, right key columns, balanced): global arrays, the same on every
    rank; ``balanced``: the skewed side's heavy keys can be spread evenly."""
    rng = np.random.default_rng(7)
    dim = np.arange(3000, dtype=np.int64)
    if name == "half":  # one key in half of the left rows, a dimension table
        k = np.where(rng.random(N) < 0.5, 11, rng.integers(0, 3000, N))
        return {"k": k}, {"k": rng.permutation(dim)}, True
    if name == "zipf":
        return {"k": _zipf(rng, N)}, {"k": rng.permutation(dim)}, True
    if name == "both":  # heavy on both sides: 2400 x 40 output rows for key 5
        k = np.where(rng.random(N) < 0.4, 5, rng.integers(0, 3000, N))
        r = np.concatenate([np.full(40, 5), rng.integers(0, 3000, 160)])
        return {"k": k}, {"k": rng.permutation(r)}, True
    if name == "no_match":  # the heavy key is not on the right
        k = np.where(rng.random(N) < 0.5, -1, rng.integers(0, 3000, N))
        return {"k": k}, {"k": dim}, True
    if name == "same":  # every left row the same key
        return {"k": np.full(N, 3)}, {"k": np.concatenate([[3, 3], dim[10:400]])}, True
    if name == "right_heavy":  # the right side is the skewed one, the left is small
        r = np.where(rng.random(N) < 0.5, 9, rng.integers(0, 3000, N))
        return {"k": rng.integers(0, 20, 300)}, {"k": r}, True
    if name == "nan_float":  # NaN in half the left rows, float keys, -0.0 == 0.0
        x = np.round(rng.normal(size=N), 2)
        x[rng.random(N) < 0.5] = np.nan
        x[:50] = -0.0
        r = np.concatenate([[np.nan, 0.0], np.round(rng.normal(size=300), 2)])
        return {"k": x}, {"k": r.astype(np.float32)}, True
    if name == "two_keys":  # a heavy (k, j) pair; int32 against int64
        k = np.where(rng.random(N) < 0.4, 2, rng.integers(0, 50, N))
        j = np.where(k == 2, 1, rng.integers(0, 4, N)).astype(np.int8)
        rk, rj = np.repeat(np.arange(50), 4), np.tile(np.arange(4), 50).astype(np.int8)
        return {"k": k, "j": j}, {"k": rk.astype(np.int32), "j": rj}, True
    if name == "wide":  # uint64 keys against int64 (exact two-word keys)
        k = np.where(rng.random(N) < 0.5, 2**63 + 3, rng.integers(0, 3000, N)).astype(np.uint64)
        return {"k": k}, {"k": np.concatenate([dim, [-5]])}, True
    if name == "many":  # 20 keys of 300 rows: more candidates than FEW on 2 and 3 ranks
        return {"k": rng.integers(0, 20, N) * 7}, {"k": np.arange(40) * 7}, True
    raise ValueError(name)


CASES = ["half", "zipf", "both", "no_match", "same", "right_heavy", "nan_float", "two_keys",
         "wide"]


def _tables(comm, lk, rk, layout):
    nl, nr = len(next(iter(lk.values()))), len(next(iter(rk.values())))
    rng = np.random.default_rng(3)
    L = split({**lk, "lid": np.arange(nl), "x": rng.random(nl)}, comm, layout)
    R = split({**rk, "rid": np.arange(nr), "y": rng.integers(0, 99, nr).astype(np.int16)},
              comm, layout)
    return L, R


def _check(res, lk, rk, how):
    g = res.allgather()
    on = list(lk)
    lkeys = list(zip(*[[_norm(v) for v in lk[k]] for k in on]))
    rkeys = list(zip(*[[_norm(v) for v in rk[k]] for k in on]))
    exp = dict_join_pairs(lkeys, rkeys, how)
    rid = np.nan_to_num(g["rid"].astype(float), nan=-1).astype(int)
    assert sorted(zip(g["lid"].tolist(), rid.tolist())) == exp
    # whole rows: every column belongs to its (left, right) row
    lx = np.random.default_rng(3).random(len(lkeys))
    np.testing.assert_array_equal(g["x"], lx[g["lid"]])
    for k in on:
        got = [_norm(v) for v in g[k]]
        assert got == [_norm(v) for v in lk[k][g["lid"]]]
    return g


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("case", CASES)
def test_skewed_join_against_dict(comm, case, how):
    lk, rk, _ = _case(case)
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, list(lk), how=how, strategy="hash")
    _check(res, lk, rk, how)
    plain = hp.join(L, R, list(lk), how=how, strategy="hash", skew=False)
    assert plain.meta["heavy_keys"] == 0
    assert res.num_rows == plain.num_rows
    if comm.size > 1:
        assert res.meta["heavy_keys"] >= 1, res.meta
    else:
        assert res.meta["heavy_keys"] == 0  # one rank: nothing to balance


@pytest.mark.parametrize("layout", ["all_on_last", "first_empty", "uneven"])
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("case", ["half", "right_heavy", "both"])
def test_skewed_join_empty_ranks(comm, case, how, layout):
    lk, rk, _ = _case(case)
    L, R = _tables(comm, lk, rk, layout)
    _check(hp.join(L, R, list(lk), how=how, strategy="hash"), lk, rk, how)


def _loads(res):
    """Rows joined on every rank (left + right)."""
    return np.array([a + b for a, b in res.meta["join_rows"]])


@pytest.mark.parametrize("case", ["half", "same", "zipf", "no_match", "right_heavy"])
def test_heavy_keys_are_spread(comm, case):
    """The point of the change: no rank joins much more than its share of the rows,
    where the plain hash join gives the heavy key's rank all of them."""
    lk, rk, _ = _case(case)
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", strategy="hash")
    plain = hp.join(L, R, "k", strategy="hash", skew=False)
    loads, before = _loads(res), _loads(plain)
    share = loads.sum() / comm.size
    assert loads.max() <= 1.25 * share, (loads, before)
    if comm.size > 1 and case in ("half", "same", "no_match", "right_heavy"):
        assert before.max() > 1.3 * before.sum() / comm.size, before  # the test can tell
    if case in ("half", "same"):  # an inner join with one match per left row
        out = np.array(res.meta["rank_rows"])
        assert out.max() <= 1.25 * out.sum() / comm.size, out


def test_heavy_on_both_sides_splits_the_output(comm):
    lk, rk, _ = _case("both")
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", strategy="hash")
    out = np.array(res.meta["rank_rows"])
    assert out.max() <= 1.3 * out.sum() / comm.size, out  # 96,000 rows of key 5 split
    if comm.size > 1:
        assert res.meta["replicated"] == {"left": 0, "right": 40}  # the right rows of 5


def test_replication_budget_falls_back_to_hash(comm):
    """A heavy key whose other side does not fit ``replicate_bytes`` is hash-partitioned
    (today's path): the same result. ``broadcast_bytes`` has no say in it."""
    lk, rk, _ = _case("both")
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", strategy="hash", replicate_bytes=40 * 18 - 1)
    assert res.meta["heavy_keys"] == 0
    _check(res, lk, rk, "inner")
    for bb in (0, 40 * 18 - 1):
        res = hp.join(L, R, "k", strategy="hash", replicate_bytes=40 * 18,  # k, rid, y
                      broadcast_bytes=bb)
        assert res.meta["heavy_keys"] == (comm.size > 1)
        assert res.meta["replicated"]["right"] == 40 * (comm.size > 1)
        _check(res, lk, rk, "inner")


def test_broadcast_bytes_zero_keeps_skew_handling(comm):
    """``auto`` with ``broadcast_bytes=0`` never broadcasts, yet heavy keys are handled."""
    lk, rk, _ = _case("half")
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", broadcast_bytes=0)
    assert res.meta["strategy"] == "hash"
    assert res.meta["heavy_keys"] == (comm.size > 1)
    _check(res, lk, rk, "inner")


@pytest.mark.parametrize("how", ["inner", "left"])
def test_no_skew_is_the_plain_hash_join(comm, how):
    """Uniform keys: no heavy key, and the same rows in the same order on every rank."""
    rng = np.random.default_rng(5)
    lk, rk = {"k": rng.integers(0, 1 << 40, 20000)}, {"k": rng.integers(0, 1 << 40, 9000)}
    lk["k"][::3] = rk["k"][:6667]  # a third of the left rows match
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", how=how, strategy="hash")
    plain = hp.join(L, R, "k", how=how, strategy="hash", skew=False)
    assert res.meta["heavy_keys"] == 0
    got, want = res.local(), plain.local()
    assert list(got) == list(want)
    for k in got:
        np.testing.assert_array_equal(got[k], want[k])


def test_skew_argument_is_checked(comm):
    k = np.arange(4, dtype=np.int64) + 4 * comm.rank
    with pytest.raises(TypeError, match="skew must be True or False"):
        hp.join({"k": k}, {"k": k}, "k", comm=comm, skew="yes")
    for bad, err in ((True, TypeError), (1.5, TypeError), ("64M", TypeError),
                     (-1, ValueError)):
        with pytest.raises(err, match="replicate_bytes must be"):
            hp.join({"k": k}, {"k": k}, "k", comm=comm, replicate_bytes=bad)


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("case", ["half", "zipf", "nan_float", "right_heavy"])
def test_hashed_candidate_lookup(comm, monkeypatch, case, how):
    """One-word keys through the hash-table lookup (``FEW = 0``), not the one-by-one
    comparison used for a few candidates."""
    monkeypatch.setattr(_skew, "FEW", 0)
    lk, rk, _ = _case(case)
    L, R = _tables(comm, lk, rk, "even")
    res = hp.join(L, R, "k", how=how, strategy="hash")
    _check(res, lk, rk, how)
    assert (res.meta["heavy_keys"] >= 1) == (comm.size > 1)


@pytest.mark.parametrize("words", [1, 2])
def test_count_kernels_against_numpy(words):
    """Both counting kernels: every row's candidate and the counts, against numpy."""
    rng = np.random.default_rng(words)
    K = rng.integers(0, 40, (5000, words)).astype(np.uint64)
    C = np.unique(rng.integers(0, 60, (12, words)).astype(np.uint64), axis=0)
    exp_ids = np.full(len(K), -1)
    for j, row in enumerate(C):
        exp_ids[(K == row).all(axis=1)] = j
    exp_counts = np.bincount(exp_ids[exp_ids >= 0], minlength=len(C))
    kernels = [lambda c, i: _skew._count(K, _skew._table(C), c, i)]
    if words == 1:
        kernels.append(lambda c, i: _skew._count_few(K, C, c, i))
    for run in kernels:
        counts, ids = np.full(len(C), 5, np.int64), np.empty(len(K), np.int32)
        run(counts, ids)
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(counts, exp_counts + 5)  # added to what is there


@pytest.mark.parametrize("layout", ["even", "all_on_last", "uneven"])
@pytest.mark.parametrize("case", CASES + ["many"])
def test_candidates_match_an_allgathered_sample(comm, case, layout):
    """The candidates that the keys' owners find are those of an all-gather of every
    rank's sample summed in a dict (the scheme they replace), sorted, on every rank."""
    lk, rk, _ = _case(case)
    L, R = _tables(comm, lk, rk, layout)
    lkc, rkc = _key_cols(L.local(), R.local(), list(lk))
    rows = len(next(iter(lk.values()))) + len(next(iter(rk.values())))
    least = rows / (_skew.SHARE * comm.size) / 2
    got = _skew._sampled_candidates(lkc, rkc, least, comm)
    (ls, lw), (rs, rw) = _skew._sample(lkc, comm.rank, 0), _skew._sample(rkc, comm.rank, 1)
    mine = {}
    for row, w in zip(np.concatenate(key_words(ls, rs)).tolist(),
                      np.concatenate([lw, rw]).tolist(), strict=True):
        mine[tuple(row)] = mine.get(tuple(row), 0.0) + w
    total = {}
    for part in comm.allgather(mine):  # rank order, as the owners sum
        for key, w in part.items():
            total[key] = total.get(key, 0.0) + w
    want = sorted(key for key, w in total.items() if w >= least)
    assert [tuple(r) for r in got.tolist()] == want
    assert comm.allgather(got.tobytes()) == [got.tobytes()] * comm.size
    if case == "many" and comm.size > 1:
        assert len(want) > _skew.FEW
        res = hp.join(L, R, "k", strategy="hash")
        _check(res, lk, rk, "inner")
        assert res.meta["heavy_keys"] == (20 if comm.size == 3 else 0)
