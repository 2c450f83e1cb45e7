"""netCDF in, netCDF out: ``hp.write(..., like=(file, variable))`` keeps dimension names,
coordinate variables and CF attributes, as netCDF4-python reads them back."""

import os

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DatasetNotFoundError
from support import hpcproc_cmd, on_root, run

netCDF4 = pytest.importorskip("netCDF4")
pytestmark = pytest.mark.mpi

NT, NLAT, NLON = 7, 5, 4


def _make_input(path):
    with netCDF4.Dataset(path, "w") as n:
        n.createDimension("time", NT)
        n.createDimension("lat", NLAT)
        n.createDimension("lon", NLON)
        n.createDimension("nv", 2)  # a dimension without a coordinate variable
        t = n.createVariable("time", "f8", ("time",))
        t[:] = np.arange(NT) * 6.0
        t.units, t.calendar = "hours since 2000-01-01", "standard"
        lat = n.createVariable("lat", "f4", ("lat",))
        lat[:] = np.linspace(-60, 60, NLAT)
        lat.units, lat.standard_name = "degrees_north", "latitude"
        lon = n.createVariable("lon", "f4", ("lon",))
        lon[:] = np.arange(NLON) * 90.0
        lon.units = "degrees_east"
        v = n.createVariable("t2m", "f4", ("time", "lat", "lon"))
        v[:] = np.arange(NT * NLAT * NLON, dtype="f4").reshape(NT, NLAT, NLON) / 3
        v.units, v.long_name, v.standard_name = "K", "2 metre temperature", "air_temperature"
        p = n.createVariable("sp", "i2", ("time", "lat", "lon"), fill_value=-32767)
        p.set_auto_maskandscale(False)
        raw = (np.arange(NT * NLAT * NLON) % 500).astype("i2").reshape(NT, NLAT, NLON)
        raw[0, 0, :2] = -32767
        p[:] = raw
        p.scale_factor, p.add_offset, p.units = np.float32(2.0), np.float32(90000.0), "Pa"
        b = n.createVariable("time_bnds", "f8", ("time", "nv"))
        b[:] = np.stack([np.arange(NT) * 6.0 - 3, np.arange(NT) * 6.0 + 3], axis=1)
        u = n.createVariable("u", "f8", ("time",))
        u[:] = np.arange(NT) * 1.5
        u.units = "m s-1"


@pytest.fixture
def nc_input(comm, shared_tmp):
    path = str(shared_tmp / "in.nc")
    on_root(comm, _make_input, path)
    return path


def _read_nc(path, var):
    with netCDF4.Dataset(path) as n:
        v = n[var]
        coords = {d: n[d][:].data.copy() for d in v.dimensions if d in n.variables}
        units = {d: getattr(n[d], "units", None) for d in coords}
        return {"dims": v.dimensions, "sizes": [len(n.dimensions[d]) for d in v.dimensions],
                "data": v[:], "attrs": {k: v.getncattr(k) for k in v.ncattrs()},
                "coords": coords, "coord_units": units}


def _same_as_input(out, inp, var, out_var=None):
    """The output reads back like the input. If hpcproc's read decoded CF packing (the
    output is not the source's dtype), the packing is gone and fill values are NaN."""
    got, want = _read_nc(out, out_var or var), _read_nc(inp, var)
    assert got["dims"] == want["dims"] and got["sizes"] == want["sizes"]
    assert got["coords"].keys() == want["coords"].keys()
    for d in want["coords"]:
        np.testing.assert_array_equal(got["coords"][d], want["coords"][d])
    assert got["coord_units"] == want["coord_units"]
    with h5py.File(out, "r") as fo, h5py.File(inp, "r") as fi:
        raw = fo[out_var or var].dtype == fi[var].dtype
    packing = ("scale_factor", "add_offset", "_FillValue")
    for key in ("units", "long_name", "standard_name") + (packing if raw else ()):
        if key in want["attrs"]:
            assert np.all(got["attrs"][key] == want["attrs"][key]), key
    if raw:
        np.testing.assert_array_equal(np.ma.getmaskarray(got["data"]),
                                      np.ma.getmaskarray(want["data"]))
        np.testing.assert_array_equal(got["data"].filled(0), want["data"].filled(0))
    else:
        assert not set(packing) & set(got["attrs"])
        np.testing.assert_allclose(np.ma.filled(got["data"].astype("f8"), np.nan),
                                   np.ma.filled(want["data"].astype("f8"), np.nan))


@pytest.mark.parametrize("var", ["t2m", "sp", "time_bnds", "u"])
def test_output_looks_like_the_input(comm, shared_tmp, nc_input, var):
    out = str(shared_tmp / "out.nc")
    x = hp.read(nc_input, var, comm=comm)
    hp.write(out, var, x, comm=comm, like=(nc_input, var))
    if comm.rank == 0:
        _same_as_input(out, nc_input, var)


def test_several_variables_share_their_coordinates(comm, shared_tmp, nc_input):
    out = str(shared_tmp / "multi.nc")
    hp.write(out, "t2m", hp.read(nc_input, "t2m", comm=comm), comm=comm,
             like=(nc_input, "t2m"))
    hp.write(out, "sp", hp.read(nc_input, "sp", comm=comm), comm=comm, mode="a",
             like=(nc_input, "sp"))
    t = hp.read_table(nc_input, {"u": "/u", "b": "/time_bnds"}, comm=comm)
    hp.write_table(out, t, group="/", comm=comm, mode="a",
                   like={"u": (nc_input, "u"), "b": (nc_input, "time_bnds")})
    if comm.rank == 0:
        for var, got in (("t2m", "t2m"), ("sp", "sp"), ("u", "u"), ("time_bnds", "b")):
            _same_as_input(out, nc_input, var, got)
        with netCDF4.Dataset(out) as n:
            assert sorted(n.dimensions) == ["lat", "lon", "nv", "time"]


def test_reordered_rows_keep_the_trailing_dimensions(comm, shared_tmp, nc_input):
    """After a sort the axis-0 coordinate no longer applies: it is not written; the
    trailing dimensions, units and long_name are."""
    out = str(shared_tmp / "sorted.nc")
    x = hp.read(nc_input, "t2m", comm=comm)
    rev = hp.DistArray.from_global(x.allgather()[::-1].copy(), comm)
    hp.write(out, "t2m", rev, comm=comm, like=(nc_input, "t2m"), same_rows=False)
    if comm.rank == 0:
        got = _read_nc(out, "t2m")
        assert got["dims"][1:] == ("lat", "lon") and "time" not in got["dims"]
        assert sorted(got["coords"]) == ["lat", "lon"]
        assert got["attrs"]["units"] == "K"
        with netCDF4.Dataset(out) as n:
            assert "time" not in n.variables
        with netCDF4.Dataset(nc_input) as n:
            want = n["t2m"][:][::-1]
        np.testing.assert_array_equal(got["data"], want)


def test_decoded_output_drops_the_packing(comm, shared_tmp, nc_input):
    """Values of another dtype than the source (decoded) never carry its packing."""
    out = str(shared_tmp / "dec.nc")
    x = hp.read(nc_input, "sp", comm=comm)
    if x.dtype == np.int16:  # decode as netCDF4-python does: fill -> NaN, then unpack
        local = np.where(x.local == -32767, np.nan, x.local.astype("f8") * 2 + 90000)
    else:
        local = x.local.astype("f8")
    y = hp.DistArray(local, x.global_shape, x.offset, comm)
    hp.write(out, "sp", y, comm=comm, like=(nc_input, "sp"))
    if comm.rank == 0:
        got = _read_nc(out, "sp")
        assert {k for k in got["attrs"] if not k.startswith("hpcproc_")} == {"units"}
        _same_as_input(out, nc_input, "sp")


def test_sort_cli_keeps_units_and_trailing_dims(comm, shared_tmp, nc_input):
    if comm.size > 1:
        pytest.skip("launches its own job")
    out = str(shared_tmp / "s.h5")
    for ranks in (None, 2, 3):
        proc = run(hpcproc_cmd("sort", f"{nc_input}:/u", "--with", "/time_bnds",
                               "--descending", "--out", out), ranks=ranks, timeout=180)
        assert proc.returncode == 0, proc.stderr
        with netCDF4.Dataset(out) as n:
            assert n["u"].units == "m s-1"
            np.testing.assert_array_equal(n["u"][:], np.arange(NT)[::-1] * 1.5)
            assert n["time_bnds"].dimensions[1] == "nv"
            assert "time" not in n.variables


def test_bad_like(comm, shared_tmp, nc_input):
    out = str(shared_tmp / "bad.nc")
    x = hp.read(nc_input, "t2m", comm=comm)
    with pytest.raises(ValueError, match="same_rows=False"):
        hp.write(out, "x", x, comm=comm, like=(nc_input, "u"))
    with pytest.raises(DatasetNotFoundError, match="no dataset"):
        hp.write(out, "x", x, comm=comm, like=(nc_input, "nope"))
    with pytest.raises(FileNotFoundError, match="no file"):
        hp.write(out, "x", x, comm=comm, like=(str(shared_tmp / "none.nc"), "t2m"))
    with pytest.raises(TypeError, match="tuple"):
        hp.write(out, "x", x, comm=comm, like=nc_input)
    # an output whose 'lat' is something else: refused, the file left as it was
    on_root(comm, lambda: h5py.File(out, "w").create_dataset("lat", data=np.zeros(NLAT)))
    with pytest.raises(ValueError, match="not the coordinate"):
        hp.write(out, "x", x, comm=comm, mode="a", like=(nc_input, "t2m"))
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            assert sorted(f) == ["lat"]
        assert sorted(os.listdir(shared_tmp)) == ["bad.nc", "in.nc"]


def test_replaced_variable_leaves_no_dangling_dimension_reference(comm, shared_tmp,
                                                                  nc_input):
    out = str(shared_tmp / "rep.nc")
    x = hp.read(nc_input, "t2m", comm=comm)
    hp.write(out, "t2m", x, comm=comm, like=(nc_input, "t2m"))
    y = hp.DistArray(x.local * 2, x.global_shape, x.offset, comm)
    hp.write(out, "t2m", y, comm=comm, mode="a", if_exists="replace",
             like=(nc_input, "t2m"))
    if comm.rank == 0:
        with h5py.File(out, "r") as f:
            for coord in ("time", "lat", "lon"):  # one variable refers to each scale
                assert len(f[coord].attrs["REFERENCE_LIST"]) == 1, coord
        got = _read_nc(out, "t2m")
        assert got["dims"] == ("time", "lat", "lon")
        with netCDF4.Dataset(nc_input) as n:
            want = n["t2m"][:] * 2
        np.testing.assert_array_equal(got["data"], want)
