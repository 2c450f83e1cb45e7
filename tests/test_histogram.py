"""hp.histogram / hp.histogram2d: identical counts to numpy (serial and 2/3 ranks)."""

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import first_empty, on_root

pytestmark = pytest.mark.mpi


def _data(dtype, n=20011, seed=4):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        return rng.integers(-50, 51, n).astype(dtype)
    d = (rng.standard_normal(n) * 10).astype(dtype)
    d[:50] = np.round(d[:50])  # values on edges
    return d


@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "i4"])
@pytest.mark.parametrize("bins,rng", [(10, None), (64, None), (7, (-5, 5)), (20, (-50, 50)),
                                      (3, (0, 0))])
def test_histogram_equals_numpy(comm, dtype, bins, rng):
    data = _data(dtype)
    counts, edges = hp.histogram(first_empty(data, comm), bins, range=rng)
    ref_counts, ref_edges = np.histogram(data, bins, range=rng)
    np.testing.assert_array_equal(edges, ref_edges)
    assert edges.dtype == ref_edges.dtype
    np.testing.assert_array_equal(counts, ref_counts)


def test_histogram_edges_last_bin_closed_and_outside(comm):
    data = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.0, -0.1, 1.1, np.nan, 0.9999999999999999])
    counts, _ = hp.histogram(first_empty(data, comm), 4, range=(0, 1))
    np.testing.assert_array_equal(counts, np.histogram(data, 4, range=(0, 1))[0])
    assert counts.sum() == 7
    edges = np.array([-1.0, 0.0, 0.1, 0.5, 0.5, 3.0])  # non-uniform, one empty bin
    counts, e = hp.histogram(first_empty(data, comm), edges)
    np.testing.assert_array_equal(counts, np.histogram(data, edges)[0])
    # tricky float edges: 0.1 * k is not exact
    d = np.arange(0, 1001) / 1000.0
    for b in (10, 3, 7):
        np.testing.assert_array_equal(hp.histogram(first_empty(d, comm), b, range=(0, 1))[0],
                                      np.histogram(d, b, range=(0, 1))[0])


@pytest.mark.parametrize("kind", ["uniform", "nonuniform", "int"])
def test_histogram_and_describe_share_the_slice_kernel(comm, kind):
    """hp.histogram and hp.describe count through one slice kernel
    (``_hist_nb.count_slice``, slices of ``SLICE`` values): blocks of several slices and
    a remainder, values on the edges, uniform, non-uniform and integer data; both equal
    np.histogram."""
    from hpcproc.kernels import _describe_nb, _hist_nb

    assert _describe_nb.SLICE == _hist_nb.SLICE  # one slice: describe folds whole chunks
    data = _data("i8" if kind == "int" else "f8", n=3 * _hist_nb.SLICE + 4099, seed=9)
    bins = 23 if kind != "nonuniform" else np.array([-40.0, -3.5, -0.25, 0.0, 0.0, 2.0, 31.0])
    rng = (-30, 30) if kind != "nonuniform" else None
    ref, ref_edges = np.histogram(data, bins, range=rng)
    x = first_empty(data, comm)
    counts, edges = hp.histogram(x, bins, range=rng)
    np.testing.assert_array_equal(edges, ref_edges)
    np.testing.assert_array_equal(counts, ref)
    d = hp.describe(x, bins, range=rng)
    np.testing.assert_array_equal(d["counts"], ref)


def test_histogram_weights(comm):
    data = _data("f8")
    wts = np.random.default_rng(5).random(data.size)
    got, _ = hp.histogram(first_empty(data, comm), 16, weights=first_empty(wts, comm))
    ref, _ = np.histogram(data, 16, weights=wts)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_histogram_errors_everywhere(comm):
    nan = np.array([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="autodetected range"):
        hp.histogram(first_empty(nan, comm), 4)
    np.testing.assert_array_equal(hp.histogram(first_empty(nan, comm), 4, range=(0, 4))[0],
                                  np.histogram(nan, 4, range=(0, 4))[0])
    x = first_empty(np.arange(10.0), comm)
    with pytest.raises(ValueError, match="monotonically"):
        hp.histogram(x, [0, 2, 1])
    with pytest.raises(ValueError, match="larger than min"):
        hp.histogram(x, 4, range=(2, 1))
    with pytest.raises(ValueError, match="positive"):
        hp.histogram(x, 0)


def test_too_many_bins_is_refused_before_allocating(comm):
    """A histogram larger than the node's memory is one clear error on every rank, raised
    before anything of that size is allocated (the process would otherwise be killed)."""
    import os
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    too_many = total // 8 + 1  # the counts alone would fill the node
    x = first_empty(np.arange(10.0), comm)
    with pytest.raises(ValueError, match=f"bins={too_many:,} needs about .* use fewer bins"):
        hp.histogram(x, too_many, range=(0, 10))
    side = int(too_many ** 0.5) + 1
    with pytest.raises(ValueError, match=f"bins=\\({side:,}, {side:,}\\) needs about"):
        hp.histogram2d(x, x, bins=side, range=[(0, 10), (0, 10)])
    counts, _ = hp.histogram(x, 1000, range=(0, 10))  # a fine histogram still works
    np.testing.assert_array_equal(counts, np.histogram(np.arange(10.0), 1000, (0, 10))[0])


def test_histogram_streaming(comm, shared_tmp):
    data = _data("f8", n=5000).reshape(2500, 2)
    path = shared_tmp / "h.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset("x", data=data).file.close())
    ref = np.histogram(data, 32)
    for bb in (16, 4096):
        counts, edges = hp.histogram(f"{path}:/x", 32, comm=comm, block_bytes=bb)
        np.testing.assert_array_equal(counts, ref[0])
        np.testing.assert_array_equal(edges, ref[1])
    it = hp.blocks(str(path), "/x", block_bytes=1000, comm=comm)
    counts, _ = hp.histogram(it, 32, range=(ref[1][0], ref[1][-1]))
    np.testing.assert_array_equal(counts, ref[0])
    with pytest.raises(ValueError, match="range=None"):
        hp.histogram(hp.blocks(str(path), "/x", block_bytes=1000, comm=comm), 32)


@pytest.mark.parametrize("bins,rng", [(8, None), ((5, 9), [(-20, 20), (-3, 3)]),
                                      ([np.array([-30., 0., 1., 30.]), 4], None)])
def test_histogram2d_equals_numpy(comm, bins, rng):
    x = _data("f8", seed=6)
    y = _data("f4", seed=7)
    H, ex, ey = hp.histogram2d(first_empty(x, comm), first_empty(y, comm), bins, range=rng)
    rH, rex, rey = np.histogram2d(x, y, bins, range=rng)
    np.testing.assert_array_equal(ex, rex)
    np.testing.assert_array_equal(ey, rey)
    np.testing.assert_array_equal(H, rH)
    w = np.linspace(0, 1, x.size)
    H, _, _ = hp.histogram2d(first_empty(x, comm), first_empty(y, comm), bins, range=rng,
                             weights=first_empty(w, comm))
    np.testing.assert_allclose(H, np.histogram2d(x, y, bins, range=rng, weights=w)[0],
                               rtol=1e-12)
