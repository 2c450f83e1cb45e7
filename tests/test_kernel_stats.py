"""hp.stats with the Numba kernels against numpy (serial and 2/3 ranks)."""

import math

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import on_root, uneven

pytestmark = pytest.mark.mpi


def _ref(data, axis=None, ddof=0, skipna=False):
    f = data.astype(np.float64)
    with np.errstate(all="ignore"):
        if skipna:
            return {"count": np.sum(~np.isnan(f), axis=axis), "sum": np.nansum(f, axis=axis),
                    "mean": np.nanmean(f, axis=axis), "var": np.nanvar(f, axis=axis, ddof=ddof),
                    "min": np.nanmin(f, axis=axis), "max": np.nanmax(f, axis=axis)}
        return {"count": data.size if axis is None else data.shape[0],
                "sum": data.sum(axis=axis, dtype=None if data.dtype.kind == "i" else np.float64),
                "mean": data.mean(axis=axis, dtype=np.float64),
                "var": data.var(axis=axis, ddof=ddof, dtype=np.float64),
                "min": data.min(axis=axis), "max": data.max(axis=axis)}


def _agree(got, ref, data, exact_sum=False):
    scale = np.sum(np.abs(data[np.isfinite(data)].astype(np.float64)))  # sum's condition
    np.testing.assert_array_equal(got["count"], ref["count"])
    if exact_sum:
        np.testing.assert_array_equal(got["sum"], ref["sum"])
    else:
        np.testing.assert_allclose(got["sum"], ref["sum"], rtol=1e-12, atol=1e-15 * scale)
    np.testing.assert_allclose(got["mean"], ref["mean"], rtol=1e-12,
                               atol=1e-15 * scale / max(1, data.size))
    np.testing.assert_allclose(got["var"], ref["var"], rtol=1e-12)
    np.testing.assert_allclose(got["std"], np.sqrt(ref["var"]), rtol=1e-12)
    np.testing.assert_array_equal(got["min"], ref["min"])
    np.testing.assert_array_equal(got["max"], ref["max"])


@pytest.mark.parametrize("dtype", ["f8", "f4", "i8"])
@pytest.mark.parametrize("empty_rank", [None, 0])
def test_stats_all_elements(comm, dtype, empty_rank):
    rng = np.random.default_rng(1)
    if dtype == "i8":
        data = rng.integers(-10**9, 10**9, 30001)
    else:
        data = (rng.standard_normal(30001) * 3 + 1e3).astype(dtype)
    got = hp.stats(uneven(data, comm, empty_rank), ddof=1)
    _agree(got, _ref(data, ddof=1), data, exact_sum=dtype == "i8")
    assert got["nan_count"] == 0
    if dtype == "i8":
        assert isinstance(got["sum"], int) and isinstance(got["min"], int)


def test_stats_axis0_columns(comm):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((5003, 2, 3)) * np.arange(1, 7).reshape(2, 3) + 10
    got = hp.stats(uneven(data, comm), axis=0)
    assert got["mean"].shape == (2, 3)
    _agree(got, _ref(data, axis=0), data)


def test_stats_nan_inf(comm):
    data = np.array([1.0, 2.0, np.nan, 4.0, 5.0, np.nan, 7.0, 8.0, 9.5])
    x = uneven(data, comm)
    with np.errstate(all="ignore"):
        got = hp.stats(x)
        assert got["count"] == 9 and got["nan_count"] == 2
        assert all(math.isnan(got[k]) for k in ("sum", "mean", "var", "std", "min", "max"))
        got = hp.stats(x, skipna=True)
        assert got["nan_count"] == 2
        _agree(got, _ref(data, skipna=True), data)
        inf = np.array([1.0, np.inf, 3.0, 2.0])
        got = hp.stats(uneven(inf, comm))
        assert got["sum"] == np.inf and got["mean"] == np.inf and math.isnan(got["var"])
        assert got["max"] == np.inf and got["min"] == 1.0
        both = np.array([-np.inf, 1.0, np.inf])
        assert math.isnan(hp.stats(uneven(both, comm))["sum"])
        cols = np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]])
        got = hp.stats(uneven(cols, comm), axis=0)
        assert got["mean"][0] == cols[:, 0].mean() and np.isnan(got["mean"][1])
        np.testing.assert_array_equal(got["nan_count"], [0, 1])


def test_stats_empty(comm):
    got = hp.stats(hp.DistArray.from_global(np.zeros(0), comm))
    assert got["count"] == 0 and got["sum"] == 0.0
    assert math.isnan(got["mean"]) and math.isnan(got["min"])


@pytest.mark.parametrize("block_bytes", [8, 1000, 1 << 20])
def test_stats_streaming_any_block_size(comm, shared_tmp, block_bytes):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((4000, 2)) * 1e-3 + 7.0
    path = shared_tmp / "s.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset("x", data=data).file.close())
    for src in (f"{path}:/x", hp.blocks(str(path), "/x", block_bytes=block_bytes, comm=comm)):
        got = hp.stats(src, comm=comm, block_bytes=block_bytes)
        _agree(got, _ref(data), data)
    got = hp.stats_file(str(path), "/x", comm=comm, block_bytes=block_bytes, axis=0)
    _agree(got, _ref(data, axis=0), data)
    assert got["bytes"] == data.nbytes


def test_stats_bad_arguments_everywhere(comm):
    x = hp.DistArray.from_global(np.arange(10.0), comm)
    with pytest.raises(ValueError, match="axis"):
        hp.stats(x, axis=1)
    with pytest.raises(ValueError, match="ddof"):
        hp.stats(x, ddof=-1)
    with pytest.raises(TypeError, match="DistArray"):
        hp.stats([1, 2, 3])
    with pytest.raises(hp.DtypeError):
        hp.stats(hp.DistArray.from_global(np.array(["a", "b"]), comm))
    with pytest.raises(hp.DtypeError, match="complex"):
        hp.stats(hp.DistArray.from_global(np.ones(4, complex), comm))
