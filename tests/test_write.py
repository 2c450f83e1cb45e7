"""Parallel writes: round trips against plain h5py, atomicity, and bad output targets."""

import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DatasetExistsError, DtypeError
from support import on_root

pytestmark = pytest.mark.mpi


def _global(shape, dtype, seed=1):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 250, size=shape).astype(dtype)


def _uneven(comm, data):
    """A DistArray whose blocks are deliberately unbalanced (rank 0 holds the most)."""
    n = data.shape[0]
    cuts = np.sort(np.r_[0, (np.sqrt(np.linspace(0, 1, comm.size + 1)[1:-1]) * n).astype(int), n])
    lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
    return hp.DistArray.from_local(data[lo:hi], comm)


def _read_back(path, name):
    with h5py.File(path, "r") as f:
        return f[name][...], f[name]


OPTIONS = {
    "contiguous": {},
    "chunked": {"chunks": (64,)},
    "gzip": {"compression": "gzip", "chunks": (50,)},
    "gzip+shuffle": {"compression": "gzip", "compression_opts": 6, "shuffle": True},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("shape", [(1001,), (333, 7), (65, 3, 4)], ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "u1"])
def test_round_trip(comm, shared_tmp, option, shape, dtype):
    data = _global(shape, dtype)
    opts = dict(OPTIONS[option])
    if "chunks" in opts:
        opts["chunks"] = opts["chunks"] + shape[1:]
    path = str(shared_tmp / "out.h5")
    x = _uneven(comm, data)
    hp.write(path, "/grp/x", x, comm=comm, attrs={"units": "m"}, **opts)
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            d = f["/grp/x"]
            np.testing.assert_array_equal(d[...], data)
            assert d.dtype == data.dtype and d.attrs["units"] == "m"
            if option == "contiguous":
                assert d.chunks is None and d.id.get_offset() is not None
            else:
                assert d.chunks is not None
                assert d.compression == opts.get("compression")
                assert d.shuffle == opts.get("shuffle", False)
    y = hp.read(path, "/grp/x", comm=comm)
    np.testing.assert_array_equal(y.allgather(), data)


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("option", ["contiguous", "gzip"])
def test_tiny_and_empty(comm, shared_tmp, n, option):
    data = np.arange(n, dtype="f8")
    path = str(shared_tmp / "tiny.h5")
    hp.write(path, "x", hp.DistArray.from_global(data, comm), comm=comm, **OPTIONS[option])
    np.testing.assert_array_equal(hp.read(path, "x", comm=comm).allgather(), data)


def test_append_mode_and_existing_dataset(comm, shared_tmp):
    path = str(shared_tmp / "app.h5")
    a = hp.DistArray.from_global(np.arange(10.0), comm)
    b = hp.DistArray.from_global(np.arange(20, dtype="i8").reshape(10, 2), comm)
    hp.write(path, "a", a, comm=comm, mode="a")  # creates the file
    hp.write(path, "/deep/group/b", b, comm=comm, mode="a", chunks=(3, 2), compression="gzip")
    with pytest.raises(DatasetExistsError, match="already exists"):
        hp.write(path, "a", b, comm=comm, mode="a")
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["a"][...], np.arange(10.0))  # untouched
            np.testing.assert_array_equal(f["deep/group/b"][...], np.arange(20).reshape(10, 2))
            assert not [k for k in f if k.startswith(".hpcproc-tmp")]


def test_mode_w_replaces_atomically(comm, shared_tmp):
    path = str(shared_tmp / "w.h5")
    hp.write(path, "x", hp.DistArray.from_global(np.ones(100), comm), comm=comm)
    hp.write(path, "y", hp.DistArray.from_global(np.zeros(50), comm), comm=comm)
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            assert list(f) == ["y"]
        assert [p.name for p in shared_tmp.iterdir()] == ["w.h5"]


def test_write_table(comm, shared_tmp):
    rng = np.random.default_rng(7)
    cols = {"key": rng.integers(0, 9, 400), "val": rng.standard_normal(400)}
    lo, hi = hp.block_range(400, comm.size, comm.rank)
    t = hp.DistTable.from_local({k: v[lo:hi] for k, v in cols.items()}, comm)
    path = str(shared_tmp / "table.h5")
    hp.write_table(path, t, group="/result", comm=comm, compression="gzip")
    back = hp.read_table(path, {"key": "/result/key", "val": "/result/val"}, comm=comm)
    for k, v in cols.items():
        np.testing.assert_array_equal(back[k].allgather(), v)


def test_bad_outputs(comm, shared_tmp):
    x = hp.DistArray.from_global(np.arange(8.0), comm)
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        hp.write(str(shared_tmp / "no" / "such" / "o.h5"), "x", x, comm=comm)
    ro = shared_tmp / "ro"
    on_root(comm, lambda: (ro.mkdir(), os.chmod(ro, 0o555)))
    if os.geteuid() != 0:  # root may write anywhere
        with pytest.raises(PermissionError, match="not writable"):
            hp.write(str(ro / "o.h5"), "x", x, comm=comm)
    with pytest.raises(ValueError, match="mode"):
        hp.write(str(shared_tmp / "o.h5"), "x", x, comm=comm, mode="x")
    with pytest.raises(ValueError, match="compression"):
        hp.write(str(shared_tmp / "o.h5"), "x", x, comm=comm, compression="lzf")
    with pytest.raises(TypeError, match="DistArray"):
        hp.write(str(shared_tmp / "o.h5"), "x", np.arange(3), comm=comm)
    s = hp.DistArray.from_global(np.array([b"a", b"b", b"c"]), comm)
    with pytest.raises(DtypeError):
        hp.write(str(shared_tmp / "o.h5"), "x", s, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        assert sorted(p.name for p in shared_tmp.iterdir()) == ["ro"]  # nothing left behind


@pytest.mark.parametrize("option", ["contiguous", "gzip"])
@pytest.mark.parametrize("mode", ["w", "a"])
def test_failed_write_leaves_nothing(comm, shared_tmp, option, mode):
    """ENOSPC on one rank while writing data: every rank raises, the old data survives."""
    from hpcproc import _faults

    path = str(shared_tmp / "keep.h5")
    hp.write(path, "x", hp.DistArray.from_global(np.arange(6.0), comm), comm=comm)
    new = hp.DistArray.from_global(np.arange(6.0) + 1, comm)
    _faults.arm("write.data", ranks=[comm.size - 1])
    try:
        with pytest.raises(OSError, match="No space left"):
            hp.write(path, "x" if mode == "w" else "y", new, comm=comm, mode=mode,
                     **OPTIONS[option])
    finally:
        _faults.disarm()
    np.testing.assert_array_equal(hp.read(path, "x", comm=comm).allgather(), np.arange(6.0))
    comm.Barrier()
    if comm.rank == 0:
        assert [p.name for p in shared_tmp.iterdir()] == ["keep.h5"]
        with h5py.File(path, "r") as f:
            assert list(f) == ["x"]


def test_blocks_of_different_dtypes_rejected(comm, shared_tmp):
    local = np.arange(4, dtype="f8" if comm.rank == 0 else "f4")
    x = hp.DistArray(local, (4 * comm.size,), 4 * comm.rank, comm)
    if comm.size > 1:
        with pytest.raises(hp.ArgumentMismatchError, match="different `x`.*float64.*float32"):
            hp.write(str(shared_tmp / "d.h5"), "x", x, comm=comm)
    bad = hp.DistArray(local.astype(object) if comm.rank == comm.size - 1 else local,
                       (4 * comm.size,), 4 * comm.rank, comm)
    with pytest.raises(Exception, match="non-numeric|different `x`.*dtype=object"):
        hp.write(str(shared_tmp / "d.h5"), "x", bad, comm=comm)


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (hdf5-tools) not installed")
def test_h5dump_reads_output(comm, shared_tmp):
    path = str(shared_tmp / "dump.h5")
    x = hp.DistArray.from_global(np.arange(30.0).reshape(10, 3), comm)
    hp.write(path, "c", x, comm=comm)
    hp.write(path, "z", x, comm=comm, mode="a", compression="gzip", shuffle=True)
    if comm.rank == 0:
        out = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert 'DATASET "c"' in out.stdout and 'DATASET "z"' in out.stdout
        full = subprocess.run(["h5dump", "-d", "/z", path], capture_output=True, text=True,
                              timeout=60)
        assert full.returncode == 0 and "29" in full.stdout
