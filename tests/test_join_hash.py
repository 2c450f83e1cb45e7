"""``hp.join`` (hash, broadcast-right, broadcast-left) and its local kernel against a
dict-based join written here (1, 2, 3 ranks): full-range, negative, Zipf and all-equal
keys, NaN and signed-zero float keys, 64-bit unsigned keys, mixed widths, two key
columns, empty ranks, one-row inputs, no matches, a left side smaller than the right."""

import math

import numpy as np
import pytest
from _shuffle_data import split

import hpcproc as hp
from hpcproc.shuffles._hashjoin import hash_join
from support import dict_join_pairs

pytestmark = pytest.mark.mpi

I64 = np.iinfo(np.int64)


def _norm(x):
    """A hashable Python value with the join's equality: NaN == NaN, -0.0 == 0.0."""
    if isinstance(x, (float, np.floating)):
        return "nan" if math.isnan(x) else float(x) + 0.0
    return int(x)


def _reference(lk, rk, how):
    """Sorted (left row, right row or -1) pairs, by a dict of right keys."""
    def keys(cols):
        return [tuple(_norm(c[i]) for c in cols) for i in range(len(cols[0]))]
    return dict_join_pairs(keys(lk), keys(rk), how)


def _case(name):
    rng = np.random.default_rng(CASES.index(name))
    if name == "full_range":
        dim = np.unique(rng.integers(I64.min, I64.max, 1500, dtype=np.int64, endpoint=True))
        left = np.concatenate([dim[rng.integers(0, dim.size, 2500)],
                               rng.integers(I64.min, I64.max, 200, dtype=np.int64),
                               [I64.min, I64.max]])
        return {"k": rng.permutation(left)}, {"k": rng.permutation(np.r_[dim, I64.min])}
    if name == "negative":
        return ({"k": rng.integers(-60, 0, 900)}, {"k": rng.integers(-80, -20, 400)})
    if name == "zipf":
        w = np.arange(1, 301, dtype=float) ** -1.3
        draw = lambda n: rng.choice(300, size=n, p=w / w.sum()).astype(np.int64) - 150
        return {"k": draw(700)}, {"k": draw(250)}
    if name == "all_equal":
        return {"k": np.full(60, -7, np.int64)}, {"k": np.full(45, -7, np.int64)}
    if name == "nan":
        a, b = np.round(rng.normal(size=800) * 4) / 4, np.round(rng.normal(size=300) * 4) / 4
        a[::9], b[::13] = np.nan, np.nan
        a[1::17], b[2::19] = -0.0, 0.0
        return {"k": a}, {"k": b.astype(np.float32)}
    if name == "no_match":
        return {"k": rng.integers(0, 1000, 500)}, {"k": rng.integers(2000, 3000, 300)}
    if name == "uint64":
        top = np.uint64(2**63)
        r = np.unique(rng.integers(0, 2**64 - 1, 400, dtype=np.uint64, endpoint=True) | top)
        return ({"k": np.r_[r[rng.integers(0, r.size, 900)], np.uint64(5)]}, {"k": r})
    if name == "mixed_width":
        return ({"k": rng.integers(-100, 100, 600).astype(np.int32)},
                {"k": np.unique(rng.integers(-100, 100, 120))})
    if name == "two_keys":
        return ({"k": rng.integers(-4, 4, 700), "j": rng.integers(0, 3, 700).astype(np.uint8)},
                {"k": rng.integers(-4, 4, 90), "j": rng.integers(0, 3, 90).astype(np.int16)})
    if name == "one_row":
        return {"k": np.array([I64.min])}, {"k": np.array([I64.min])}
    if name == "small_left":  # the hash join builds its table on the left side
        r = rng.integers(I64.min, I64.max, 3000, dtype=np.int64)
        return {"k": np.r_[r[:150], r[:20], [3]]}, {"k": np.r_[r, r[:40]]}
    raise ValueError(name)


CASES = ["full_range", "negative", "zipf", "all_equal", "nan", "no_match", "uint64",
         "mixed_width", "two_keys", "one_row", "small_left"]
LAYOUT = dict(zip(CASES, ["even", "all_on_last", "first_empty", "uneven"] * 3))


@pytest.mark.parametrize("strategy", ["hash", "broadcast", "broadcast-left"])
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("case", CASES)
def test_join_against_dict(comm, case, how, strategy):
    if strategy == "broadcast-left" and how == "left":
        pytest.skip("a left join never broadcasts the left table")
    lk, rk = _case(case)
    on = list(lk)
    nl, nr = len(lk["k"]), len(rk["k"])
    rng = np.random.default_rng(5)
    lx, rx = rng.random(nl), rng.integers(-9, 9, nr)
    lcols = {**lk, "lid": np.arange(nl), "x": lx}
    lbytes = sum(v.nbytes for v in lcols.values())
    pad = rng.integers(0, 255, (nr, 8 + lbytes // max(nr, 1)), dtype=np.uint8)  # 2-D
    L = split(lcols, comm, LAYOUT[case])
    R = split({**rk, "rid": np.arange(nr), "x": rx, "pad": pad}, comm, "first_empty")
    if strategy == "broadcast-left":  # the right table is larger than the left one
        res = hp.join(L, R, on, how=how, broadcast_bytes=lbytes)
        assert res.meta["strategy"] == "broadcast-left"
    else:
        res = hp.join(L, R, on, how=how, strategy=strategy)
        assert res.meta["strategy"] == ("hash" if strategy == "hash" else "broadcast-right")
    assert res.columns == on + ["lid", "x", "rid", "x_right", "pad"]
    g = res.allgather()
    rid = g["rid"]
    if how == "left":
        assert rid.dtype == np.float64 and g["x_right"].dtype == np.float64
        rid = np.where(np.isnan(rid), -1, rid)
    got = sorted(zip(g["lid"].tolist(), rid.astype(np.int64).tolist()))
    assert got == _reference([lk[k] for k in on], [rk[k] for k in on], how)
    for k in on:  # key columns come from the left table, whole rows move together
        np.testing.assert_array_equal(g[k], lk[k][g["lid"]])
    np.testing.assert_array_equal(g["x"], lx[g["lid"]])
    hit = rid >= 0
    np.testing.assert_array_equal(g["x_right"][hit], rx[rid[hit].astype(np.int64)])
    np.testing.assert_array_equal(g["pad"][hit], pad[rid[hit].astype(np.int64)])
    assert np.isnan(g["x_right"][~hit]).all() and np.isnan(g["pad"][~hit]).all()
    if strategy == "broadcast":  # left order kept on every rank, matches in right order
        local = res.local()
        lid = local["lid"]
        assert np.all(np.diff(lid) >= 0)
        rl = np.nan_to_num(local["rid"], nan=-1)
        same = lid[1:] == lid[:-1]
        assert np.all(np.diff(rl)[same] > 0)


def test_join_output_is_not_the_input(comm):
    """A left table whose every row matches once: the output owns its columns."""
    keys = np.arange(100, dtype=np.int64)
    L = split({"k": keys, "v": np.ones(100)}, comm)
    R = split({"k": keys[::-1].copy(), "w": np.arange(100.0)}, comm, "uneven")
    for strategy in ("hash", "broadcast"):
        res = hp.join(L, R, "k", strategy=strategy)
        res.local("v")[:] = 5.0
        assert np.all(L.local("v") == 1.0)
        g = res.allgather()
        np.testing.assert_array_equal(g["w"], 99.0 - g["k"])


@pytest.mark.parametrize("build", ["right", "left", "smaller"])
def test_hash_join_kernel_two_words(build):
    """The local kernel on two-word keys, unique and repeated build keys."""
    rng = np.random.default_rng(3)
    for nl, nr, span in [(0, 7, 5), (9, 0, 5), (1, 1, 1), (4000, 300, 40),
                         (300, 5000, 2**64 - 1), (2500, 2500, 3)]:
        Kl = rng.integers(0, span, (nl, 2), dtype=np.uint64, endpoint=True)
        Kr = rng.integers(0, span, (nr, 2), dtype=np.uint64, endpoint=True)
        if nl and nr:
            Kl[::2] = Kr[rng.integers(0, nr, Kl[::2].shape[0])]
        for keep in ([False, True] if build == "right" else [False]):
            li, ri = hash_join(Kl, Kr, keep, build)
            li = np.arange(nl) if li is None else li
            got = list(zip(li.tolist(), ri.tolist()))
            want = _reference([Kl[:, 0], Kl[:, 1]], [Kr[:, 0], Kr[:, 1]],
                              "left" if keep else "inner")
            if build == "right" or (build == "smaller" and nl >= nr):
                assert got == want  # left order, matches in right order
            else:
                assert sorted(got) == want
                assert ri.tolist() == sorted(ri.tolist())  # right order
    with pytest.raises(ValueError, match="build"):
        hash_join(Kl, Kr, False, "middle")
    with pytest.raises(ValueError, match="keep_unmatched"):
        hash_join(Kl, Kr, True, "left")


@pytest.mark.parametrize("how", ["inner", "left"])
def test_join_payload_dtypes(comm, how):
    """Columns of every width move whole with their rows (compiled and numpy gathers);
    a left join fills NaN (NaT), keeping float, complex and datetime types."""
    rng = np.random.default_rng(11)
    nl, nr = 400, 150
    lk, rk = rng.integers(0, 60, nl), rng.integers(0, 80, nr)  # repeated keys both sides

    def cols(n):
        return {"b": rng.random(n) < 0.5, "h": rng.integers(-300, 300, n).astype(np.int16),
                "f": rng.random(n).astype(np.float32),
                "c": (rng.random(n) + 1j).astype(np.complex64),
                "t": rng.integers(0, 10**6, n).astype("datetime64[s]"),
                "s": rng.integers(0, 99, n).astype("S3"), "m": rng.random((n, 3))}
    lc, rc = cols(nl), cols(nr)
    if how == "left":
        del rc["s"]
    L = split({"k": lk, "lid": np.arange(nl), **lc}, comm, "uneven")
    R = split({"k": rk, "rid": np.arange(nr), **rc}, comm, "all_on_last")
    res = hp.join(L, R, "k", how=how, strategy="hash")
    g = res.allgather()
    rid = np.nan_to_num(g["rid"], nan=-1).astype(np.int64)
    assert sorted(zip(g["lid"].tolist(), rid.tolist())) == _reference([lk], [rk], how)
    hit = rid >= 0
    for name in lc:
        np.testing.assert_array_equal(g[name], lc[name][g["lid"]])
    for name, col in rc.items():
        got = g[name + "_right"]
        want = {"b": np.float64, "h": np.float64}.get(name, col.dtype) if how == "left" \
            else col.dtype
        assert got.dtype == want, name
        np.testing.assert_array_equal(got[hit], col[rid[hit]].astype(want))
        if name in "tm" or how == "inner":
            continue
        assert np.isnan(got[~hit]).all() if name != "t" else np.isnat(got[~hit]).all()
    assert how == "inner" or not hit.all()


def test_left_join_needs_fillable_right_columns(comm):
    L = split({"k": np.arange(10)}, comm)
    R = split({"k": np.arange(5), "s": np.array(list("abcde"))}, comm)
    with pytest.raises(TypeError, match="'s'"):
        hp.join(L, R, "k", how="left")
    res = hp.join(L, R, "k", how="inner")
    assert sorted(res.allgather()["s"].tolist()) == list("abcde")
