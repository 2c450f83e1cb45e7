"""hp.diff: parallel, streaming comparison, at 1, 2 and 3 ranks (references from numpy)."""

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import on_root

pytestmark = pytest.mark.mpi

ROWS = 400_003  # 3.2 MB of float64: several blocks per rank with block_bytes below


def _files(comm, shared_tmp, a, b, chunks_b=None):
    pa, pb = str(shared_tmp / "a.h5"), str(shared_tmp / "b.h5")

    def make():
        with h5py.File(pa, "w") as f:
            f["x"] = a
        with h5py.File(pb, "w") as f:
            f.create_dataset("x", data=b, chunks=chunks_b)
    on_root(comm, make)
    return pa, pb


@pytest.mark.parametrize("chunks_b", [None, (10_000,)])
def test_single_flipped_bit(comm, shared_tmp, chunks_b):
    a = np.random.default_rng(5).normal(size=ROWS)
    b = a.copy()
    where = 266_669  # inside rank 1's share at 2 and 3 ranks, not on a block edge
    b.view(np.uint64)[where] ^= np.uint64(1)  # least significant mantissa bit
    pa, pb = _files(comm, shared_tmp, a, b, chunks_b)
    r = hp.diff(pa, "/x", pb, "/x", comm=comm, block_bytes=256 << 10)
    assert not r["equal"] and r["differing"] == 1 and r["first"] == [[where]]
    assert r["compared"] == ROWS
    assert r["max_abs_diff"] == abs(a[where] - b[where])
    assert r["max_rel_diff"] == pytest.approx(abs(a[where] - b[where]) / abs(b[where]))
    assert hp.diff(pa, "/x", pb, "/x", comm=comm, rtol=1e-12)["equal"]
    assert hp.diff(pa, "/x", pa, "/x", comm=comm)["differing"] == 0


def test_many_differences_2d_nan_and_limit(comm, shared_tmp):
    a = np.arange(3000 * 4, dtype=np.float32).reshape(3000, 4)
    a[7, 1] = np.nan
    b = a.copy()  # NaN == NaN for diff
    b[[100, 1000, 2999], [3, 0, 2]] += [0.5, -2.0, 8.0]
    b[1500, 1] = np.nan
    pa, pb = _files(comm, shared_tmp, a, b)
    r = hp.diff(pa, "/x", pb, "/x", comm=comm, block_bytes=4096, limit=3)
    assert r["differing"] == 4
    assert r["first"] == [[100, 3], [1000, 0], [1500, 1]]
    assert r["max_abs_diff"] == 8.0
    r = hp.diff(pa, "/x", pb, "/x", comm=comm, atol=2.0)
    assert r["differing"] == 2 and r["first"] == [[1500, 1], [2999, 2]]


def test_shape_and_dtype_mismatch(comm, shared_tmp):
    a = np.arange(100, dtype=np.int64)
    pa, pb = _files(comm, shared_tmp, a, a[:99])
    r = hp.diff(pa, "/x", pb, "/x", comm=comm)
    assert not r["equal"] and not r["same_shape"] and r["differing"] is None
    pa, pb = _files(comm, shared_tmp, a, a.astype(np.float64))
    r = hp.diff(pa, "/x", pb, "/x", comm=comm)
    assert r["differing"] == 0 and not r["same_dtype"] and not r["equal"]
    with pytest.raises(ValueError, match="rtol"):
        hp.diff(pa, "/x", pb, "/x", comm=comm, rtol=-1)


@pytest.mark.parametrize("dtype_a,dtype_b", [("i8", "i8"), ("u8", "u8"), ("u8", "i8")])
def test_integers_beyond_2_53_compare_exactly(comm, shared_tmp, dtype_a, dtype_b):
    """IDs and nanosecond times differ by one where float64 cannot tell them apart."""
    base = np.array([2**62, 7, 1_800_000_000_000_000_000, 3], dtype=np.int64)
    a = np.resize(base, 3001).astype(dtype_a)
    b = a.astype(dtype_b)
    b[[0, 2002]] += 1  # +1 beyond 2**53 (float64 spacing there is 512 and 256)
    pa, pb = _files(comm, shared_tmp, a, b)
    r = hp.diff(pa, "/x", pb, "/x", comm=comm, block_bytes=4096)
    want = np.flatnonzero(a.astype(object) != b.astype(object))
    assert r["differing"] == len(want) == 2 and r["first"] == [[i] for i in want]
    assert r["max_abs_diff"] == 1.0 and not r["equal"]
    assert hp.diff(pa, "/x", pb, "/x", comm=comm, atol=1)["differing"] == 0
    assert hp.diff(pa, "/x", pb, "/x", comm=comm, atol=0.5)["differing"] == 2


def test_nan_against_a_number_has_no_abs_difference(comm, shared_tmp):
    a = np.array([np.nan, 1.0, np.inf, 4.0])
    b = np.array([2.0, 1.0, -np.inf, 4.0])
    pa, pb = _files(comm, shared_tmp, a, b)
    r = hp.diff(pa, "/x", pb, "/x", comm=comm)
    assert r["differing"] == 2 and r["max_abs_diff"] == np.inf  # inf against -inf
    r = hp.diff(pa, "/x", pa, "/x", comm=comm)
    assert r["differing"] == 0 and r["max_abs_diff"] is None
    c = np.array([2.0, 1.0, np.inf, 4.0])  # only NaN against 2.0 differs: no |a - b|
    _, pc = _files(comm, shared_tmp, a, c)
    r = hp.diff(pa, "/x", pc, "/x", comm=comm)
    assert r["differing"] == 1 and r["max_abs_diff"] is None
