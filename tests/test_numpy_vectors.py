"""numpy's own test vectors through hp.histogram, hp.histogram2d, hp.quantile, hp.stats.

The inputs are taken from the tests numpy ships (``numpy/lib/tests/test_histograms.py``,
``numpy/lib/tests/test_function_base.py`` (TestPercentile, TestQuantile, TestMedian) and
``numpy/_core/tests/test_numeric.py`` / ``test_multiarray.py`` for sums, means and
variances of extreme values); the test each one comes from is named in its id. Each case
runs as a DistArray (``DistArray.from_global``) at 1, 2 and 3 ranks and must give
numpy's own answer on the same input: counts and edges exactly, exact quantiles bit for
bit with numpy's dtype, integer sums/min/max exactly and float moments within the stats
contract (1e-12 relative). Inputs hpcproc deliberately rejects give a clear error.
"""

import math
import warnings

import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DtypeError

pytestmark = pytest.mark.mpi

R = np.random.default_rng(20)
EPS64, EPS32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps


def _np(fn, *args, **kwargs):
    with warnings.catch_warnings():  # numpy warns for bool input and NaN comparisons
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _dist(data, comm):
    return hp.DistArray.from_global(np.asarray(data), comm)


# hp.histogram ------------------------------------------------------------------------

def _signed_overflow(dtype):  # test_histograms.py do_signed_overflow_bounds
    e = 8 * np.dtype(dtype).itemsize - 1
    return np.array([-2**e + 4, 2**e - 4], dtype=dtype)


ARR9 = np.array([0., 0., 0., 1., 2., 3., 3., 4., 5.])
ONE_NAN, ALL_NAN = np.array([0, 1, np.nan]), np.array([np.nan, np.nan])
HIST = {  # id: (data, bins, range, weights)
    "simple_rand": (R.random(100), 10, None, None),
    "simple_linspace": (np.linspace(0, 10, 100), 10, None, None),
    "one_bin_edges": (np.array([1, 2, 3, 4]), [1, 2], None, None),
    "one_bin_int": (np.array([1, 2]), 1, None, None),
    "outliers_lower": (np.arange(10) + .5, 10, [0, 9], None),
    "outliers_upper": (np.arange(10) + .5, 10, [1, 10], None),
    "outliers_weighted": (np.arange(10) + .5, 8, [1, 9], np.arange(10) + .5),
    "bool_conversion": (np.array([True, True, False]), 10, None, None),
    "uint8_reference": (np.array([1, 1, 0], dtype=np.uint8), 10, None, None),
    "empty_edges": (np.array([]), [0, 1], None, None),
    "empty_range": (np.array([]), 3, (0, 1), None),
    "empty_default": (np.array([]), 10, None, None),
    "one_element": (np.array([7.5]), 10, None, None),
    "finite_range": (np.linspace(0.0, 1.0, num=100), 10, [0.25, 0.75], None),
    "bin_edge_cases": (np.array([337, 404, 739, 806, 1007, 1811, 2012]), 8296, (2, 2280), None),
    "last_bin_inclusive": (ARR9, 30, (-0.5, 5), None),
    "some_nan_edges": (ONE_NAN, [0, 1], None, None),
    "all_nan_edges": (ALL_NAN, [0, 1], None, None),
    "some_nan_range": (ONE_NAN, 10, (0, 1), None),
    "all_nan_range": (ALL_NAN, 10, (0, 1), None),
    "weights_uniform": (R.random(100), 10, None, np.ones(100) * 5),
    "weights_arange_bins": (np.linspace(0, 10, 10), np.arange(11), None,
                            np.concatenate((np.zeros(5), np.ones(5)))),
    "weights_integer": (np.array([1, 2, 2, 4]), 4, None, np.array([4, 3, 2, 1])),
    "weights_nonuniform": (np.arange(9), [0, 1, 3, 6, 10], None,
                           np.array([2, 1, 1, 1, 1, 1, 1, 1, 1])),
    "gh_23110_big_endian": (np.array([-0.9e-308], dtype=">f8"), 2, (-1e-308, -2e-313), None),
    "rightmost_edge_below": (np.array([0.9999999995]), [0., 0.5, 1.0], None, None),
    "rightmost_edge_on": (np.array([1.0]), [0., 0.5, 1.0], None, None),
    "rightmost_edge_above": (np.array([1.0000000001]), [0., 0.5, 1.0], None, None),
    "equal_edges": (np.array([0, 1, 2]), np.array([0, 2, 2]), None, None),
    "inf_edges": (np.arange(6), [-np.inf, 2, 10], None, None),
    "large_integer_edges": (np.array([2**60 - 1, 2**60, 2**60 + 1], np.int64),
                            2**60 + np.array([-1, 0, 1, 2], np.int64), None, None),
    "identical_samples": (np.zeros(10, int), 2, None, None),
}
HIST.update({f"signed_overflow_{np.dtype(t).name}": (_signed_overflow(t), 2, None, None)
             for t in (np.int8, np.int16, np.int32, np.int64)})
HIST.update({f"signed_overflow_{np.dtype(t).name}_range": (_signed_overflow(t), 3,
                                                           (-100, 100), None)
             for t in (np.int8, np.int16)})
for _small, _large in [(np.half, np.single), (np.half, np.double), (np.single, np.double)]:
    _eps = np.finfo(_large).eps  # do_precision_lower_bound / do_precision_upper_bound
    HIST[f"precision_lower_{_small.__name__}_{_large.__name__}"] = (
        np.array([1.0], _small), 1, np.array([1.0 + _eps, 2.0], _large), None)
    HIST[f"precision_upper_{_small.__name__}_{_large.__name__}"] = (
        np.array([1.0], _small), 1, np.array([0.0, 1.0 - _eps], _large), None)


@pytest.mark.parametrize("case", list(HIST))
def test_histogram_vectors(comm, case):
    data, bins, rng, w = HIST[case]
    weights = None if w is None else _dist(w, comm)
    counts, edges = hp.histogram(_dist(data, comm), bins, range=rng, weights=weights)
    ref_counts, ref_edges = _np(np.histogram, data, bins, range=rng, weights=w)
    np.testing.assert_array_equal(edges, ref_edges)
    assert edges.dtype == ref_edges.dtype.newbyteorder("=")
    if w is None:
        np.testing.assert_array_equal(counts, ref_counts)
    else:  # float64 sums of weights, numpy's up to summation order
        np.testing.assert_allclose(counts, ref_counts, rtol=1e-13, atol=0)


HIST2D = {  # id: (x, y, bins, range)
    "f32_rounding": (np.array([276.318359, -69.593948, 21.329449], dtype=np.float32),
                     np.array([5005.689453, 4481.327637, 6010.369629], dtype=np.float32),
                     100, None),
    "rightmost_edge": (np.array([0.9999999995, 1.0, 1.0000000001, 0.5]),
                       np.array([1.0, 0.25, 1.0, 1.0]), [[0., 0.5, 1.0], [0., 0.5, 1.0]], None),
    "equal_edges": (np.array([0, 1, 2]), np.array([0, 1, 2]), [np.array([0, 2, 2]), 1], None),
    "inf_edges": (np.arange(0, 6, 2), np.arange(1, 6, 2), [3, [-np.inf, 2, 10]], None),
    "large_integers": (np.array([0], np.int64), np.array([2**60], np.int64),
                       [np.array([-1, 1], np.int64), 2**60 + np.array([-1, 1], np.int64)],
                       None),
    "identical_samples": (np.zeros(10, int), np.zeros(10, int), 2, None),
    "finite_range": (R.random(100), R.random(100), 10, [[0.0, 1.0], [0.25, 0.75]]),
}


@pytest.mark.parametrize("case", list(HIST2D))
def test_histogram2d_vectors(comm, case):
    x, y, bins, rng = HIST2D[case]
    h, ex, ey = hp.histogram2d(_dist(x, comm), _dist(y, comm), bins, range=rng)
    rh, rx, ry = _np(np.histogram2d, x, y, bins, range=rng)
    np.testing.assert_array_equal(h, rh)
    np.testing.assert_array_equal(ex, rx)
    np.testing.assert_array_equal(ey, ry)


VALS = np.linspace(0.0, 1.0, num=100)
HIST_ERRORS = {  # id: (data, kwargs, numpy's exception, hpcproc's message)
    "bins_float": (VALS, {"bins": 2.4}, TypeError, "must be an integer"),
    "bins_zero": (np.array([1, 2]), {"bins": 0}, ValueError, "must be positive"),
    "range_nan": (VALS, {"range": [np.nan, 0.75]}, ValueError, "not finite"),
    "range_inf": (VALS, {"range": [0.25, np.inf]}, ValueError, "not finite"),
    "range_reversed": (VALS, {"range": [0.1, 0.01]}, ValueError, "max must be larger"),
    "bins_2d": (VALS, {"bins": np.array([[0, 0.5], [0.6, 1.0]])}, ValueError, "must be 1d"),
    "bins_not_monotonic_uint64": (np.array([2]), {"bins": np.array([1, 3, 1], "uint64")},
                                  ValueError, "monotonically"),
    "auto_range_nan": (ONE_NAN, {"bins": 10}, ValueError, "not finite"),
    "small_value_range": (np.array([1, 1 + 2e-16] * 10), {"bins": 10}, ValueError,
                          "Too many bins"),
    # hpcproc deliberately supports no bin estimators (a second pass over the data each)
    "bins_auto": (ONE_NAN, {"bins": "auto", "range": (0, 1)}, None, "only an integer"),
    "bins_fd": (R.random(100), {"bins": "fd"}, None, "only an integer"),
}


@pytest.mark.parametrize("case", list(HIST_ERRORS))
def test_histogram_vector_errors(comm, case):
    data, kwargs, np_exc, message = HIST_ERRORS[case]
    if np_exc is not None:
        with pytest.raises(np_exc):
            _np(np.histogram, data, **kwargs)
    with pytest.raises((TypeError, ValueError), match=message) as info:
        _np(hp.histogram, _dist(data, comm), **kwargs)
    assert np_exc is None or isinstance(info.value, np_exc)


# hp.quantile (numpy's default method, "linear", is the one hpcproc computes) -----------

H_F = np.asarray([15.0, 20.0, 35.0, 40.0, 50.0])
QUANT = {  # id: (data, q)
    "max_ulp_gh_20331": (np.array([0.0, 0.2, 0.4]), 0.45),
    "basic_0": (np.arange(8) * 0.5, 0),
    "basic_1": (np.arange(8) * 0.5, 1),
    "basic_half": (np.arange(8) * 0.5, 0.5),
    "q_zero_one_gh_24710": (np.array([10, 11, 12]), [0, 1]),
    "monotonic_gh_14685": (np.array([0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 1, 1, 9, 9, 9, 8, 8, 7])
                           * 0.1, np.linspace(0, 1, 101)),
    "monotonic_divisible": (np.array([0., 1., 2., 3.]), np.linspace(0, 1, 101)),
    "scalar_nan": (np.array([10., np.nan, 4., 3., 2., 1.]), 0.5),
    "float16_gh_29003": (np.arange(50_001, dtype=np.float16), .999),
    "weak_promotion_f32_half": (np.array([1, 2, 3, 4, 5], dtype=np.float32), 0.5),
    "weak_promotion_f32_one": (np.array([1, 2, 3, 4, 5], dtype=np.float32), 1),
    "strong_promotion_f32": (np.array([1, 2, 3, 4, 5], dtype=np.float32), np.float64(0.3)),
    "strong_promotion_i8": (np.array([1, 2, 3, 4, 5], dtype=np.int8), 0.3),
    "extrapolation_max": (R.random(5), 1.0),
    "extrapolation_min": (R.random(5), 0.0),
    "sequence": (np.arange(8) * 0.5, [0, 0.5, 1]),
    "nan_behavior": (np.where(np.arange(24) == 2, np.nan, np.arange(24.0)), [0.003, 0.006]),
    "linear_nan_1d_f2": (np.asarray([15.0, np.nan, 35.0, 40.0, 50.0], np.float16), 0.4),
    "linear_nan_1d_f4": (np.asarray([15.0, np.nan, 35.0, 40.0, 50.0], np.float32), 0.4),
    "one_element": (np.array([42.0]), [0, 0.3, 1]),
    "median_odd": (np.arange(9.0) + 1, 0.5),
    "median_even": (np.arange(10.0), 0.5),
    "big_endian_gh_issue13": (np.arange(3, dtype=">f4"), 1.0),
    "uint64_beyond_2_53": (np.array([2**64 - 1, 2**53 + 1, 2**63, 3], np.uint64), [0.5, 1]),
    "int64_extremes": (np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
                       [0, 0.5, 1]),
    "signed_zeros_inf": (np.array([-0.0, 0.0, -np.inf, np.inf, 1e-310]), [0, 0.25, 0.5, 1]),
}
QUANT.update({f"linear_interpolation_{np.dtype(t).name}": (H_F.astype(t), 0.4)
              for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                        np.int64, np.uint64, np.float16, np.float32, np.float64)})
QUANT.update({f"midpoint_data_{np.dtype(t).name}": (np.arange(11, dtype=t), [0.5, 0.51])
              for t in (np.int8, np.uint32, np.float16, np.float64)})


@pytest.mark.parametrize("case", list(QUANT))
def test_quantile_vectors(comm, case):
    data, q = QUANT[case]
    got, ref = hp.quantile(_dist(data, comm), q), _np(np.quantile, data, q)
    np.testing.assert_array_equal(got, ref)  # bit for bit (NaN == NaN here)
    assert np.asarray(got).dtype == np.asarray(ref).dtype.newbyteorder("=")
    assert np.ndim(got) == np.ndim(ref)


QUANT_ERRORS = {  # id: (data, q, numpy's exception or None, hpcproc's exception, message)
    "q_nan_gh_18830": (np.array([1, 2, 3, 4.0]), np.nan, ValueError, ValueError, "range"),
    "q_above_one": (np.arange(5.0), 1.5, ValueError, ValueError, "range"),
    "q_negative": (np.arange(5.0), -0.1, ValueError, ValueError, "range"),
    "complex_gh_22652": (np.array([0.5 + 3.0j, 2.1 + 0.5j, 1.6 + 2.3j]), 0.5, TypeError,
                         DtypeError, "complex"),
    "bool_data": (np.array([False, True, True]), 0.5, TypeError, DtypeError, "boolean"),
    "empty": (np.array([], dtype=float), 0.5, IndexError, ValueError, "empty"),
    "longdouble": (np.arange(5, dtype=np.longdouble), 0.5, None, DtypeError, "long double"),
}


@pytest.mark.parametrize("case", list(QUANT_ERRORS))
def test_quantile_vector_errors(comm, case):
    data, q, np_exc, exc, message = QUANT_ERRORS[case]
    if case == "longdouble" and np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("long double is float64 here")
    if np_exc is not None:
        with pytest.raises(np_exc):
            _np(np.quantile, data, q)
    with pytest.raises(exc, match=message):
        hp.quantile(_dist(data, comm), q)


# hp.stats ------------------------------------------------------------------------------

I64 = np.iinfo(np.int64)
STATS = {
    "int8_sum_promotes": np.array([127, 127, 127, -128], np.int8),
    "uint8_sum_promotes": np.full(300, 255, np.uint8),
    "int64_wraps_like_numpy": np.array([I64.max, 1, I64.max], np.int64),
    "int64_extremes": np.array([I64.min, I64.max, 0, -1]),
    "uint64_beyond_2_63": np.array([2**64 - 1, 2**63, 1], np.uint64),
    "uint64_wraps": np.array([2**64 - 1, 2], np.uint64),
    "bool": np.array([True, False, True, True]),
    "mean_float32_precision": np.full(100_001, 0.1, np.float32),
    "var_offset_1e9": 1e9 + R.random(1000),
    "signed_zeros": np.array([-0.0, 0.0, -0.0]),
    "inf_only": np.array([np.inf, 1.0]),
    "inf_minus_inf": np.array([np.inf, -np.inf, 1.0]),
    "one_element": np.array([3.5]),
    "tiny_subnormal": np.array([5e-324, 1e-310, 0.0]),
    "float16_max": np.array([65504, 65504, -65504, 1], np.float16),
    "big_endian_f8": np.arange(5, dtype=">f8"),
    "big_endian_i8": np.arange(-3, 5, dtype=">i8"),
}


@pytest.mark.parametrize("case", list(STATS))
def test_stats_vectors(comm, case):
    data = STATS[case]
    s = hp.stats(_dist(data, comm))
    f = data.astype(np.float64)
    assert s["count"] == data.size and s["nan_count"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in numpy's var
        ref = {"mean": np.mean(f), "var": np.var(f), "min": np.min(data), "max": np.max(data),
               "sum": np.sum(f)}
    if data.dtype.kind in "iub":
        assert s["sum"] == np.sum(data)  # numpy's int64/uint64 sum, exactly (wrapping)
        assert type(s["sum"]) is int
    else:
        assert s["sum"] == pytest.approx(ref["sum"], rel=1e-12, nan_ok=True)
    assert s["min"] == ref["min"] and s["max"] == ref["max"]
    # "about 1e-12" (stats' docstring) for well-conditioned data. For data with a large
    # offset (var_offset_1e9: kappa = |mean| / std = 3e9) the merge of block and rank
    # states (Chan, Golub & LeVeque's pairwise update) has the error bound
    # kappa * log2(n) * eps of that algorithm (measured: 1e-12 at 1 rank, 3e-9 at 2).
    with np.errstate(all="ignore"):
        kappa = float(abs(ref["mean"]) / np.sqrt(ref["var"])) if ref["var"] > 0 else 0.0
    tol = {"mean": 2e-12, "var": max(2e-12, kappa * math.log2(data.size) * EPS64)}
    for key in ("mean", "var"):
        if math.isfinite(ref[key]):
            assert math.isclose(s[key], ref[key], rel_tol=tol[key], abs_tol=1e-300), key
        else:
            assert s[key] == ref[key] or (math.isnan(s[key]) and math.isnan(ref[key])), key


def test_stats_empty_and_all_nan(comm):
    s = hp.stats(_dist(np.array([], dtype=np.float64), comm))
    assert s["count"] == 0 and s["sum"] == 0 and math.isnan(s["mean"])
    s = hp.stats(_dist(np.array([np.nan, np.nan]), comm), skipna=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert math.isnan(np.nanmean([np.nan, np.nan])) and math.isnan(s["mean"])
    assert s["count"] == 0 and s["nan_count"] == 2
