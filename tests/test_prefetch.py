"""The dense group-by's prefetching kernels against numpy, ahead-of-time built and compiled
by Numba, at every length around the prefetch distance (serial: local kernels only; the
group-by itself is checked at 1, 2, 3 ranks in test_shuffle_groupby.py)."""

import subprocess
import sys

import numpy as np
import pytest

from hpcproc.kernels._prefetch import prefetch
from hpcproc.shuffles import _reduce
from hpcproc.shuffles._reduce import (
    AHEAD,
    PREFETCH_BYTES,
    dense_count,
    dense_pairs,
    dense_states,
    prefetch_stop,
)
from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY

LENGTHS = [0, 1, AHEAD - 1, AHEAD, AHEAD + 1, 2 * AHEAD + 3, 5000]
#: group counts whose states are below and above the prefetch threshold (int32 counts)
SPANS = [300, PREFETCH_BYTES // 4]


def _runners(kernel):
    """The kernel as called (ahead-of-time build when the install has one) and its Numba
    dispatcher (compiled from the same source)."""
    return [("called", kernel), ("numba", kernel.dispatcher)]


def _keys(n, seed, dtype=np.int64, lo=-3, span=300):
    rng = np.random.default_rng(seed)
    k = lo + rng.integers(0, span, n)
    k[: n // 3] = lo + span - 1  # a hot key: runs of one state line, as Zipf keys have
    rng.shuffle(k)
    return k.astype(dtype)


@pytest.mark.parametrize("span", SPANS)
@pytest.mark.parametrize("n", LENGTHS)
def test_dense_count_is_bincount(n, span):
    k = _keys(n, n, span=span)
    want = np.bincount(k + 3, minlength=span)
    for how, fn in _runners(dense_count):
        size = np.zeros(span, np.int32)
        fn(k, -3, size)
        np.testing.assert_array_equal(size, want, err_msg=how)


@pytest.mark.parametrize("span", SPANS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("minmax", [False, True])
def test_dense_states_are_numpy_s(n, minmax, span):
    k = _keys(n, 100 + n, span=span)
    rng = np.random.default_rng(n)
    v = rng.normal(size=n)
    v[rng.random(n) < 0.1] = np.nan
    g, ok = k + 3, ~np.isnan(v)
    for how, fn in _runners(dense_states):
        cnt, nan = np.zeros(span, np.int32), np.zeros(span, np.int64)
        sm = np.zeros(span)
        mn, mx = np.full(span, np.inf), np.full(span, -np.inf)
        e = sm[:0]
        nans = fn(k, -3, v, cnt, sm, nan, mn if minmax else e, mx if minmax else e, True,
                  minmax)
        assert nans == int((~ok).sum()), how
        np.testing.assert_array_equal(cnt, np.bincount(g, minlength=span), err_msg=how)
        np.testing.assert_array_equal(nan, np.bincount(g[~ok], minlength=span), err_msg=how)
        # the same additions in the same order as numpy's unbuffered add: equal bits
        want = np.zeros(span)
        np.add.at(want, g[ok], v[ok])
        np.testing.assert_array_equal(sm, want, err_msg=how)
        if minmax:
            lo, hi = np.full(span, np.inf), np.full(span, -np.inf)
            np.minimum.at(lo, g[ok], v[ok])
            np.maximum.at(hi, g[ok], v[ok])
            np.testing.assert_array_equal(mn, lo, err_msg=how)
            np.testing.assert_array_equal(mx, hi, err_msg=how)


@pytest.mark.parametrize("span", SPANS + [PREFETCH_BYTES // 16 - 1, PREFETCH_BYTES // 16])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("acc", [np.float64, np.int64])
def test_dense_pairs_are_numpy_s(n, span, acc):
    """Sums and rows side by side in one array (``st[2g]``, ``st[2g + 1]``), NaNs apart:
    numpy's sums to the bit (the same additions in the same order), counts and NaN counts,
    float and integer sums (bool values as integers), states below and above the
    prefetch threshold."""
    k = _keys(n, 200 + n, span=span)
    rng = np.random.default_rng(n)
    g = k + 3
    if acc is np.float64:
        v = rng.normal(size=n)
        v[rng.random(n) < 0.1] = np.nan
        ok = ~np.isnan(v)
        values = [v, v.astype(np.float32)]
    else:
        v = rng.integers(-(1 << 40), 1 << 40, n)
        ok = np.ones(n, bool)
        values = [v, v.astype(np.int32), rng.random(n) < 0.5]
    for x in values:
        for how, fn in _runners(dense_pairs):
            st, nan = np.zeros(2 * span, acc), np.zeros(span, np.int64)
            nans = fn(k, -3, x, st, nan)
            assert nans == int((~ok).sum()), how
            np.testing.assert_array_equal(st[1::2], np.bincount(g, minlength=span),
                                          err_msg=how)
            np.testing.assert_array_equal(nan, np.bincount(g[~ok], minlength=span),
                                          err_msg=how)
            want = np.zeros(span, acc)
            np.add.at(want, g[ok], x[ok].astype(acc))
            np.testing.assert_array_equal(st[0::2], want, err_msg=how)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.float64,
                                   np.complex128])
def test_prefetch_threshold_is_the_state_s_bytes_whatever_its_dtype(dtype):
    """The dense kernels prefetch state lines when the state array has PREFETCH_BYTES or
    more, counted in bytes (the kernels used to count 4 bytes per element of the row
    counts and 8 per sum, right only for int32 counts and 8-byte sums)."""
    item = np.dtype(dtype).itemsize
    for how, fn in _runners(prefetch_stop):
        for n in (0, AHEAD, 1000):
            assert fn(n, np.zeros(PREFETCH_BYTES // item - 1, dtype)) == 0, how
            assert fn(n, np.zeros(PREFETCH_BYTES // item, dtype)) == n - AHEAD, how
            assert fn(n, np.zeros(0, dtype)) == 0, how


@pytest.mark.parametrize("base", [(1 << 63) - 5, (1 << 63) + 5])
def test_uint64_keys_that_wrap_past_the_low_bound(base):
    """A uint64 key range across or above 2**63 is passed as int64 bits (the low bound
    too, as the group-by passes it): key - lo wraps into the state, and the row
    prefetched ahead is computed the same way."""
    span = PREFETCH_BYTES // 4  # states large enough to be prefetched
    k = np.uint64(base) + _keys(3 * AHEAD + 7, 7, np.int64, lo=0, span=span).astype(np.uint64)
    lo = base - (1 << 64) if base >= 1 << 63 else base
    want = np.bincount((k - np.uint64(base)).astype(np.int64), minlength=span)
    for how, fn in _runners(dense_count):
        size = np.zeros(span, np.int32)
        fn(k.view(np.int64), lo, size)
        np.testing.assert_array_equal(size, want, err_msg=how)


def test_prefetch_is_a_no_op_from_python_and_past_the_end_in_a_kernel():
    """From Python ``prefetch`` does nothing; in a kernel an index past the array (or
    negative) only hints at an address: no fault, no change."""
    a = np.arange(5.0)
    assert prefetch(a, 10**12) is None
    np.testing.assert_array_equal(a, np.arange(5.0))
    from hpcproc.kernels._kernel import kernel

    @kernel
    def touch(a, far):
        for i in range(a.shape[0]):
            prefetch(a, i + far)
            prefetch(a, np.uint64(i) + np.uint64(far))
            a[i] += 1.0
        return a.sum()

    assert touch(a, 1 << 40) == 15.0
    assert touch(a, -(1 << 40)) == 20.0
    np.testing.assert_array_equal(a, np.arange(5.0) + 2)


def test_the_kernel_module_still_imports_without_numba():
    code = ("import sys, hpcproc.shuffles._reduce, hpcproc.kernels._prefetch; "
            "assert 'numba' not in sys.modules and 'llvmlite' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert _reduce.AHEAD >= 1
