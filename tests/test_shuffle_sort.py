"""``hp.sort``: distributed sample sort against numpy / Python references (1, 2, 3 ranks)."""

import numpy as np
import pytest
from _shuffle_data import LAYOUTS, keys, split

import hpcproc as hp

pytestmark = pytest.mark.mpi


def _reference_order(cols, ascending):
    """Stable order by several columns, NaN last in either direction (Python's sort)."""
    n = len(cols[0])

    def key(i):
        out = []
        for c, asc in zip(cols, ascending):
            v = c[i].item()
            if v != v:
                out.append((1, 0))
            else:
                out.append((0, v if asc else -v))
        return tuple(out)

    return np.array(sorted(range(n), key=key), dtype=np.int64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["uniform", "wide", "zipf", "equal", "float_nan"])
def test_sort_one_key(comm, kind, layout):
    n = 2000
    k = keys(kind, n, seed=3)
    t = split({"k": k, "id": np.arange(n)}, comm, layout)
    s = hp.sort(t, "k")
    g = s.allgather()
    order = _reference_order([k], [True])
    np.testing.assert_array_equal(g["id"], order)        # stable: ties in input order
    np.testing.assert_array_equal(g["k"], k[order])
    assert s.meta["rank_rows"] == comm.allgather(s.local_rows)
    # at most 3600 samples per rank: exact splitters, so the result is balanced
    counts = np.array(s.meta["rank_rows"])
    assert counts.max() - counts.min() <= 1


def test_sort_several_keys_mixed_directions(comm):
    n = 1500
    rng = np.random.default_rng(5)
    a = rng.integers(0, 5, n).astype(np.int32)
    b = np.round(rng.normal(size=n), 1)
    b[::17] = np.nan
    c = rng.integers(0, 3, n).astype(np.uint8)
    t = split({"a": a, "b": b, "c": c, "id": np.arange(n)}, comm, "uneven")
    for asc in ([True, False, True], [False, True, False]):
        s = hp.sort(t, ["a", "b", "c"], ascending=asc)
        np.testing.assert_array_equal(s.allgather()["id"], _reference_order([a, b, c], asc))


def test_sort_descending_and_numpy_local_sort(comm):
    n = 1200
    k = keys("float_nan", n, seed=9)
    t = split({"k": k, "id": np.arange(n)}, comm)
    ref = _reference_order([k], [False])
    for how in ("radix", "numpy"):
        s = hp.sort(t, "k", ascending=False, local_sort=how)
        np.testing.assert_array_equal(s.allgather()["id"], ref)


@pytest.mark.parametrize("kind", ["uniform", "zipf", "equal"])
def test_sort_balanced_by_sampling(comm, kind):
    # more rows than samples: splitters are estimated; still within 10 % of N/P, and
    # heavy (Zipf, all-equal) keys are split across ranks
    n = 12000 * comm.size
    k = keys(kind, n, seed=11)
    t = split({"k": k}, comm, "uneven")
    s = hp.sort(t, "k")
    counts = np.array(s.meta["rank_rows"])
    assert counts.sum() == n
    assert np.all(np.abs(counts - n / comm.size) <= 0.1 * n / comm.size), counts
    np.testing.assert_array_equal(s.allgather()["k"], np.sort(k))


def test_sort_forced_large_count_path(comm):
    n = 3000
    k = keys("wide", n, seed=2)
    t = split({"k": k, "v": np.arange(n) * 1.5}, comm, "uneven")
    s = hp.sort(t, "k", max_message=256, memory_budget=1)
    assert s.meta["rounds"] > 1 or comm.size == 1
    g = s.allgather()
    o = np.argsort(k, kind="stable")
    np.testing.assert_array_equal(g["k"], k[o])
    np.testing.assert_array_equal(g["v"], np.arange(n)[o] * 1.5)


@pytest.mark.parametrize("layout", ["even", "all_on_last"])
def test_sort_distarray(comm, layout):
    n = 999
    x = keys("float_nan", n, seed=4)
    t = split({"x": x}, comm, layout)
    s = hp.sort(t["x"])
    assert isinstance(s, hp.DistArray)
    np.testing.assert_array_equal(s.allgather(), np.sort(x))
    assert s.global_shape == (n,)
    e = hp.sort(hp.DistArray.from_global(np.zeros(0), comm))
    assert e.global_shape == (0,)


def test_sort_bad_arguments(comm):
    t = split({"k": np.arange(10), "v": np.zeros((10, 2))}, comm)
    with pytest.raises(TypeError, match="one-dimensional"):
        hp.sort(t, "v")
    with pytest.raises(ValueError, match="ascending"):
        hp.sort(t, "k", ascending=[True, False])
    with pytest.raises(TypeError, match="must be a DistTable"):
        hp.sort([1, 2, 3], "k")


@pytest.mark.parametrize("dist", ["wide", "narrow", "dups", "skew", "equal", "tiny"])
@pytest.mark.parametrize("dtype", ["i8", "u8", "i4", "f8"])
def test_local_radix_sort_against_numpy(dist, dtype):
    """The compiled MSD radix sort (both its paths: the raw 64-bit integer key and encoded
    keys) against numpy's stable sort, with every rank doing the same local work."""
    from hpcproc.shuffles._encode import encode_keys
    from hpcproc.shuffles._localsort import argsort_keys
    from hpcproc.shuffles.samplesort import _local_sort

    rng = np.random.default_rng(3)
    n = 5 if dist == "tiny" else 200_000
    k = {"wide": lambda: rng.integers(-2**62, 2**62, n), "narrow": lambda: rng.integers(0, 3000, n),
         "dups": lambda: rng.integers(0, 5, n), "equal": lambda: np.full(n, 7),
         "skew": lambda: np.where(rng.random(n) < 0.9, 2**40, rng.integers(0, 2**41, n)),
         "tiny": lambda: rng.integers(0, 3, n)}[dist]().astype(dtype)
    cols = {"k": k, "row": np.arange(n), "w": rng.random((n, 3)).astype(np.float32)}
    for asc in (True, False):
        ref = np.argsort(-k if not asc and dtype[0] != "u" else k, kind="stable") if asc or \
            dtype[0] != "u" else np.argsort(np.iinfo(k.dtype).max - k, kind="stable")
        np.testing.assert_array_equal(argsort_keys(encode_keys([k], asc)), ref)
        out = _local_sort({c: v.copy() for c, v in cols.items()}, ["k"], [asc], "radix",
                          owned=True)
        np.testing.assert_array_equal(out["row"], ref)
        np.testing.assert_array_equal(out["k"], k[ref])
        np.testing.assert_array_equal(out["w"], cols["w"][ref])
        assert out["k"].dtype == k.dtype
