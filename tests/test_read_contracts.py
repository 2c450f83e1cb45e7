"""A read is exactly what h5py returns, or one clear error on every rank (issues 13, 14).

Links (soft, external, external into another directory), external raw storage, virtual
datasets, compact and never-written datasets, userblocks; unavailable compression
filters, corrupt chunks read by one rank only, corrupt object headers. Tests marked
``mpi`` run serially and under 2 and 3 ranks; the others launch ``hpcproc`` under
``mpiexec`` themselves.
"""

import os

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.errors import DatasetNotFoundError
from support import SERIAL_ONLY, hpcproc_cmd, on_root, run

DATA = np.arange(100, dtype="<f8") * 1.5 - 7


def _gather(comm, x):
    """The whole array from a DistArray (its blocks in rank order)."""
    parts = comm.allgather((x.offset, x.local))
    return np.concatenate([p for _, p in sorted(parts, key=lambda t: t[0])])


def make_linked(d):
    """``parent.h5`` in ``d`` with datasets reached in every odd way; ``/pad`` fills the
    parent so that reading it at a target's offset gives other numbers."""
    os.makedirs(d / "sub", exist_ok=True)
    with h5py.File(d / "sub" / "target.h5", "w") as f:
        f["g/x"] = DATA
        f.create_dataset("g/chunked", data=DATA, chunks=(7,), compression="gzip")
    with h5py.File(d / "src.h5", "w") as f:
        f["a"] = DATA[:60]
        f["b"] = DATA[60:]
    with open(d / "raw.bin", "wb") as fh:
        fh.write(b"\0" * 16 + DATA.tobytes())
    with h5py.File(d / "parent.h5", "w") as f:
        f["pad"] = -np.ones(4096)
        f["ext"] = h5py.ExternalLink("sub/target.h5", "/g/x")  # relative to parent's dir
        f["ext_chunked"] = h5py.ExternalLink("sub/target.h5", "/g/chunked")
        f["soft"] = h5py.SoftLink("/pad")
        f["grp/inner"] = DATA
        f["soft_in_group"] = h5py.SoftLink("/grp/inner")
        f.create_dataset("external_raw", shape=DATA.shape, dtype="<f8",
                         external=[(str(d / "raw.bin"), 16, DATA.nbytes)])
        layout = h5py.VirtualLayout(shape=DATA.shape, dtype="<f8")
        layout[:60] = h5py.VirtualSource(str(d / "src.h5"), "a", shape=(60,))
        layout[60:] = h5py.VirtualSource(str(d / "src.h5"), "b", shape=(40,))
        f.create_virtual_dataset("virtual", layout, fillvalue=-1)
        rel = h5py.VirtualLayout(shape=DATA.shape, dtype="<f8")  # sources next to the file
        rel[:60] = h5py.VirtualSource("src.h5", "a", shape=(60,))
        rel[60:] = h5py.VirtualSource("src.h5", "b", shape=(40,))
        f.create_virtual_dataset("virtual_relative", rel, fillvalue=-1)
        f["ext_group"] = h5py.ExternalLink("sub/target.h5", "/g")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        h5py.h5d.create(f.id, b"compact", h5py.h5t.IEEE_F64BE,
                        h5py.h5s.create_simple((50,)), dcpl=dcpl)
        f["compact"][:] = DATA[:50]
        f.create_dataset("unwritten", shape=(70,), dtype="<i4", fillvalue=-5)
        f.create_dataset("unwritten_chunked", shape=(70,), dtype="<f4", fillvalue=2.5,
                         chunks=(8,))
    with h5py.File(d / "userblock.h5", "w", userblock_size=1024) as f:
        f["pad"] = np.ones(300)
        f["x"] = DATA
    with open(d / "userblock.h5", "r+b") as fh:  # a userblock with content, as tools write
        fh.write(b"#!user block\n" + b"\x7f" * 200)


NAMES = ["ext", "ext_chunked", "ext_group/x", "soft", "soft_in_group", "external_raw",
         "virtual", "virtual_relative", "compact", "unwritten", "unwritten_chunked"]


@pytest.fixture
def linked(comm, shared_tmp):
    on_root(comm, make_linked, shared_tmp)
    return shared_tmp


@pytest.mark.mpi
@pytest.mark.parametrize("name", NAMES)
def test_odd_storage_reads_as_h5py(comm, linked, name, monkeypatch):
    path = linked / "parent.h5"
    monkeypatch.chdir("/")  # links resolve relative to the parent file, not the cwd
    with h5py.File(path, "r") as f:
        ref = f[name][()]
    x = hp.read(str(path), name, comm=comm)
    np.testing.assert_array_equal(_gather(comm, x), ref)
    assert x.dtype == ref.dtype.newbyteorder("=")
    s = hp.stats(f"{path}:/{name}", comm=comm)
    r64 = ref.astype(np.float64)
    assert s["count"] == ref.size and s["min"] == ref.min() and s["max"] == ref.max()
    assert s["mean"] == pytest.approx(r64.mean(), rel=1e-12, abs=1e-12)
    blocks = list(hp.blocks(str(path), name, block_bytes=64, comm=comm))
    got = np.concatenate(comm.allgather(np.concatenate([b.local for b in blocks])))
    np.testing.assert_array_equal(np.sort(got), np.sort(ref))


@pytest.mark.mpi
def test_external_link_records_the_real_file(comm, linked):
    info = hp.dataset_info(str(linked / "parent.h5"), "/ext", comm=comm)
    assert os.path.samefile(info.path, linked / "sub" / "target.h5")
    assert info.name == "/g/x" and info.direct_readable
    x = hp.read(str(linked / "parent.h5"), "/ext", comm=comm, method="direct")
    np.testing.assert_array_equal(_gather(comm, x), DATA)


def _odd_types(path):
    """HDF5 number types numpy has no layout for: HDF5 converts them on read."""
    from h5py import h5d, h5s, h5t

    values = np.arange(-50, 50, dtype=np.int32) * 1000
    with h5py.File(path, "w") as f:
        for name, base, set_up, data in (
                ("i20", h5t.STD_I32LE, lambda t: t.set_precision(20), values),
                ("i16_at_8", h5t.STD_I32LE,
                 lambda t: (t.set_precision(16), t.set_offset(8)), values // 1000),
                ("f32_bias", h5t.IEEE_F32LE, lambda t: t.set_ebias(100),
                 np.arange(100, dtype=np.float32) - 20.5)):
            t = base.copy()
            set_up(t)
            for chunks in (None, (7,)):
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                if chunks:
                    dcpl.set_chunk(chunks)
                d = h5d.create(f.id, f"{name}_{'chunked' if chunks else 'contiguous'}".encode(),
                               t, h5s.create_simple((100,)), dcpl=dcpl)
                d.write(h5s.ALL, h5s.ALL, data)


@pytest.mark.mpi
def test_converted_number_types_read_as_h5py(comm, shared_tmp):
    """Reduced precision, a bit offset, another exponent bias: the raw bytes are not the
    values, so the direct path must not read them (it read 1047576 for -1000)."""
    path = str(shared_tmp / "types.h5")
    on_root(comm, _odd_types, path)
    with h5py.File(path, "r") as f:
        names = sorted(f)
        want = {n: f[n][()] for n in names}
    for name in names:
        x = hp.read(path, name, comm=comm)
        np.testing.assert_array_equal(_gather(comm, x), want[name], err_msg=name)
        s = hp.stats((path, name), comm=comm)
        assert (s["min"], s["max"]) == (want[name].min(), want[name].max()), name
        assert s["sum"] == want[name].astype(np.float64).sum(), name
    with pytest.raises(ValueError, match="converted HDF5 number type"):
        hp.read(path, "i20_contiguous", comm=comm, method="direct")


@pytest.mark.mpi
def test_userblock_direct_read(comm, linked):
    path = linked / "userblock.h5"
    info = hp.dataset_info(str(path), "/x", comm=comm)
    assert info.direct_readable
    x = hp.read(str(path), "/x", comm=comm, method="direct")
    np.testing.assert_array_equal(_gather(comm, x), DATA)


@pytest.mark.mpi
def test_dangling_link_and_missing_name(comm, shared_tmp):
    path = shared_tmp / "dangling.h5"

    def make():
        with h5py.File(path, "w") as f:
            f["gone"] = h5py.ExternalLink("no-such-file.h5", "/x")
            f["x"] = DATA
    on_root(comm, make)
    with pytest.raises(OSError, match=r"cannot open '/gone' \(external link to "
                                      r"no-such-file.h5:/x\)"):
        hp.read(str(path), "/gone", comm=comm)
    with pytest.raises(DatasetNotFoundError, match="no dataset '/nope/x'"):
        hp.read(str(path), "/nope/x", comm=comm)


def _corrupt_header(path, name):
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f[name].id).addr
    with open(path, "r+b") as fh:
        fh.seek(addr)
        fh.write(b"\x09")  # object header version 9 does not exist


@pytest.mark.mpi
def test_corrupt_object_header_is_not_a_missing_dataset(comm, shared_tmp):
    path = shared_tmp / "corrupt.h5"

    def make():
        with h5py.File(path, "w") as f:
            f["x"] = DATA
        _corrupt_header(path, "x")
    on_root(comm, make)
    with pytest.raises(OSError, match=r"cannot open '/x' in .*corrupt.h5: .*object header") \
            as err:
        hp.read(str(path), "/x", comm=comm)
    assert not isinstance(err.value, KeyError)


def make_unknown_filter(path, rows=100, chunk=40):
    """A dataset whose pipeline names LZ4 (32004), with raw chunks stored as they are:
    no LZ4 plugin is installed, so HDF5 cannot read them. (Not Blosc: importing netCDF4
    points HDF5_PLUGIN_PATH at its own plugins, Blosc, Zstd and bzip2 among them.)"""
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", (rows,), "<f8", chunks=(chunk,), compression=32004,
                             allow_unknown_filter=True)
        for i in range(0, rows, chunk):
            d.id.write_direct_chunk((i,), np.arange(chunk, dtype="<f8").tobytes(),
                                    filter_mask=0)


@pytest.mark.mpi
@pytest.mark.parametrize("rows,chunk", [(100, 40), (10, 10)])  # (10, 10): one chunk only
def test_missing_filter_is_one_clear_error(comm, shared_tmp, rows, chunk):
    path = shared_tmp / "lz4.h5"
    on_root(comm, make_unknown_filter, path, rows, chunk)
    for call in (lambda: hp.read(str(path), "/x", comm=comm),
                 lambda: hp.stats(f"{path}:/x", comm=comm),
                 lambda: list(hp.blocks(str(path), "/x", comm=comm))):
        with pytest.raises(OSError, match=r"HDF5 filter 32004 \(LZ4\).*pip install "
                                          r"hdf5plugin.*HDF5_PLUGIN_PATH"):
            call()


def make_corrupt_chunk(path):
    """Six gzip chunks of 20 rows; the last chunk's bytes are overwritten on disk."""
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(120, dtype="<i8"), chunks=(20,),
                         compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["x"].id.get_chunk_info(5)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


@pytest.mark.mpi
def test_corrupt_chunk_read_by_one_rank_fails_everywhere(comm, shared_tmp):
    path = shared_tmp / "badchunk.h5"
    on_root(comm, make_corrupt_chunk, path)
    with pytest.raises(OSError, match=r"cannot read rows .* of '/x' in .*badchunk.h5"):
        hp.read(str(path), "/x", comm=comm)
    with pytest.raises(OSError, match="cannot read rows"):
        hp.stats(f"{path}:/x", comm=comm, block_bytes=160)
    x = hp.read(str(path), "/x", comm=comm, rows=(0, 100))  # the good chunks still read
    np.testing.assert_array_equal(_gather(comm, x), np.arange(100))


# --- the command line, launched at 1, 2 and 3 ranks -------------------------------------

@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_stats_of_links_and_odd_layouts(tmp_path, ranks):
    make_linked(tmp_path)
    targets = [f"{tmp_path / 'parent.h5'}:/{n}" for n in NAMES]
    proc = run(hpcproc_cmd("stats", "--json", *targets), ranks=ranks, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json
    results = json.loads(proc.stdout)
    with h5py.File(tmp_path / "parent.h5", "r") as f:
        for name, r in zip(NAMES, results):
            ref = f[name][()].astype(np.float64)
            assert r["count"] == ref.size, name
            assert r["sum"] == pytest.approx(ref.sum(), rel=1e-12), name
            assert (r["min"], r["max"]) == (ref.min(), ref.max()), name


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_missing_filter_ends_with_one_line(tmp_path, ranks):
    path = tmp_path / "lz4.h5"
    make_unknown_filter(path, rows=10, chunk=10)  # one chunk: ranks 1 and 2 own no rows
    proc = run(hpcproc_cmd("stats", f"{path}:/x"), ranks=ranks, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcproc: error: "), proc.stderr
    assert "32004 (LZ4)" in lines[0] and "hdf5plugin" in lines[0]
    assert "MPI_Abort" not in proc.stderr


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_cli_corrupt_chunk_ends_the_job(tmp_path, ranks):
    path = tmp_path / "badchunk.h5"
    make_corrupt_chunk(path)
    proc = run(hpcproc_cmd("stats", f"{path}:/x"), ranks=ranks, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read rows" in lines[0], proc.stderr
    assert "MPI_Abort" not in proc.stderr
