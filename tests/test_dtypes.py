"""Every byte order and width gives numpy's answer; other dtypes a clear DtypeError.

Big-endian and little-endian bool, integers and floats of every width (with their extreme
values: int64 min/max, uint64 beyond 2**53 and 2**63, float16 max and subnormals) through
hp.stats, hp.histogram, hp.histogram2d, hp.quantile (exact and sketch), hp.map,
hp.map_blocks and hp.reduce, as DistArrays (uneven blocks, rank 0 empty) and as files
written big-endian by h5py, at 1, 2 and 3 ranks; the CLI on big-endian files.
"""

import json
import math
import warnings

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DtypeError
from support import SERIAL_ONLY, first_empty, hpcproc_cmd, on_root, run

mpi = pytest.mark.mpi
WIDTHS = ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
DTYPES = [order + w for w in WIDTHS for order in "<>"] + ["?"]
QS = [0.0, 0.25, 0.5, 1 / 3, 0.999, 1.0]


def _data(dtype, n=1001, seed=3):
    """Values of ``dtype`` (any byte order) including its awkward ones."""
    dt = np.dtype(dtype)
    native = dt.newbyteorder("=")
    rng = np.random.default_rng(seed)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(native)
        vals = rng.integers(info.min, info.max, n, dtype=native, endpoint=True)
        special = [info.min, info.max, 0, 1, info.max - 1]
        if native == np.uint64:
            special += [2**53 + 1, 2**63, 2**63 + 1, 2**64 - 2]
        vals[:len(special)] = special
        return vals.astype(dt)
    info = np.finfo(native)
    vals = (rng.standard_normal(n) * 1e3).astype(native)
    vals[:50] = np.round(vals[:50] / 100)  # ties and values on bin edges
    special = [0.0, -0.0, float(info.smallest_subnormal), -float(info.smallest_normal),
               float(info.max) if native.itemsize < 8 else 1e150, 1.0]
    vals[50:50 + len(special)] = special
    return vals.astype(dt)


def _numpy(fn, *args, **kwargs):
    with warnings.catch_warnings():  # numpy warns when it histograms bool as uint8
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _same_values(got, ref):
    """Equal values and the same dtype up to byte order (hpcproc returns native)."""
    got, ref = np.asarray(got), np.asarray(ref)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == ref.dtype.newbyteorder("="), (got.dtype, ref.dtype)


def _check_hist(x, data, bins, rng=None, **kwargs):
    """hp.histogram of ``x`` equals np.histogram of ``data`` (or both raise ValueError:
    float16 max - min can overflow, then numpy cannot make the edges)."""
    try:
        ref_counts, ref_edges = _numpy(np.histogram, data, bins, range=rng)
    except ValueError:
        with pytest.raises(ValueError, match="Too many bins"):
            _numpy(hp.histogram, x, bins, range=rng, **kwargs)
        return
    counts, edges = hp.histogram(x, bins, range=rng, **kwargs)
    np.testing.assert_array_equal(counts, ref_counts)
    _same_values(edges, ref_edges)


def _check_stats(s, data):
    f = data.astype(np.float64)
    assert s["count"] == data.size and s["nan_count"] == 0
    if data.dtype.kind in "iub":
        assert s["sum"] == np.sum(data)  # exact, numpy's int64/uint64 sum
        assert s["min"] == np.min(data) and s["max"] == np.max(data)
    else:
        assert math.isclose(s["sum"], math.fsum(f), rel_tol=1e-12)
        assert s["min"] == float(np.min(data)) and s["max"] == float(np.max(data))
    assert math.isclose(s["mean"], math.fsum(f) / f.size, rel_tol=1e-12)
    assert math.isclose(s["var"], np.var(f), rel_tol=1e-9)


@mpi
@pytest.mark.parametrize("dtype", DTYPES)
def test_stats_every_byte_order(comm, dtype):
    data = _data(dtype)
    _check_stats(hp.stats(first_empty(data, comm)), data)
    cols = hp.stats(first_empty(data.reshape(-1, 7), comm), axis=0)
    ref = data.reshape(-1, 7)
    np.testing.assert_array_equal(cols["min"], ref.min(axis=0))
    if data.dtype.kind in "iub":
        np.testing.assert_array_equal(cols["sum"], ref.sum(axis=0))


@mpi
@pytest.mark.parametrize("dtype", DTYPES)
def test_histogram_every_byte_order(comm, dtype):
    data = _data(dtype)
    x = first_empty(data, comm)
    for bins, rng in [(10, None), (7, (-5, 5)), (np.array([-3.0, -1, 0, 0, 1, 2e3]), None)]:
        _check_hist(x, data, bins, rng)


@mpi
@pytest.mark.parametrize("dtype", [d for d in DTYPES if d != "?"])
def test_exact_quantile_every_byte_order(comm, dtype):
    data = _data(dtype)
    x = first_empty(data, comm)
    for q in QS + [QS]:
        _same_values(hp.quantile(x, q), np.quantile(data, q))


@mpi
@pytest.mark.parametrize("dtype", ["<f2", ">f2", ">f4", ">f8"])
def test_nan_in_any_byte_order(comm, dtype):
    data = _data(dtype)
    data[7] = np.nan
    x = first_empty(data, comm)
    s = hp.stats(x, skipna=True)
    assert s["nan_count"] == 1 and s["count"] == data.size - 1
    assert s["max"] == float(np.nanmax(data))
    assert math.isnan(hp.stats(x)["mean"])
    _same_values(hp.quantile(x, 0.5), np.quantile(data, 0.5))  # NaN, numpy's dtype
    np.testing.assert_array_equal(hp.histogram(x, 5, range=(-1, 1))[0],
                                  np.histogram(data, 5, range=(-1, 1))[0])


@mpi
@pytest.mark.parametrize("dtype", [">f8", "<f2", ">u8", ">i8", ">i1", "?"])
def test_sketch_every_byte_order(comm, dtype):
    data = _data(dtype).astype(np.int8) if dtype == "?" else _data(dtype)
    x = first_empty(data, comm)
    got = hp.quantile(x, QS, method="sketch", rel_err=0.01)
    srt = np.sort(data.astype(np.float64))
    for q, v in zip(QS, got):
        h = (srt.size - 1) * q
        lo, hi = srt[int(math.floor(h))], srt[min(int(math.floor(h)) + 1, srt.size - 1)]
        exact = float(np.quantile(data.astype(np.float64), q))
        assert abs(v - exact) <= 0.01 * max(abs(lo), abs(hi)) * (1 + 1e-9) + 1e-300
    sk = hp.QuantileSketch(0.01).add(data)  # a raw big-endian numpy block
    assert sk.count == data.size


def _count_positive(block):
    return np.int64((block > 0).sum())


def _add(a, b):
    return a + b


def _identity(v):
    return v


def _copy(block):
    return block.copy()


@mpi
@pytest.mark.parametrize("dtype", DTYPES)
def test_user_kernels_every_byte_order(comm, dtype):
    data = _data(dtype)
    x = first_empty(data, comm)
    lo, hi = x.rows
    mine = data[lo:hi]
    got = hp.map(_identity, x)
    np.testing.assert_array_equal(got.local, mine)
    assert got.dtype == (np.float32 if data.dtype.kind == "f" and data.itemsize == 2
                         else data.dtype.newbyteorder("="))
    np.testing.assert_array_equal(hp.map_blocks(_copy, x).local, mine)
    assert hp.reduce(_count_positive, _add, x) == np.count_nonzero(data > 0)


@mpi
@pytest.mark.parametrize("dx,dy", [(">f4", "<f2"), (">i8", ">u2"), (">u8", "f8"), ("<f2", ">f2")])
def test_histogram2d_byte_orders(comm, dx, dy):
    a, b = _data(dx, seed=1), _data(dy, seed=2)
    for bins, rng in [(6, None), ([4, 3], [(-100, 100), (-2, 2)])]:
        try:
            rh, rx, ry = _numpy(np.histogram2d, a, b, bins, range=rng)
        except ValueError:  # float16 max - min overflows (see _check_hist)
            with pytest.raises(ValueError, match="Too many bins"):
                _numpy(hp.histogram2d, first_empty(a, comm), first_empty(b, comm), bins, range=rng)
            continue
        h, ex, ey = hp.histogram2d(first_empty(a, comm), first_empty(b, comm), bins, range=rng)
        np.testing.assert_array_equal(h, rh)
        np.testing.assert_array_equal(ex, rx)
        np.testing.assert_array_equal(ey, ry)


# long double, complex, non-numeric -------------------------------------------------------

WIDE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def _reductions(x):
    return {"stats": lambda: hp.stats(x), "histogram": lambda: hp.histogram(x, 4),
            "quantile": lambda: hp.quantile(x, 0.5),
            "sketch": lambda: hp.quantile(x, 0.5, method="sketch"),
            "reduce": lambda: hp.reduce(_count_positive, _add, x)}


@mpi
@pytest.mark.skipif(not WIDE, reason="long double is float64 here (converted exactly)")
def test_long_double_is_refused_everywhere(comm):
    data = (1 + np.arange(101, dtype=np.longdouble) / 100) + np.longdouble(2) ** -60
    x = first_empty(data, comm)
    calls = dict(_reductions(x), map=lambda: hp.map(_identity, x),
                 map_blocks=lambda: hp.map_blocks(_copy, x),
                 histogram2d=lambda: hp.histogram2d(x, x),
                 sketch_add=lambda: hp.QuantileSketch().add(data))
    for call in calls.values():
        with pytest.raises(DtypeError, match="long double.*astype"):
            call()
    # The documented way out: convert to float64. Each value then carries a relative
    # rounding error <= 2**-53 (1.1e-16); the data are in [1, 2] (no cancellation), so
    # the mean and var of the converted data are within the stats contract's 1e-12 of
    # numpy's long double answer.
    s = hp.stats(hp.DistArray(x.local.astype(np.float64), x.global_shape, x.offset, comm))
    assert math.isclose(s["mean"], float(np.mean(data)), rel_tol=1e-12)
    assert math.isclose(s["var"], float(np.var(data)), rel_tol=1e-12)


@mpi
@pytest.mark.parametrize("dtype", ["c8", ">c16", "U3", [("a", "f8"), ("b", "i4")]])
def test_complex_and_non_numeric_reductions_refused(comm, dtype):
    data = np.zeros(10, dtype=dtype)
    x = first_empty(data, comm)
    for call in _reductions(x).values():
        with pytest.raises(DtypeError, match="complex|non-numeric"):
            call()
    with pytest.raises(DtypeError, match="complex|non-numeric"):
        hp.QuantileSketch().add(data)
    with pytest.raises(DtypeError):
        hp.histogram(first_empty(np.arange(10.0), comm), 3, weights=first_empty(data, comm))


@mpi
def test_user_kernels_complex_ok_object_refused(comm):
    data = (np.arange(9) + 1j * np.arange(9)).astype(">c16")
    x = first_empty(data, comm)
    lo, hi = x.rows
    np.testing.assert_array_equal(hp.map(_identity, x).local, data[lo:hi])
    obj = first_empty(np.array([1, "a", None] * 3, dtype=object), comm)
    with pytest.raises(DtypeError, match="hp.map: the array has dtype object"):
        hp.map(_identity, obj)


@mpi
def test_bool_quantile_refused_like_numpy(comm):
    data = np.array([True, False, True])
    with pytest.raises(TypeError):
        np.quantile(data, 0.5)
    with pytest.raises(DtypeError, match="boolean"):
        hp.quantile(first_empty(data, comm), 0.5)


# files written big-endian ----------------------------------------------------------------

FILE_SETS = {"be_f8": (">f8", {}), "be_u8": (">u8", {}), "le_f2": ("<f2", {}),
             "be_i2_gzip": (">i2", {"chunks": (64,), "compression": "gzip"}),
             "be_f2_chunked": (">f2", {"chunks": (100,)}), "be_i8": (">i8", {"chunks": (128,)})}


def _write_files(path):
    with h5py.File(path, "w") as f:
        for name, (dtype, kw) in FILE_SETS.items():
            f.create_dataset(name, data=_data(dtype), dtype=dtype, **kw)
        f.create_dataset("ld", data=np.arange(10, dtype=np.longdouble))
        f.create_dataset("cplx", data=np.arange(10, dtype="c16"))
        f.create_dataset("empty", data=np.zeros(0, ">f4"))
        f.create_dataset("flags", data=np.array([True, False, True]))


@pytest.fixture
def be_file(comm, shared_tmp):
    path = shared_tmp / "be.h5"
    on_root(comm, _write_files, path)
    return path


@mpi
@pytest.mark.parametrize("name", list(FILE_SETS))
def test_big_endian_files(comm, be_file, name):
    data = _data(FILE_SETS[name][0])
    with h5py.File(be_file) as f:
        assert f[name].dtype == data.dtype  # h5py kept the byte order asked for
    target = (str(be_file), "/" + name)
    x = hp.read(*target, comm=comm)
    assert x.dtype.isnative
    lo, hi = x.rows
    np.testing.assert_array_equal(x.local, data[lo:hi])
    _check_stats(hp.stats(target, comm=comm, block_bytes=256), data)
    _check_hist(target, data, 9, comm=comm, block_bytes=256)
    _check_hist(target, data, 9, (-100, 100), comm=comm, block_bytes=256)
    _same_values(hp.quantile(target, QS, comm=comm, block_bytes=256), np.quantile(data, QS))
    assert hp.reduce(_count_positive, _add, target, comm=comm,
                     block_bytes=256) == np.count_nonzero(data > 0)


@mpi
def test_long_double_and_complex_files_refused(comm, be_file):
    with pytest.raises(DtypeError, match="long double"):
        hp.stats((str(be_file), "/ld"), comm=comm)
    with pytest.raises(DtypeError, match="complex"):
        hp.quantile((str(be_file), "/cplx"), 0.5, comm=comm)


@pytest.fixture(scope="module")
def cli_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dtypes") / "be.h5"
    _write_files(path)
    return path


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_big_endian(cli_file, ranks):
    for name in ("be_f8", "be_u8", "be_f2_chunked"):
        data = _data(FILE_SETS[name][0])
        out = run(hpcproc_cmd("stats", f"{cli_file}:/{name}", "--json", "-q",
                              "--block-bytes", "1k"), ranks=ranks, timeout=120, check=True)
        got = json.loads(out.stdout)
        _check_stats(got, data)
        assert got["bytes"] == data.nbytes  # the file's bytes (float16 is not counted as f4)
    data = _data(">i2")
    out = run(hpcproc_cmd("hist", f"{cli_file}:/be_i2_gzip", "--bins", "16", "--json", "-q"),
              ranks=ranks, timeout=120, check=True)
    assert json.loads(out.stdout)["counts"] == np.histogram(data, 16)[0].tolist()
    data = _data(">f8")
    out = run(hpcproc_cmd("quantile", f"{cli_file}:/be_f8", "-q", "0", "0.5", "1", "--json",
                          "--quiet"), ranks=ranks, timeout=120, check=True)
    assert json.loads(out.stdout)["values"] == np.quantile(data, [0, 0.5, 1]).tolist()


@SERIAL_ONLY
@pytest.mark.parametrize("dset,message,cmds", [
    ("ld", "long double", ("stats", "hist", "quantile")),
    ("cplx", "complex", ("stats", "hist", "quantile")),
    ("empty", "quantile of an empty array", ("quantile", "quantile --sketch")),
    ("flags", "boolean", ("quantile",))])
def test_cli_refuses_long_double_and_complex_once(cli_file, dset, message, cmds):
    for cmd in cmds:
        out = run(hpcproc_cmd(*cmd.split(), f"{cli_file}:/{dset}"), ranks=2, timeout=60)
        assert out.returncode == 1, out.stderr
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("hpcproc: error:"), out.stderr
        assert message in lines[0] and "Abort" not in out.stderr


BIG = 2**60
MIXED_EDGES = {  # data and explicit edges of different integer/float types (numpy promotes)
    "u8_data_i8_edges": (np.array([BIG - 1, BIG, BIG + 1, 5, 2**64 - 1], np.uint64),
                         np.array([0, BIG, BIG + 1, BIG + 2], np.int64)),
    "i8_data_u8_edges": (np.array([BIG - 1, BIG, BIG + 1, 5, -3], ">i8"),
                         np.array([0, BIG, BIG + 1, BIG + 2], np.uint64)),
    "f4_data_i8_edges": (np.array([1.5, 2, 3.25, 1e9], ">f4"), np.array([0, 2, 3, 10], np.int64)),
    "u1_data_i1_edges": (np.array([1, 2, 3, 200], np.uint8), np.array([-5, 2, 3, 100], ">i1")),
    "bool_data_int_edges": (np.array([True, False, True]), np.array([0, 1, 2], np.int64)),
}


@mpi
@pytest.mark.parametrize("case", list(MIXED_EDGES))
def test_integer_edges_compared_exactly(comm, case):
    data, edges = MIXED_EDGES[case]
    counts, got_edges = hp.histogram(first_empty(data, comm), edges)
    ref_counts, ref_edges = _numpy(np.histogram, data, edges)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(got_edges, ref_edges)
