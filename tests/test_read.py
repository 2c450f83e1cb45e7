"""Parallel reads against plain h5py reading the whole dataset (serial and 2/3 ranks)."""

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DatasetNotFoundError, DtypeError, NotADatasetError, ShapeMismatchError
from support import on_root

pytestmark = pytest.mark.mpi

SHAPES = [(1000,), (997, 3), (101, 4, 5)]
DTYPES = ["<f8", "<f4", "<i8", "|u1", ">f8", ">i8"]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    return rng.integers(0, 200 if dt.itemsize == 1 else 10**12, size=shape).astype(dt)


def _make(path, name, data, **kwargs):
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data, **kwargs)


def _check(x, path, name, rows=None):
    rows = slice(None) if rows is None else rows
    """Every rank's block equals the same rows of h5py's whole-dataset read."""
    with h5py.File(path, "r") as f:
        ref = f[name][rows]
    assert x.global_shape == ref.shape
    lo, hi = x.rows
    np.testing.assert_array_equal(x.local, ref[lo:hi])
    assert x.local.dtype.isnative and x.local.dtype == ref.dtype.newbyteorder("=")
    np.testing.assert_array_equal(x.allgather(), ref)


def _layout_kwargs(layout, shape):
    if layout == "contiguous":
        return {}
    chunks = (37,) + shape[1:]
    if layout == "chunked":
        return {"chunks": chunks}
    return {"chunks": chunks, "compression": "gzip", "shuffle": True}


@pytest.mark.parametrize("layout", ["contiguous", "chunked", "gzip+shuffle"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("dtype", DTYPES)
def test_read_matches_h5py(comm, shared_tmp, layout, shape, dtype):
    path = shared_tmp / "d.h5"
    on_root(comm, _make, path, "/g/x", _data(shape, dtype), **_layout_kwargs(layout, shape))
    x = hp.read(str(path), "/g/x", comm=comm)
    _check(x, path, "/g/x")
    if layout == "contiguous":
        assert x.rows[1] - x.rows[0] in (shape[0] // comm.size, -(-shape[0] // comm.size))


def test_method_choice_and_forcing(comm, shared_tmp):
    path = shared_tmp / "m.h5"
    data = _data((500, 2), "<f8")

    def make():
        _make(path, "c", data)
        _make(path, "k", data, chunks=(50, 2))
    on_root(comm, make)
    for method in ("auto", "direct", "h5py"):
        _check(hp.read(str(path), "c", comm=comm, method=method), path, "c")
    for method in ("auto", "chunked", "h5py"):
        x = hp.read(str(path), "k", comm=comm, method=method)
        _check(x, path, "k")
        if method != "h5py":  # chunk-aligned decomposition
            assert x.rows[0] % 50 == 0
    with pytest.raises(ValueError, match="contiguous"):
        hp.read(str(path), "k", comm=comm, method="direct")
    with pytest.raises(ValueError, match="method"):
        hp.read(str(path), "c", comm=comm, method="fastest")


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_fewer_rows_than_ranks_and_empty(comm, shared_tmp, layout):
    path = shared_tmp / "few.h5"

    def make():
        kw = {"chunks": (1,)} if layout == "chunked" else {}
        _make(path, "two", np.arange(2.0), **kw)
        _make(path, "one", np.arange(1, dtype="<i8"), **kw)
        _make(path, "none", np.zeros(0), **({"chunks": (4,), "maxshape": (None,)}
                                            if layout == "chunked" else {}))
    on_root(comm, make)
    for name in ("two", "one", "none"):
        x = hp.read(str(path), name, comm=comm)
        _check(x, path, name)
        assert sum(comm.allgather(len(x.local))) == x.global_shape[0]


def test_compact_and_unallocated_datasets(comm, shared_tmp):
    path = shared_tmp / "odd.h5"

    def make():
        with h5py.File(path, "w") as f:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)
            space = h5py.h5s.create_simple((20,))
            h5py.h5d.create(f.id, b"compact", h5py.h5t.NATIVE_INT64, space, dcpl=dcpl)
            f["compact"][:] = np.arange(20)
            f.create_dataset("unwritten", shape=(30,), dtype="f4", fillvalue=7.5)
    on_root(comm, make)
    _check(hp.read(str(path), "compact", comm=comm), path, "compact")
    _check(hp.read(str(path), "unwritten", comm=comm), path, "unwritten")


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_row_selection(comm, shared_tmp, layout):
    path = shared_tmp / "rows.h5"
    data = _data((300, 2), "<i8")
    on_root(comm, _make, path, "x", data, **({"chunks": (16, 2)} if layout == "chunked" else {}))
    for rows in (slice(10, 250), slice(None, 7), slice(-20, None), (5, 6), slice(100, 100)):
        x = hp.read(str(path), "x", comm=comm, rows=rows)
        sel = slice(*rows) if isinstance(rows, tuple) else rows
        _check(x, path, "x", sel)
        start = range(300)[sel].start if len(range(300)[sel]) else x.origin
        assert x.origin == start + x.offset
    for bad in (slice(0, 301), slice(-400, None), slice(0, 10, 2)):
        with pytest.raises(ValueError):
            hp.read(str(path), "x", comm=comm, rows=bad)


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_blocks_bounded(comm, shared_tmp, layout):
    path = shared_tmp / "blocks.h5"
    data = _data((1000, 3), "<f8")
    on_root(comm, _make, path, "x", data, **({"chunks": (10, 3)} if layout == "chunked" else {}))
    budget = 24 * 3 * 8  # 24 rows of 3 float64
    seen, nblocks = [], 0
    for blk in hp.blocks(str(path), "x", block_bytes=budget, comm=comm):
        assert blk.local.nbytes <= max(budget, 10 * 3 * 8)
        seen.append((blk.origin, blk.local.copy()))
        nblocks += 1
    assert len(set(comm.allgather(nblocks))) == 1  # same number of steps on every rank
    rows = np.concatenate([np.arange(o, o + len(b)) for o, b in seen]) if seen else np.zeros(0)
    vals = np.concatenate([b for _, b in seen]) if seen else np.zeros((0, 3))
    all_rows = np.concatenate(comm.allgather(rows)).astype(np.int64)
    all_vals = np.concatenate(comm.allgather(vals))
    order = np.argsort(all_rows)
    np.testing.assert_array_equal(all_rows[order], np.arange(1000))
    np.testing.assert_array_equal(all_vals[order], data)


def test_read_table(comm, shared_tmp):
    path = shared_tmp / "t.h5"
    rng = np.random.default_rng(3)
    x, ids = rng.standard_normal(777), rng.integers(0, 99, 777)

    def make():
        _make(path, "/p/x", x, chunks=(100,), compression="gzip")
        _make(path, "/p/id", ids)
        _make(path, "/p/short", ids[:-1])
    on_root(comm, make)
    t = hp.read_table(str(path), {"x": "/p/x", "id": "/p/id"}, comm=comm)
    assert t.num_rows == 777 and t.columns == ["x", "id"]
    lo, hi = t.rows
    np.testing.assert_array_equal(t.local("x"), x[lo:hi])
    np.testing.assert_array_equal(t["id"].allgather(), ids)
    with pytest.raises(ShapeMismatchError, match="different lengths"):
        hp.read_table(str(path), {"x": "/p/x", "short": "/p/short"}, comm=comm)


def test_netcdf4_reads_like_hdf5(comm, shared_tmp):
    netCDF4 = pytest.importorskip("netCDF4")
    path = shared_tmp / "clim.nc"
    temp = _data((24, 6, 8), "<f4", seed=5)

    def make():
        with netCDF4.Dataset(path, "w") as nc:
            for dim, n in zip(("time", "lat", "lon"), temp.shape):
                nc.createDimension(dim, n)
            v = nc.createVariable("t2m", "f4", ("time", "lat", "lon"), zlib=True,
                                  chunksizes=(5, 6, 8))
            v[:] = temp
            w = nc.createVariable("lat", "f8", ("lat",), contiguous=True)
            w[:] = np.linspace(-90, 90, 6)
    on_root(comm, make)
    x = hp.read(str(path), "/t2m", comm=comm)
    np.testing.assert_array_equal(x.allgather(), temp)
    lat = hp.read(str(path), "lat", comm=comm)
    np.testing.assert_array_equal(lat.allgather(), np.linspace(-90, 90, 6))


def test_bad_input_errors(comm, shared_tmp):
    path = shared_tmp / "bad.h5"

    def make():
        with h5py.File(path, "w") as f:
            f.create_group("grp")
            f["s"] = np.array([b"a", b"bc"])
            f["cmp"] = np.zeros(3, dtype=[("a", "i4"), ("b", "f8")])
            f["scalar"] = 3.0
        (shared_tmp / "text.txt").write_text("not hdf5")
    on_root(comm, make)
    p = str(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        hp.read(str(shared_tmp / "missing.h5"), "x", comm=comm)
    with pytest.raises(OSError, match="not an HDF5 file"):
        hp.read(str(shared_tmp / "text.txt"), "x", comm=comm)
    with pytest.raises(DatasetNotFoundError, match="no dataset '/nope'"):
        hp.read(p, "/nope", comm=comm)
    with pytest.raises(KeyError):  # DatasetNotFoundError is a KeyError
        hp.read(p, "/grp/deeper/x", comm=comm)
    with pytest.raises(NotADatasetError, match="is a group"):
        hp.read(p, "/grp", comm=comm)
    for name in ("s", "cmp"):
        with pytest.raises(DtypeError, match="non-numeric"):
            hp.read(p, name, comm=comm)
    with pytest.raises(NotADatasetError, match="scalar"):
        hp.read(p, "scalar", comm=comm)


@pytest.mark.parametrize("dtype", ["<f8", ">i8"])
@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_read_into_out_and_reused_blocks(comm, shared_tmp, dtype, layout):
    path = shared_tmp / "out.h5"
    data = _data((301, 2), dtype)
    on_root(comm, _make, path, "x", data, **({"chunks": (8, 2)} if layout == "chunked" else {}))
    first = hp.read(str(path), "x", comm=comm)
    out = np.full_like(first.local, -1)
    x = hp.read(str(path), "x", comm=comm, out=out)
    assert x.local is out
    np.testing.assert_array_equal(out, data[slice(*x.rows)])
    with pytest.raises(ValueError, match="out must be"):
        hp.read(str(path), "x", comm=comm, out=np.empty((x.local.shape[0] + 1, 2),
                                                           dtype=out.dtype))
    copies, buffers = [], set()
    for blk in hp.blocks(str(path), "x", block_bytes=16 * 16, comm=comm, reuse=True):
        copies.append((blk.origin, blk.local.copy()))
        buffers.add(blk.local.__array_interface__["data"][0] if len(blk.local) else None)
    assert len(buffers - {None}) <= 1  # one buffer for every step
    got = {o + i: row for o, b in copies for i, row in enumerate(b)}
    everything = {}
    for part in comm.allgather(got):
        everything.update(part)
    np.testing.assert_array_equal(np.array([everything[i] for i in range(301)]), data)
