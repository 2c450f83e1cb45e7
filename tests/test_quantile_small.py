"""hp.quantile's small-data path (gather below a threshold) equals np.quantile bit for
bit, like the radix path, just below and above the threshold (serial and 2/3 ranks)."""

import importlib

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import on_root, uneven

hq = importlib.import_module("hpcproc.compute.quantile")  # the module (hp.quantile is the function)

pytestmark = pytest.mark.mpi

QS = [0.5, 0.0, 1.0, [0.001, 0.1, 0.25, 0.75, 0.9, 0.999], 1 / 3, 1]


def _cases():
    rng = np.random.default_rng(11)
    return {
        "f8": rng.standard_normal(2001) * 1e3,
        "f4": rng.standard_normal(1500).astype("f4"),
        "f2": rng.standard_normal(999).astype("f2"),
        "ties_i8": rng.integers(-5, 6, 1201),
        "wide_i8": rng.integers(-2**62, 2**62, 1001),
        "u8": rng.integers(0, 2**63, 777, dtype=np.uint64) * np.uint64(2),
        "i1": rng.integers(-128, 128, 513).astype("i1"),
        "zeros_inf": np.array([-0.0, 0.0, -1.0, 5.0, -np.inf, np.inf, 1e-310, -1e300, -0.0]),
        "one": np.array([42.0]),
    }


def _check(x, data):
    for q in QS:
        got = hp.quantile(x, q)
        with np.errstate(invalid="ignore"):
            ref = np.quantile(data, q)
        assert np.asarray(got).dtype == np.asarray(ref).dtype, (q, got, ref)
        assert np.shape(got) == np.shape(ref)
        np.testing.assert_array_equal(got, ref)


@pytest.fixture
def threshold():
    old = hq.SMALL_ELEMENTS
    yield
    hq.SMALL_ELEMENTS = old


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("shift", [-1, 0])  # threshold just below / at the size
@pytest.mark.parametrize("empty_rank", [None, 0])
def test_around_threshold(comm, threshold, case, shift, empty_rank):
    data = _cases()[case]
    hq.SMALL_ELEMENTS = data.size + shift  # -1: radix path, 0: small path
    _check(uneven(data, comm, empty_rank), data)


def test_paths_agree_on_signed_zeros(comm, threshold):
    data = np.array([0.0, -0.0] * 50 + [1.0, -1.0])
    x = uneven(data, comm)
    q = np.linspace(0, 1, 23)
    hq.SMALL_ELEMENTS = 0
    big = hp.quantile(x, q)
    hq.SMALL_ELEMENTS = data.size
    small = hp.quantile(x, q)
    assert big.tobytes() == small.tobytes()


def test_nan_and_empty(comm, threshold):
    for limit in (0, 10**6):
        hq.SMALL_ELEMENTS = limit
        data = np.array([1.0, np.nan, 3.0, 4.0, 2.0])
        assert np.isnan(hp.quantile(uneven(data, comm), 0.5))
        assert np.isnan(hp.quantile(uneven(data, comm, empty_rank=0), [0.1, 0.9])).all()
        with pytest.raises(ValueError, match="empty"):
            hp.quantile(hp.DistArray.from_global(np.zeros(0), comm), 0.5)


def test_real_threshold(comm):
    rng = np.random.default_rng(12)
    for n in (hq.SMALL_ELEMENTS, hq.SMALL_ELEMENTS + 1):  # small path, then radix path
        data = rng.standard_normal(n)
        _check(uneven(data, comm), data)


def test_2d_distarray(comm):
    data = np.random.default_rng(13).random((300, 7))
    got = hp.quantile(uneven(data, comm), [0.2, 0.5])
    np.testing.assert_array_equal(got, np.quantile(data, [0.2, 0.5]))


def _write(path, data, chunks):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=chunks)


@pytest.mark.parametrize("chunks", [None, (97,)])
def test_small_dataset_takes_the_small_path(comm, shared_tmp, threshold, monkeypatch, chunks):
    """A small dataset read from a file is gathered too (no radix rounds), with the same
    bits as np.quantile; one element more takes the radix path, with the same bits."""
    data = np.random.default_rng(14).standard_normal(1000)
    path = str(shared_tmp / "small.h5")
    on_root(comm, _write, path, data, chunks)
    q = [0.0, 0.3, 0.5, 0.999, 1.0]
    radix = hq._select
    for limit, small in ((data.size, True), (data.size - 1, False)):
        hq.SMALL_ELEMENTS = limit
        def select(*args, _small=small):
            assert not _small, "the radix path ran for a small dataset"
            return radix(*args)
        monkeypatch.setattr(hq, "_select", select)
        got = hp.quantile((path, "/x"), q, comm=comm, block_bytes=800)
        assert got.tobytes() == np.quantile(data, q).tobytes()
