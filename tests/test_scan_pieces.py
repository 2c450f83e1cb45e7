"""hp.stats and hp.describe over a file read in cache-sized pieces: the same bits.

A contiguous dataset is read in pieces of at most ``min(block_bytes, 8 MiB)``
(hpcproc/io/scan.py), one rank getting more pieces than another. References, none of
which uses the piece reader: the same call on the data held in memory as a DistArray
(one block per rank, uneven, rank 0 empty when there are several ranks), the same call
through ``hp.blocks`` (``method="h5py"``), and numpy for counts, extremes and histograms.
The reproducible sums do not depend on where rows are cut, so statistics must agree bit
for bit. Marked ``mpi``: serial and under 2 and 3 ranks.
"""

import dataclasses
import errno
import itertools
import os
import zlib

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc import _faults
from hpcproc.io import direct, lineage
from hpcproc.io.scan import spare_core
from hpcproc.kernels import get_threads, set_threads
from support import on_root

STATS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _dist(data, comm):
    """Uneven blocks in memory, rank 0 empty when there are several ranks."""
    n, size = len(data), comm.size
    w = np.arange(size, dtype=float) + (1.0 if size == 1 else 0.0)
    cuts = np.concatenate(([0], np.round(np.cumsum(w) / w.sum() * n))).astype(int)
    return hp.DistArray.from_local(data[cuts[comm.rank]:cuts[comm.rank + 1]], comm)


def _write(path, data):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data)


def _data(dtype, n):
    rng = np.random.default_rng(n)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return rng.integers(0 if dt.kind == "u" else -900, 900, n).astype(dt)
    d = (rng.standard_normal(n) * 3 + 1).astype(dt)
    d[1::97] = np.nan
    return d


def _assert_same(got, ref, keys):
    for k in keys:
        assert _same(got[k], ref[k]), (k, got[k], ref[k])


# bytes per piece (block_bytes): 64 MiB (one piece), not a multiple of the 1024-element
# chunks, a few rows, exactly one chunk of float64
@pytest.mark.mpi
@pytest.mark.parametrize("dtype", ["f8", "f4", ">f8", "i4", ">u2"])
@pytest.mark.parametrize("n", [1, 1023, 30_011])
def test_pieces_bit_identical(comm, shared_tmp, dtype, n):
    data = _data(dtype, n)
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    target, mem = f"{path}:/x", _dist(data, comm)
    for skipna in (False, True):
        ref = hp.stats(mem, skipna=skipna)
        via_blocks = hp.stats(target, comm=comm, skipna=skipna, method="h5py")
        _assert_same(via_blocks, ref, STATS)
        dref = hp.describe(mem, 20, range=(-4, 6), skipna=skipna, quantiles=[0.1, 0.5])
        for bb in (64 << 20, 8 * 1001 + 8, 3 * data.itemsize, 8 * 1024):
            got = hp.stats(target, comm=comm, skipna=skipna, block_bytes=bb)
            _assert_same(got, ref, STATS)
            d = hp.describe(target, 20, range=(-4, 6), skipna=skipna, comm=comm,
                            block_bytes=bb, quantiles=[0.1, 0.5])
            _assert_same(d, dref, STATS + ("counts", "edges", "quantiles"))
    valid = data[~np.isnan(data)] if data.dtype.kind == "f" else data
    np.testing.assert_array_equal(d["counts"], np.histogram(valid, 20, range=(-4, 6))[0])
    assert d["count"] == valid.size and d["min"] == valid.min() and d["max"] == valid.max()


@pytest.mark.mpi
def test_rows_of_several_columns(comm, shared_tmp):
    """Pieces of whole rows: per-column statistics (axis=0) and all elements."""
    data = np.random.default_rng(1).normal(size=(7001, 3)) * [1.0, 1e9, 3.0]
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    mem = _dist(data, comm)
    ref0, ref = hp.stats(mem, axis=0), hp.describe(mem, 9, range=(-3, 3))
    for bb in (64 << 20, 5 * 24 + 8, 24):  # 5 rows and a bit, 1 row
        got0 = hp.stats(f"{path}:/x", axis=0, comm=comm, block_bytes=bb)
        _assert_same(got0, ref0, STATS)
        got = hp.describe(f"{path}:/x", 9, range=(-3, 3), comm=comm, block_bytes=bb)
        _assert_same(got, ref, STATS + ("counts",))


@pytest.mark.mpi
@pytest.mark.parametrize("bb", [8 * 37, 8 * 1024, 8 * 1023])
def test_piece_boundaries_lose_and_repeat_nothing(comm, shared_tmp, bb):
    """Every value distinct, one bin per value: a row lost or read twice at a piece
    boundary changes a count, the exact sum or the order-dependent bits."""
    n = 10_007
    data = np.arange(n, dtype=np.float64)
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    d = hp.describe(f"{path}:/x", n, range=(-0.5, n - 0.5), comm=comm, block_bytes=bb)
    assert np.all(d["counts"] == 1) and d["count"] == n
    assert d["sum"] == n * (n - 1) / 2 and d["min"] == 0 and d["max"] == n - 1
    _assert_same(hp.stats(f"{path}:/x", comm=comm, block_bytes=bb), hp.stats(_dist(data, comm)),
                 STATS)


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<i2"])
def test_lineage_checksum_of_a_piecewise_scan(comm, shared_tmp, dtype):
    data = (np.arange(50_001) * 0.75).astype(dtype)
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    ref = "crc32:%08x" % zlib.crc32(data.astype(data.dtype.newbyteorder("<")).tobytes())
    for bb in (8 * 999, 64 << 20):
        lineage.reset()
        hp.describe(f"{path}:/x", 8, range=(0, 100), comm=comm, block_bytes=bb)
        (rec,) = lineage.inputs()
        assert rec["checksum"] == ref and rec["rows"] == [0, data.size]
        assert rec["bytes"] == data.nbytes


@pytest.mark.mpi
def test_read_error_on_one_rank_is_raised_on_every_rank(comm, shared_tmp):
    data = np.arange(20_000.0)
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, data)
    _faults.arm("scan.read", ranks={comm.size - 1}, err=errno.EIO)
    try:
        with pytest.raises(OSError, match="injected at scan.read"):
            hp.describe(f"{path}:/x", 8, range=(0, 1), comm=comm, block_bytes=8000)
        with pytest.raises(OSError, match="injected at scan.read"):
            hp.stats(f"{path}:/x", comm=comm, block_bytes=8000)
    finally:
        _faults.disarm("scan.read")
    assert hp.stats(f"{path}:/x", comm=comm)["count"] == data.size  # nothing left over


@pytest.mark.mpi
def test_empty_dataset(comm, shared_tmp):
    path = shared_tmp / "x.h5"
    on_root(comm, _write, path, np.zeros(0))
    d = hp.describe(f"{path}:/x", 4, range=(0, 1), comm=comm)
    assert d["count"] == 0 and np.all(d["counts"] == 0)
    assert hp.stats(f"{path}:/x", comm=comm)["count"] == 0


def test_row_scan_pieces_checksum_and_truncation(tmp_path):
    """The local reader: pieces tile [lo, hi) in order, values and crc32 as stored; a
    file cut short raises OSError naming the truncation."""
    data = np.arange(10_000, dtype=">f8").reshape(2500, 4)
    _write(tmp_path / "x.h5", data)
    info = hp.dataset_info(str(tmp_path / "x.h5"), "/x")
    for step, overlap in itertools.product((1, 7, 600, 5000), (True, False)):
        scan = direct.RowScan(info, 13, 2490, step, zlib.crc32, overlap=overlap)
        rows = []
        for row, piece in scan:
            assert piece.dtype.isnative and len(piece) <= step
            np.testing.assert_array_equal(piece, data[row:row + len(piece)])
            rows.append((row, row + len(piece)))
        assert rows[0][0] == 13 and rows[-1][1] == 2490
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
        assert scan.crc == zlib.crc32(data[13:2490].astype("<f8").tobytes())
    cut = tmp_path / "cut.bin"
    with open(tmp_path / "x.h5", "rb") as f:
        cut.write_bytes(f.read(info.offset + 1000 * info.row_bytes + 5))
    short = dataclasses.replace(info, path=str(cut))
    with pytest.raises(OSError, match="truncated"):
        for _ in direct.RowScan(short, 0, 2500, 300, zlib.crc32):
            pass
    it = iter(direct.RowScan(info, 0, 2500, 10, zlib.crc32))  # stopped early: no hang
    next(it)
    it.close()
    assert os.path.exists(info.path)


@pytest.mark.mpi
def test_spare_core(comm):
    """The checksum thread overlaps the consumer only with a core to spare: never when
    the rank's threads take all the cores it may use; the same answer on every call."""
    cores = min(len(os.sched_getaffinity(0)), (os.cpu_count() or 1))
    assert spare_core(comm, threads=cores) is False
    assert spare_core(comm, threads=1) is spare_core(comm, threads=1)
    if comm.size == 1 and cores > 1:
        assert spare_core(comm, threads=1) is True


@pytest.mark.mpi
@pytest.mark.parametrize("threads", [1, 64])
def test_pieces_checksum_with_and_without_overlap(comm, shared_tmp, threads):
    """The lineage checksum, numpy's counts and hp.stats' bits whether or not the
    checksum overlaps the kernels (64 threads: no core to spare, so it does not)."""
    path = shared_tmp / f"t{threads}.h5"
    data = np.random.default_rng(7).normal(size=300_001)
    data[::97] = np.nan
    on_root(comm, _write, path, data)
    ref = "crc32:%08x" % zlib.crc32(data.tobytes())
    before = get_threads()
    set_threads(threads)
    try:
        lineage.reset()
        d = hp.describe(f"{path}:/x", 16, range=(-2, 2), comm=comm, block_bytes=1 << 16)
        (rec,) = lineage.inputs()
    finally:
        set_threads(before)
    assert rec["checksum"] == ref
    np.testing.assert_array_equal(d["counts"], np.histogram(data, 16, range=(-2, 2))[0])
    assert all(_same(d[k], v) for k, v in hp.stats(_dist(data, comm)).items() if k in STATS)
