"""Lineage attributes and the rank-count-independent checksum (run at 1, 2 and 3 ranks).

Sort and group-by outputs are written through hp.write_table, which stamps lineage:
``test_sort_and_groupby_lineage`` checks both.
"""

import json
import os
import time
import zlib

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.io import direct, lineage
from support import on_root

pytestmark = pytest.mark.mpi


def _ref_crc(a) -> str:
    """Independent reference: zlib over the little-endian C-order bytes."""
    a = np.asarray(a)
    return "crc32:%08x" % zlib.crc32(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes())


def _make(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if isinstance(v, tuple):
                f.create_dataset(k, data=v[0], chunks=v[1])
            else:
                f[k] = v


@pytest.fixture(autouse=True)
def _fresh():
    lineage.reset()
    yield
    lineage.reset()


def test_crc32_combine_matches_zlib():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 7, 4096, 9_999, 10_000):
        a, b = data[:cut], data[cut:]
        got = lineage.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b))
        assert got == zlib.crc32(data)
    parts = [data[:3], b"", data[3:5000], data[5000:]]
    assert lineage.combine_parts([(zlib.crc32(p), len(p)) for p in parts]) \
        == (zlib.crc32(data), len(data))


# piece=40: the direct reader checksums while reading, a piece at a time (hpcproc.io.direct
# .PIECE, 256 KiB by default); 40 bytes splits these small blocks into many pieces.
@pytest.mark.parametrize("piece", [None, 40])
@pytest.mark.parametrize("dtype,chunks", [(">f8", None), ("<i4", None), ("<f4", (7, 3))])
def test_read_checksum_equals_reference(comm, shared_tmp, dtype, chunks, piece, monkeypatch):
    if piece:
        monkeypatch.setattr(direct, "PIECE", piece)
    a = (np.arange(301 * 3) * 1.5).astype(dtype).reshape(301, 3)
    path = str(shared_tmp / "in.h5")
    on_root(comm, _make, path, x=(a, chunks) if chunks else a)
    x = hp.read(path, "/x", comm=comm)
    y = hp.read(path, "/x", comm=comm, rows=(10, 250))
    np.testing.assert_array_equal(x.local, a[x.offset:x.offset + x.local.shape[0]])
    np.testing.assert_array_equal(y.local, a[10 + y.offset:10 + y.offset + y.local.shape[0]])
    recs = lineage.inputs()
    assert [r["rows"] for r in recs] == [[0, 301], [10, 250]]
    assert recs[0]["checksum"] == _ref_crc(a)
    assert recs[1]["checksum"] == _ref_crc(a[10:250])
    native = np.dtype(dtype).newbyteorder("=").name
    assert recs[0]["bytes"] == a.nbytes and recs[0]["dtype"] == native
    assert recs[0]["file_size"] == os.path.getsize(path)
    assert recs[0]["shape"] == [301, 3]


@pytest.mark.parametrize("piece", [None, 40])
def test_blocks_and_table_checksums(comm, shared_tmp, piece, monkeypatch):
    if piece:
        monkeypatch.setattr(direct, "PIECE", piece)
    a = np.random.default_rng(2).normal(size=5000)
    b = np.arange(5000, dtype=np.int64)
    path = str(shared_tmp / "in.h5")
    on_root(comm, _make, path, a=a, b=(b, (512,)))
    for _ in hp.blocks(path, "/a", block_bytes=3000, comm=comm):
        pass
    hp.read_table(path, {"a": "/a", "b": "/b"}, comm=comm, rows=(100, 4000))
    recs = {(r["dataset"], tuple(r["rows"])): r["checksum"] for r in lineage.inputs()}
    assert recs[("/a", (0, 5000))] == _ref_crc(a)
    assert recs[("/a", (100, 4000))] == _ref_crc(a[100:4000])
    assert recs[("/b", (100, 4000))] == _ref_crc(b[100:4000])


@pytest.mark.parametrize("chunks", [None, (512,)])
def test_second_pass_over_unchanged_rows_is_not_checksummed_again(comm, shared_tmp,
                                                                   chunks, monkeypatch):
    """Multi-pass reductions (stats, then the histogram) checksum a scan once; a file
    that changed in between is checksummed again."""
    a = np.random.default_rng(5).normal(size=4000)
    path = str(shared_tmp / "in.h5")
    on_root(comm, _make, path, a=(a, chunks) if chunks else a)
    calls = []
    real_block, real_inline = lineage.block_crc32, lineage.crc32_function()

    def counting_inline(data, crc):
        calls.append(len(data))
        return real_inline(data, crc)

    def counting_block(block, crc=0):
        calls.append(block.nbytes)
        return real_block(block, crc)

    monkeypatch.setattr(lineage, "crc32_function", lambda: counting_inline)
    monkeypatch.setattr(lineage, "block_crc32", counting_block)
    for _ in hp.blocks(path, "/a", block_bytes=3000, comm=comm):
        pass
    first = sum(calls)
    assert first > 0 and lineage.inputs()[0]["checksum"] == _ref_crc(a)
    calls.clear()
    for _ in hp.blocks(path, "/a", block_bytes=3000, comm=comm):
        pass
    assert calls == [] and lineage.inputs()[0]["checksum"] == _ref_crc(a)
    b = a + 1.0  # the file changes (new mtime): checksummed again
    comm.Barrier()
    time.sleep(0.01)
    on_root(comm, _make, path, a=(b, chunks) if chunks else b)
    for _ in hp.blocks(path, "/a", block_bytes=3000, comm=comm):
        pass
    assert sum(calls) == first and lineage.inputs()[0]["checksum"] == _ref_crc(b)


def _lineage(path, name):
    with h5py.File(path, "r") as f:
        attrs = dict(f[name].attrs)
    return json.loads(attrs["hpcproc_lineage"]), attrs


def test_write_lineage_and_chain(comm, shared_tmp, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    a = np.arange(1000, dtype=np.float64)
    src, out, out2 = (str(shared_tmp / n) for n in ("in.h5", "out.h5", "out2.h5"))
    on_root(comm, _make, src, x=a)
    x = hp.read(src, "/x", comm=comm)
    hp.write(out, "/y", x, attrs={"units": "m"})
    lineage.reset()
    y = hp.read(out, "/y", comm=comm)
    hp.write_table(out2, hp.DistTable({"y": y.local * 2}, y.global_shape[0], y.offset, comm),
                   group="/t", comm=comm)
    comm.Barrier()
    rec, attrs = _lineage(out, "/y")
    assert attrs["units"] == "m"  # the user's attributes are kept
    assert attrs["hpcproc_version"] == hp.__version__ == rec["hpcproc_version"]
    assert attrs["hpcproc_ranks"] == comm.size == rec["ranks"]
    assert rec["kind"] == "write" and rec["slurm_job_id"] == "4242"
    assert rec["output"] == {"dataset": "/y"}
    assert "test_write_lineage_and_chain" in rec["caller"]
    assert rec["start"] <= rec["end"]
    assert rec["host"] == comm.bcast(__import__("socket").gethostname(), root=0)
    [inp] = rec["inputs"]
    assert inp["file"] == os.path.abspath(src) and inp["dataset"] == "/x"
    assert inp["checksum"] == _ref_crc(a) and "parent" not in inp
    rec2, _ = _lineage(out2, "/t/y")
    [inp2] = rec2["inputs"]
    assert inp2["file"] == os.path.abspath(out) and inp2["checksum"] == _ref_crc(a)
    assert inp2["parent"] == rec  # reading an output as input chains its lineage
    assert hp.read_lineage(out2, "/t/y") == rec2


def test_lineage_disabled_skips_checksum(comm, shared_tmp, monkeypatch):
    monkeypatch.setenv("HPCPROC_LINEAGE", "0")
    path = str(shared_tmp / "in.h5")
    on_root(comm, _make, path, x=np.arange(10.0))
    hp.read(path, "/x", comm=comm)
    [rec] = lineage.inputs()
    assert rec["checksum"] is None and rec["bytes"] == 80


def test_deep_chain_stays_below_attribute_limit(comm, shared_tmp):
    path = str(shared_tmp / "g0.h5")
    on_root(comm, _make, path, x=np.arange(100.0))
    for i in range(1, 12):  # 11 generations, each embedding its parent
        lineage.reset()
        x = hp.read(path, "/x", comm=comm)
        path = str(shared_tmp / f"g{i}.h5")
        hp.write(path, "/x", x)
    rec = hp.read_lineage(path, "/x")
    depth = 0
    while "parent" in rec["inputs"][0]:
        rec, depth = rec["inputs"][0]["parent"], depth + 1
    assert depth == lineage.MAX_DEPTH and "parent_ref" in rec["inputs"][0]


def test_checkpoint_lineage(comm, shared_tmp):
    src = str(shared_tmp / "in.h5")
    a = np.arange(600, dtype=np.float32)
    on_root(comm, _make, src, x=a)
    x = hp.read(src, "/x", comm=comm)
    ck_dir = shared_tmp / "ck"
    with hp.Checkpointer(ck_dir, comm) as ck:
        ck.save(3, {"x": x, "n": 5})
    with hp.Checkpointer(ck_dir, comm) as ck:
        step, state = ck.restore()  # lineage attributes do not disturb the checksums
    assert step == 3 and np.array_equal(state["x"].local, x.local)
    comm.Barrier()
    step_dir = ck_dir / "step-00000003" if (ck_dir / "step-00000003").exists() else \
        next(p for p in ck_dir.iterdir() if p.name.startswith("step-"))
    with open(step_dir / "manifest.json") as f:
        manifest = json.load(f)
    assert manifest["lineage"]["kind"] == "checkpoint"
    assert manifest["lineage"]["output"]["step"] == 3
    assert manifest["lineage"]["inputs"][0]["checksum"] == _ref_crc(a)
    rank_file = step_dir / f"rank-{comm.rank}.h5"
    if not rank_file.exists():
        rank_file = sorted(step_dir.glob("rank-*.h5"))[comm.rank]
    with h5py.File(rank_file, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names
        for n in names:
            rec = json.loads(f[n].attrs["hpcproc_lineage"])
            assert rec["ranks"] == comm.size and rec["inputs"][0]["checksum"] == _ref_crc(a)


def test_fast_crc32_agrees_with_zlib():
    pytest.importorskip("isal")
    data = np.random.default_rng(6).normal(size=50_001)
    assert lineage._crc32_impl() is not zlib.crc32
    assert lineage.block_crc32(data[:20_000], lineage.block_crc32(data[:1])) != 0
    assert lineage.block_crc32(data) == zlib.crc32(data.tobytes())
    assert lineage.block_crc32(data[1:], zlib.crc32(data[:1].tobytes())) \
        == zlib.crc32(data.tobytes())


def test_sort_and_groupby_lineage(comm, shared_tmp):
    rng = np.random.default_rng(11)
    key, val = rng.integers(0, 50, 600), rng.standard_normal(600)
    src, srt, grp = (str(shared_tmp / n) for n in ("kv.h5", "sorted.h5", "grouped.h5"))
    on_root(comm, _make, src, key=key, value=val)
    t = hp.read_table(src, {"key": "/key", "value": "/value"}, comm=comm)
    hp.write_table(srt, hp.sort(t, by="key"), comm=comm)
    hp.write_table(grp, hp.groupby(t, "key").agg(value=["sum", "count"]), comm=comm)
    comm.Barrier()
    for path in (srt, grp):
        for name in ("/key",):
            rec, attrs = _lineage(path, name)
            assert attrs["hpcproc_ranks"] == comm.size and rec["kind"] == "write"
            sums = {i["dataset"]: i["checksum"] for i in rec["inputs"]}
            assert sums == {"/key": _ref_crc(key), "/value": _ref_crc(val)}
    with h5py.File(srt) as f:
        np.testing.assert_array_equal(f["key"][...], np.sort(key, kind="stable"))
