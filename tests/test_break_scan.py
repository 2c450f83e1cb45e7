"""Attacks on the piecewise scan of hp.stats / hp.describe (hpcproc/io/scan.py).

References that do not use the piece reader: the same call with ``method="h5py"`` (the
block path) bit for bit, and numpy for counts and extremes. Marked ``mpi``: serial and
under 2 and 3 ranks (the last rank gets the remainder; with 3 ranks and 1 row, two
ranks are empty).
"""

import os
import zlib

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.io import lineage
from hpcproc.io.scan import scan_pieces
from support import on_root

STATS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def _write(path, data):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data)


def _same(a, b, keys=STATS):
    for k in keys:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), \
            (k, a[k], b[k])


def _inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(4000)
    x[[3, 5, 7]] = [np.inf, -np.inf, np.nan]
    mixed = np.arange(3000, dtype=np.int64) + (1 << 62)
    mixed[::2] *= -1
    return {
        "f16": rng.standard_normal(5000).astype(np.float16),
        "f16be": rng.standard_normal(5000).astype(">f2"),
        "i64-mixed": mixed,  # beyond 2**53: a float64 sum would round
        "u64-top": np.arange(3000, dtype=np.uint64) + np.uint64(2**64 - 5000),
        "nan-inf": x,
        "one": np.array([3.5]),
        "zero": np.zeros((0, 5)),
        "i32be": rng.integers(-9, 9, 1001).astype(">i4"),
    }


@pytest.mark.mpi
@pytest.mark.parametrize("name", list(_inputs()))
def test_odd_inputs_same_bits_as_the_block_path(comm, shared_tmp, name):
    data = _inputs()[name]
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    target = f"{path}:/x"
    ref = hp.stats(target, comm=comm, method="h5py")
    for bb in (64 << 20, 1, 7, 3 * data.itemsize):
        _same(hp.stats(target, comm=comm, block_bytes=bb), ref)
    assert ref["count"] == data.size
    if data.size:
        assert ref["min"] == data.min() and ref["max"] == data.max() or np.isnan(data).any()
        if data.dtype.kind in "iu":
            assert ref["sum"] == int(data.astype(object).sum()) % 2**64 or \
                ref["sum"] == data.sum()  # integer sums are numpy's
    if data.size and data.dtype.kind == "f" and np.isfinite(data).all():
        dref = hp.describe(target, 9, comm=comm, method="h5py")
        _same(hp.describe(target, 9, comm=comm, block_bytes=7), dref, STATS + ("counts",))


@pytest.mark.mpi
def test_rows_wider_than_a_piece(comm, shared_tmp):
    """Rows of 8.8 MB (> the 8 MiB piece): one row per piece."""
    data = np.random.default_rng(2).standard_normal((3, 1_100_000))
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    ref = hp.stats(f"{path}:/x", comm=comm, method="h5py")
    for bb in (1, 64 << 20):
        _same(hp.stats(f"{path}:/x", comm=comm, block_bytes=bb), ref)
    assert ref["min"] == data.min() and ref["count"] == data.size


@pytest.mark.mpi
def test_symlink_external_link_and_vds(comm, shared_tmp):
    """A symlinked file scans piecewise (same bits, lineage checksum of the stored
    bytes); an external link and a virtual dataset give the block path's results."""
    data = np.random.default_rng(4).standard_normal(1001)

    def make():
        _write(shared_tmp / "x.h5", data)
        os.symlink(shared_tmp / "x.h5", shared_tmp / "link.h5")
        with h5py.File(shared_tmp / "ext.h5", "w") as f:
            f["x"] = h5py.ExternalLink("x.h5", "/x")
        lay = h5py.VirtualLayout(shape=(1001,), dtype="f8")
        lay[:] = h5py.VirtualSource(str(shared_tmp / "x.h5"), "x", shape=(1001,))
        with h5py.File(shared_tmp / "vds.h5", "w") as f:
            f.create_virtual_dataset("x", lay)
    on_root(comm, make)
    ref = hp.stats(f"{shared_tmp / 'x.h5'}:/x", comm=comm, method="h5py")
    for name in ("link.h5", "ext.h5", "vds.h5"):
        lineage.reset()
        got = hp.stats(f"{shared_tmp / name}:/x", comm=comm, block_bytes=8 * 37)
        _same(got, ref)
        (rec,) = lineage.inputs()
        assert rec["checksum"] == "crc32:%08x" % zlib.crc32(data.tobytes()), name


@pytest.mark.mpi
def test_lineage_off_same_results_no_checksum(comm, shared_tmp, monkeypatch):
    """HPCPROC_LINEAGE=0 skips the checksum (docs/provenance.md), nothing else."""
    data = np.arange(20_001, dtype="<i8") * 3
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    ref = hp.stats(f"{path}:/x", comm=comm, method="h5py")
    monkeypatch.setenv("HPCPROC_LINEAGE", "0")
    lineage.reset()
    _same(hp.stats(f"{path}:/x", comm=comm, block_bytes=8000), ref)
    (rec,) = lineage.inputs()
    assert rec.get("checksum") is None and rec["rows"] == [0, data.size]


@pytest.mark.mpi
def test_file_truncated_while_read_names_it_on_every_rank(comm, shared_tmp):
    """The last rank's file is cut short after its first piece: an OSError on every
    rank that names the file and dataset (it said only "unexpected end of file")."""
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, np.arange(300_000, dtype=np.float64))
    with pytest.raises(OSError, match=f"{path}:/x: unexpected end of file.*truncated"):
        for i, _ in enumerate(scan_pieces(str(path), "x", comm, block_bytes=1 << 16)):
            if i == 0 and comm.rank == comm.size - 1:
                os.truncate(path, os.path.getsize(path) - 100_000)
