"""hp.quantile: exact equals np.quantile bit for bit; the sketch keeps its bound."""

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import first_empty, on_root

pytestmark = pytest.mark.mpi

QS = [0.5, 0.0, 1.0, [0.001, 0.1, 0.25, 0.75, 0.9, 0.999], 1 / 3, np.float64(0.7), 1]


def _cases():
    rng = np.random.default_rng(8)
    return {
        "normal_f8": rng.standard_normal(10007) * 1e3,
        "normal_f4": rng.standard_normal(3001).astype("f4"),
        "ties_i8": rng.integers(-5, 6, 4001),
        "wide_i8": rng.integers(-2**62, 2**62, 1001),
        "u2": rng.integers(0, 60000, 2001).astype("u2"),
        "signed_zero_inf": np.array([-0.0, 0.0, -1.0, 5.0, -np.inf, np.inf, 1e-310, -1e300]),
        "one": np.array([42.0]),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_exact_equals_numpy(comm, case):
    data = _cases()[case]
    x = first_empty(data, comm)
    for q in QS:
        got = hp.quantile(x, q)
        with np.errstate(invalid="ignore"):
            ref = np.quantile(data, q)
        assert np.asarray(got).dtype == np.asarray(ref).dtype, (q, got, ref)
        assert np.shape(got) == np.shape(ref)
        np.testing.assert_array_equal(got, ref)  # bit for bit (NaN == NaN)


def test_exact_nan_and_errors(comm):
    data = np.array([1.0, np.nan, 3.0, 4.0])
    assert np.isnan(hp.quantile(first_empty(data, comm), 0.5))
    assert np.isnan(hp.quantile(first_empty(data, comm), [0.1, 0.9])).all()
    x = first_empty(np.arange(10.0), comm)
    with pytest.raises(ValueError, match="range"):
        hp.quantile(x, 1.5)
    with pytest.raises(ValueError, match="method"):
        hp.quantile(x, 0.5, method="approx")
    with pytest.raises(ValueError, match="empty"):
        hp.quantile(hp.DistArray.from_global(np.zeros(0), comm), 0.5)


def test_exact_streaming_file(comm, shared_tmp):
    rng = np.random.default_rng(9)
    data = rng.standard_normal((3000, 2))
    path = shared_tmp / "q.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset("x", data=data).file.close())
    q = [0.01, 0.5, 0.99]
    for bb in (64, 1 << 20):
        got = hp.quantile(f"{path}:/x", q, comm=comm, block_bytes=bb)
        np.testing.assert_array_equal(got, np.quantile(data, q))
    with pytest.raises(ValueError, match="passes"):
        hp.quantile(hp.blocks(str(path), "/x", block_bytes=64, comm=comm), q)
    est = hp.quantile(hp.blocks(str(path), "/x", block_bytes=64, comm=comm), q,
                      method="sketch")
    _within_bound(est, np.sort(data.ravel()), q, 0.01)


def _within_bound(est, sorted_data, q, rel):
    n = sorted_data.size
    for e, qq in zip(np.atleast_1d(est), np.atleast_1d(q)):
        h = (n - 1) * qq
        lo, hi = sorted_data[int(np.floor(h))], sorted_data[min(int(np.floor(h)) + 1, n - 1)]
        exact = np.quantile(sorted_data, qq)
        bound = rel * max(abs(lo), abs(hi)) * (1 + 1e-9) + 1e-300
        assert abs(e - exact) <= bound, (qq, e, exact, bound)


@pytest.mark.parametrize("rel", [0.01, 0.001])
def test_sketch_bound_and_rank_invariance(comm, rel):
    rng = np.random.default_rng(10)
    data = np.concatenate([rng.lognormal(0, 5, 5000), -rng.lognormal(3, 2, 3000),
                           np.zeros(100), rng.integers(-10, 10, 500)])
    rng.shuffle(data)
    q = np.linspace(0, 1, 41)
    est = hp.quantile(first_empty(data, comm), q, method="sketch", rel_err=rel)
    _within_bound(est, np.sort(data), q, rel)
    # merging is exact: the rank-merged sketch equals one sketch of all the data
    local = hp.QuantileSketch(rel).add(first_empty(data, comm).local, comm=comm)
    whole = hp.QuantileSketch(rel).add(data, comm=comm)
    np.testing.assert_array_equal(local.merged(comm).counts, whole.counts)
    np.testing.assert_array_equal(local.merged(comm).quantile(q), est)


def test_exact_without_collecting_candidates(comm, monkeypatch):
    """The streaming path (candidates too many to keep in memory) gives the same results."""
    import importlib
    monkeypatch.setattr(importlib.import_module("hpcproc.compute.quantile"), "_COLLECT_BYTES", 0)
    for case in ("normal_f4", "ties_i8", "signed_zero_inf"):
        data = _cases()[case]
        q = [0.0, 0.2, 0.5, 0.97, 1.0]
        with np.errstate(invalid="ignore"):
            ref = np.quantile(data, q)
        np.testing.assert_array_equal(hp.quantile(first_empty(data, comm), q), ref)
