"""netCDF/CF decoding (issue 13 item 8): reads equal netCDF4-python's decoded values.

Files are written with netCDF4-python; ``hp.read``, ``hp.blocks``, ``hp.read_table``,
the reductions and ``hpcproc stats`` are compared with what netCDF4-python returns with
``set_auto_maskandscale(True)`` (masked values as NaN). Tests marked ``mpi`` run
serially and under 2 and 3 ranks.
"""

import json
import warnings

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import SERIAL_ONLY, hpcproc_cmd, on_root, run

# the reference; absent from the parallel-HDF5 environment (its own HDF5 library)
netCDF4 = pytest.importorskip("netCDF4")

ROWS = 23  # odd: remainders at 2 and 3 ranks; chunked variables have 5-row chunks


def era5(path, rows=100, cols=50, chunked=False):
    """An ERA5-style 2 m temperature: int16 packed with scale_factor, add_offset and
    _FillValue, 5 % of the values missing."""
    rng = np.random.default_rng(42)
    t = rng.normal(273.0, 12.0, (rows, cols))
    sf, ao = np.float64(0.0015), np.float64(273.2)
    packed = np.round((t - ao) / sf).astype("i2")
    packed[rng.random((rows, cols)) < 0.05] = -32767
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("latitude", rows)
        ds.createDimension("longitude", cols)
        v = ds.createVariable("t2m", "i2", ("latitude", "longitude"),
                              fill_value=np.int16(-32767), zlib=chunked,
                              chunksizes=(7, cols) if chunked else None)
        v.set_auto_maskandscale(False)
        v.scale_factor, v.add_offset, v.units = sf, ao, "K"
        v[:] = packed


def _var(ds, name, dtype, data, fill=None, chunked=False, **attrs):
    shape = np.shape(data)
    dims = ("r",) if len(shape) == 1 else ("r", "c")
    v = ds.createVariable(name, dtype, dims, fill_value=fill, zlib=chunked,
                          chunksizes=(5,) + shape[1:] if chunked else None)
    v.set_auto_maskandscale(False)
    for k, a in attrs.items():
        v.setncattr(k, a)
    v[:] = np.asarray(data, dtype)


def variables(path):
    """One variable per CF case (``ROWS`` rows), contiguous and chunked."""
    rng = np.random.default_rng(7)
    i2 = rng.integers(-200, 200, ROWS).astype("i2")
    i2[::4] = -32767
    f4 = rng.normal(0, 50, ROWS).astype("f4")
    f4[1::5] = 1e20
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("r", ROWS)
        ds.createDimension("c", 3)
        for chunked, sfx in ((False, ""), (True, "_c")):
            kw = {"chunked": chunked}
            _var(ds, "packed32" + sfx, "i2", i2, np.int16(-32767),
                 scale_factor=np.float32(0.5), add_offset=np.float32(270), **kw)
            _var(ds, "packed64" + sfx, "i2", i2, np.int16(-32767),
                 scale_factor=0.01, add_offset=-3.0, **kw)
            _var(ds, "fill_only_int" + sfx, "i2", i2, np.int16(-32767), **kw)
            _var(ds, "float_fill" + sfx, "f4", f4, np.float32(1e20), **kw)
            f4b = np.where(f4 == np.float32(1e20), -9999, f4)
            _var(ds, "float_fill_9999" + sfx, "f4", f4b, np.float32(-9999), **kw)
            _var(ds, "valid_range" + sfx, "f4", np.where(f4 > 1e19, 0, f4),
                 valid_range=np.array([-40, 40], "f4"), **kw)
            _var(ds, "valid_min_max" + sfx, "i2", i2, np.int16(-32767),
                 valid_min=np.int16(-100), valid_max=np.int16(150), **kw)
            mv = np.where(i2 == -32767, 7, i2).astype("f8")
            mv[2::6] = -1
            _var(ds, "missing_value" + sfx, "f8", mv,
                 missing_value=np.array([-1.0, 7.0]), **kw)
            _var(ds, "missing_float_attr" + sfx, "f4", np.where(f4 > 1e19, -9999, f4),
                 missing_value=np.float64(-9999), **kw)
            _var(ds, "int32_scaled" + sfx, "i4", i2.astype("i4") * 1000,
                 scale_factor=np.float32(0.001), **kw)
            _var(ds, "offset_only" + sfx, "f8", f4.astype("f8"), add_offset=np.float32(2),
                 **kw)
            # no _FillValue: netCDF4-python would still mask its default fill (-32767),
            # xarray and hpcproc do not (no attribute, no mask), so none is stored
            _var(ds, "trivial_scale" + sfx, "i2", np.where(i2 == -32767, 5, i2),
                 scale_factor=np.float32(1),
                 add_offset=np.float32(0), **kw)
            _var(ds, "unsigned" + sfx, "i1", rng.integers(-128, 127, ROWS), np.int8(-1),
                 _Unsigned="true", scale_factor=np.float32(2), **kw)
            _var(ds, "packed_2d" + sfx, "i2", rng.integers(-99, 99, (ROWS, 3)),
                 np.int16(-99), scale_factor=np.float32(0.25), **kw)
            _var(ds, "plain" + sfx, "f8", rng.normal(size=ROWS), **kw)


NAMES = ["packed32", "packed64", "fill_only_int", "float_fill", "float_fill_9999",
         "valid_range", "valid_min_max", "missing_value", "missing_float_attr",
         "int32_scaled", "offset_only", "trivial_scale", "unsigned", "packed_2d", "plain"]
ALL = NAMES + [n + "_c" for n in NAMES]


def reference(path, name):
    """netCDF4-python's decoded values, masked ones as NaN (float64 for masked ints)."""
    with netCDF4.Dataset(path) as ds:
        v = ds[name]
        x = v[:]
        masks = any(a in v.ncattrs() for a in ("_FillValue", "missing_value", "valid_min",
                                                 "valid_max", "valid_range"))
    mask = np.ma.getmaskarray(x)
    data = np.ma.getdata(x)
    if masks and data.dtype.kind != "f":
        data = data.astype(np.float64)
    data = np.array(data)
    if mask.any():
        data[mask] = np.nan
    return data


def _gather(comm, x):
    parts = comm.allgather((x.offset, x.local))
    return np.concatenate([p for _, p in sorted(parts, key=lambda t: t[0])])


def _same(got, ref):
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)  # NaN where netCDF4-python masks


@pytest.fixture
def cf_file(comm, shared_tmp):
    path = shared_tmp / "cf.nc"
    on_root(comm, variables, path)
    return path


@pytest.mark.mpi
@pytest.mark.parametrize("name", ALL)
def test_read_and_blocks_equal_netcdf4(comm, cf_file, name):
    ref = reference(cf_file, name)
    _same(_gather(comm, hp.read(str(cf_file), name, comm=comm)), ref)
    row = ref[0].nbytes
    scans = [list(hp.blocks(str(cf_file), name, block_bytes=3 * row, comm=comm, reuse=r))
             for r in (False, True)]
    got = np.concatenate(comm.allgather(np.concatenate([b.local.copy() for b in scans[0]])))
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(ref, axis=0))


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["packed32", "float_fill_c", "unsigned", "plain"])
def test_raw_reads_the_stored_values(comm, cf_file, name):
    with h5py.File(cf_file, "r") as f:
        stored = f[name][()]
    x = hp.read(str(cf_file), name, comm=comm, mask_and_scale=False)
    got = _gather(comm, x)
    assert got.dtype == stored.dtype.newbyteorder("=")
    assert got.tobytes() == stored.astype(got.dtype).tobytes()  # bit-identical


@pytest.mark.mpi
def test_no_attributes_is_bit_identical_and_undecoded(comm, cf_file):
    info = hp.dataset_info(str(cf_file), "plain", comm=comm)
    assert info.attrs == {}
    with h5py.File(cf_file, "r") as f:
        stored = f["plain"][()]
    assert _gather(comm, hp.read(str(cf_file), "plain", comm=comm)).tobytes() == \
        stored.tobytes()


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["packed32", "float_fill", "valid_min_max_c",
                                  "missing_value", "packed_2d_c"])
def test_reductions_skip_missing_values(comm, cf_file, name):
    ref = reference(cf_file, name)
    valid = ref[~np.isnan(ref)].astype(np.float64)
    s = hp.stats(f"{cf_file}:{name}", comm=comm, block_bytes=ref[0].nbytes * 2)
    assert s["count"] == valid.size and s["nan_count"] == ref.size - valid.size
    assert s["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(valid.std(), rel=1e-9)
    assert (s["min"], s["max"]) == (valid.min(), valid.max())
    per_col = hp.stats(f"{cf_file}:{name}", axis=0, comm=comm)
    np.testing.assert_allclose(per_col["mean"], np.nanmean(ref.astype(np.float64), axis=0),
                               rtol=1e-12)
    q = hp.quantile(f"{cf_file}:{name}", [0.1, 0.5, 1.0], comm=comm)
    np.testing.assert_array_equal(q, np.quantile(ref[~np.isnan(ref)], [0.1, 0.5, 1.0]))
    counts, edges = hp.histogram(f"{cf_file}:{name}", bins=7, comm=comm)
    ref_counts, ref_edges = np.histogram(ref[~np.isnan(ref)], bins=7)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(edges, ref_edges)
    raw = hp.stats(f"{cf_file}:{name}", comm=comm, mask_and_scale=False)
    with h5py.File(cf_file, "r") as f:
        assert raw["count"] == f[name].size and raw["min"] == f[name][()].min()


@pytest.mark.mpi
def test_read_table_and_out(comm, cf_file):
    t = hp.read_table(str(cf_file), {"a": "packed32", "b": "float_fill_c"}, comm=comm)
    for col, name in (("a", "packed32"), ("b", "float_fill_c")):
        _same(_gather(comm, t[col]), reference(cf_file, name))
    first = hp.read(str(cf_file), "packed64", comm=comm)
    out = np.empty_like(first.local)
    again = hp.read(str(cf_file), "packed64", comm=comm, out=out)
    assert again.local is out
    np.testing.assert_array_equal(out, first.local)
    with pytest.raises(ValueError, match="out must be"):
        hp.read(str(cf_file), "packed64", comm=comm, out=np.empty(out.shape, "i2"))


@pytest.mark.mpi
def test_attribute_that_does_not_fit_is_ignored_like_netcdf4(comm, shared_tmp):
    path = shared_tmp / "unsafe.nc"

    def make():
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("r", 5)
            _var(ds, "x", "f4", [1, 2, 3, 4, 5], missing_value=np.float64(3.1))
    on_root(comm, make)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both libraries warn that the attribute is unused
        ref = reference(path, "x")
        got = _gather(comm, hp.read(str(path), "x", comm=comm))
    _same(got, ref)


BAD_PACKING = {"two_scales": dict(scale_factor=np.array([2.0, 3.0])),
               "text_scale": dict(scale_factor="abc"),
               "two_offsets": dict(scale_factor=np.float32(2), add_offset=np.array([1.0, 5.0])),
               "text_offset": dict(add_offset="1")}


@pytest.mark.mpi
@pytest.mark.parametrize("name", sorted(BAD_PACKING))
def test_packing_attribute_that_is_not_one_number_is_not_applied_like_netcdf4(
        comm, shared_tmp, name):
    path = shared_tmp / f"{name}.nc"

    def make():
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("r", 7)
            v = ds.createVariable("x", "i2", ("r",))
            v[:] = np.arange(-3, 4)
            v.setncatts(BAD_PACKING[name])
    on_root(comm, make)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # netCDF4-python warns: no unpacking done
        try:
            ref = reference(path, "x")
        except TypeError:  # a text add_offset alone: netCDF4-python fails to add it
            assert name == "text_offset"
            ref = np.arange(-3, 4, dtype=np.int16)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = _gather(comm, hp.read(str(path), "x", comm=comm))
        s = hp.stats(f"{path}:/x", comm=comm)
    _same(got, ref)
    assert s["sum"] == int(ref.sum()) and s["max"] == ref.max()
    ours = [str(w.message) for w in seen if "no unpacking done" in str(w.message)]
    if comm.rank == 0:  # once per process, on rank 0 only, naming the attribute
        assert len(ours) == 1 and "'/x'" in ours[0], ours
        assert next(iter(BAD_PACKING[name])) in ours[0] or "add_offset" in ours[0]
    else:
        assert ours == []


@SERIAL_ONLY
def test_cli_warning_is_one_line_without_a_source_line(tmp_path):
    path = tmp_path / "bad.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("r", 5)
        _var(ds, "x", "f4", [1, 2, 3, 4, 5], missing_value=np.float64(3.1))
    proc = run(hpcproc_cmd("stats", "--json", f"{path}:/x"), ranks=2, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["count"] == 5
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hpcproc[rank 0] WARNING: dataset '/x': CF attribute "
                               "missing_value"), proc.stderr
    assert ".py" not in lines[0]


@pytest.mark.mpi
def test_era5_t2m_like_xarray_and_netcdf4(comm, shared_tmp):
    path = shared_tmp / "era5.nc"
    on_root(comm, era5, path)
    with netCDF4.Dataset(path) as ds:
        ref = ds["t2m"][:]
    s = hp.stats(f"{path}:/t2m", comm=comm)
    assert s["count"] == ref.count()
    assert s["mean"] == pytest.approx(ref.astype(np.float64).mean(), rel=1e-12)
    assert 250 < s["mean"] < 300


# --- the command line, launched at 1, 2 and 3 ranks -------------------------------------

@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("chunked", [False, True])
def test_cli_stats_t2m(tmp_path, ranks, chunked):
    path = tmp_path / "cf.nc"
    era5(path, chunked=chunked)
    with netCDF4.Dataset(path) as ds:
        ref = ds["t2m"][:]
    proc = run(hpcproc_cmd("stats", "--json", f"{path}:/t2m"), ranks=ranks, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["count"] == ref.count() and r["nan_count"] == ref.size - ref.count()
    assert r["mean"] == pytest.approx(ref.astype(np.float64).mean(), rel=1e-12)
    assert r["min"] == ref.min() and r["max"] == ref.max()
    proc = run(hpcproc_cmd("stats", "--json", "--raw", f"{path}:/t2m"), ranks=ranks,
               timeout=120)
    r = json.loads(proc.stdout)
    with h5py.File(path, "r") as f:
        stored = f["t2m"][()]
    assert r["count"] == stored.size and r["sum"] == int(stored.sum(dtype=np.int64))
    for cmd in (["quantile", "-q", "0.5"], ["hist", "--bins", "4"]):
        proc = run(hpcproc_cmd(*cmd, "--json", f"{path}:/t2m"), ranks=ranks, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        if cmd[0] == "quantile":
            assert out["values"] == [float(np.quantile(ref.compressed(), 0.5))]
        else:
            assert out["counts"] == np.histogram(ref.compressed(), 4)[0].tolist()


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["packed32", "packed32_c", "float_fill"])
def test_lineage_checksums_the_stored_values(comm, cf_file, name):
    import zlib

    from hpcproc.io import lineage
    with h5py.File(cf_file, "r") as f:
        stored = f[name][()]
    want = "crc32:%08x" % zlib.crc32(stored.astype(stored.dtype.newbyteorder("<")).tobytes())
    lineage.reset()
    hp.read(str(cf_file), name, comm=comm)
    for _ in hp.blocks(str(cf_file), name, block_bytes=3 * stored[0].nbytes, comm=comm,
                       rows=(1, ROWS)):
        pass
    recs = lineage.inputs()
    assert recs[0]["checksum"] == want and recs[0]["bytes"] == stored.nbytes
    tail = stored[1:]
    assert recs[1]["checksum"] == "crc32:%08x" % zlib.crc32(
        tail.astype(tail.dtype.newbyteorder("<")).tobytes())
    assert recs[1]["bytes"] == tail.nbytes
    lineage.reset()


@pytest.mark.mpi
@pytest.mark.parametrize("chunks", [None, (4,)])
def test_big_endian_values_and_attributes(comm, shared_tmp, chunks):
    path = shared_tmp / "be.h5"
    stored = np.arange(-20, ROWS - 20, dtype=">i2")
    stored[::3] = -32767

    def make():  # plain h5py, everything big-endian; netCDF4-python reads such files too
        with h5py.File(path, "w") as f:
            x = f.create_dataset("x", data=stored, chunks=chunks)
            x.attrs["scale_factor"] = np.array([0.25], ">f4")
            x.attrs["add_offset"] = np.array([100], ">f8")
            x.attrs["_FillValue"] = np.array([-32767], ">i2")
            x.attrs["valid_max"] = np.array([-1], ">i2")
    on_root(comm, make)
    got = _gather(comm, hp.read(str(path), "x", comm=comm))
    assert got.dtype.isnative
    _same(got, reference(path, "x"))
