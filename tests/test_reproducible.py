"""hp.stats(..., exact=True): bit-identical for any rank count, block size and thread
count, and correctly rounded (serial and 2/3 ranks).

Each result is compared bit for bit with (a) the same exact algorithm run in one block,
one thread, on the full data on every rank, and (b) an independent reference computed
with Python's ``fractions.Fraction`` (sum, mean, var correctly rounded).
"""

import math
from fractions import Fraction

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import SERIAL_ONLY, bits, hpcproc_cmd, on_root, one_block, run, same_bits, uneven

pytestmark = pytest.mark.mpi

KEYS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def _fraction_ref(data, ddof=0):
    """Correctly rounded sum, mean, var of finite data (independent of the kernel)."""
    vals = [Fraction(float(v)) for v in data.astype(np.float64).ravel()]
    n = len(vals)
    s = sum(vals, Fraction(0))
    mean = s / n
    var = sum(((v - mean) ** 2 for v in vals), Fraction(0)) / (n - ddof)

    def rnd(f):
        try:
            return f.numerator / f.denominator
        except OverflowError:
            return math.inf if f > 0 else -math.inf
    return rnd(s), rnd(mean), rnd(var)


def _cases():
    rng = np.random.default_rng(5)
    u = rng.random(3001)
    wide = rng.standard_normal(2001) * np.exp(rng.uniform(-690, 690, 2001))
    return {
        "uniform": u,
        "offset": 1e9 + u,
        "huge_range": np.concatenate([wide, [1e300, -1e300, 1e-300, 5e-324, -5e-324]]),
        "cancel": np.array([1e16, 1.0, -1e16]),
        "zeros": np.array([-0.0, 0.0, -0.0, 0.0, -0.0]),
        "float32": (rng.standard_normal(2501) * 1e3).astype(np.float32),
        "float16": (rng.standard_normal(999) * 10).astype(np.float16),
        "int64": rng.integers(-10**12, 10**12, 2222),
        "int8": rng.integers(-128, 127, 777).astype(np.int8),
    }


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("empty_rank", [None, 1])
def test_bit_identical_and_correctly_rounded(comm, name, empty_rank):
    data = _cases()[name]
    ref = one_block(data, comm, exact=True)
    got = hp.stats(uneven(data, comm, empty_rank), exact=True)
    same_bits(KEYS, got, ref)
    s, mean, var = _fraction_ref(data)
    if data.dtype.kind == "f":
        assert bits(got["sum"]) == bits(np.float64(s)) or (s == 0 and got["sum"] == 0)
    else:
        assert got["sum"] == data.sum()  # integer sums stay exact integers
    assert got["mean"] == mean and got["var"] == var
    assert got["std"] == np.sqrt(np.float64(var))


def test_offset_variance_is_accurate(comm):
    data = 1e9 + np.random.default_rng(8).random(20000)
    got = hp.stats(uneven(data, comm), exact=True)
    assert got["var"] == _fraction_ref(data)[2]
    np.testing.assert_allclose(got["var"], np.var(data), rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_any_thread_count(comm, threads):
    data = np.random.default_rng(2).standard_normal(300_000) * 1e5 + 3.0
    ref = one_block(data, comm, exact=True)
    old = hp.set_threads(threads)
    try:
        got = hp.stats(uneven(data, comm), exact=True)
    finally:
        hp.set_threads(old)
    same_bits(KEYS, got, ref)


def test_nan_inf(comm):
    rng = np.random.default_rng(4)
    base = rng.random(2000)
    for extra in ([np.nan], [np.inf], [-np.inf], [np.inf, -np.inf], [np.nan, np.inf]):
        data = base.copy()
        data[rng.choice(2000, len(extra), replace=False)] = extra
        for skipna in (False, True):
            got = hp.stats(uneven(data, comm), exact=True, skipna=skipna)
            same_bits(KEYS, got, one_block(data, comm, skipna=skipna, exact=True))
            with np.errstate(all="ignore"):
                f = data[~np.isnan(data)] if skipna else data
                for key, fn in (("sum", np.sum), ("mean", np.mean), ("var", np.var)):
                    want = fn(f)
                    assert np.isnan(got[key]) == np.isnan(want), (key, extra, skipna)
                    if not np.isfinite(want):
                        assert np.isnan(want) or got[key] == want, (key, extra, skipna)


def test_axis0_and_ddof(comm):
    data = np.random.default_rng(6).standard_normal((1501, 3)) * [1.0, 1e8, 1e-8] + [0, 1e9, 5]
    for ddof in (0, 1):
        got = hp.stats(uneven(data, comm), axis=0, ddof=ddof, exact=True)
        same_bits(KEYS, got, one_block(data, comm, axis=0, ddof=ddof, exact=True))
        for j in range(3):
            assert got["var"][j] == _fraction_ref(data[:, j], ddof)[2]


def test_many_columns(comm):
    data = np.random.default_rng(7).standard_normal((301, 200)) + np.arange(200) * 1e6
    got = hp.stats(uneven(data, comm, empty_rank=0), axis=0, exact=True)
    same_bits(KEYS, got, one_block(data, comm, axis=0, exact=True))
    for j in (0, 77, 199):
        assert got["var"][j] == _fraction_ref(data[:, j])[2]


def test_empty(comm):
    got = hp.stats(hp.DistArray.from_global(np.zeros(0), comm), exact=True)
    assert got["count"] == 0 and got["sum"] == 0.0
    assert math.isnan(got["mean"]) and math.isnan(got["var"]) and math.isnan(got["min"])


@pytest.mark.parametrize("block_bytes", [8, 1000, 1 << 20])
def test_file_any_block_size(comm, shared_tmp, block_bytes):
    data = np.random.default_rng(3).standard_normal((4000, 2)) * 1e-3 + 7.0
    path = shared_tmp / "r.h5"
    on_root(comm, lambda: h5py.File(path, "w").create_dataset("x", data=data).file.close())
    ref = one_block(data, comm, exact=True)
    for src in (f"{path}:/x", hp.blocks(str(path), "/x", block_bytes=block_bytes, comm=comm)):
        same_bits(KEYS, hp.stats(src, comm=comm, block_bytes=block_bytes, exact=True), ref)
    got = hp.stats_file(str(path), "/x", comm=comm, block_bytes=block_bytes, axis=0,
                        exact=True)
    same_bits(KEYS, got, one_block(data, comm, axis=0, exact=True))


def test_exact_must_be_bool(comm):
    x = hp.DistArray.from_global(np.arange(10.0), comm)
    with pytest.raises(TypeError, match="exact"):
        hp.stats(x, exact="yes")


@SERIAL_ONLY
def test_cli_exact_same_bits_at_1_2_3_ranks(tmp_path):
    import json
    data = 1e9 + np.random.default_rng(9).random(20001)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["x"] = data
    s, mean, var = _fraction_ref(data)
    for ranks in (1, 2, 3):
        proc = run(hpcproc_cmd("stats", "--exact", "--json", "--block-bytes", "4096",
                               f"{path}:/x"), ranks=ranks, timeout=300)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        assert (got["sum"], got["mean"], got["std"]) == (s, mean, math.sqrt(var)), ranks
    proc = run(hpcproc_cmd("stats", "--exact", "--checkpoint", str(tmp_path / "ck"),
                           f"{path}:/x"), timeout=300)
    assert proc.returncode == 2 and "hpcproc: error: --exact cannot" in proc.stderr
