"""Every file a read depends on is an input: link chains, VDS sources, external raw files.

* Reads through any chain of soft and external links return what h5py returns, and
  ``hp.dataset_info`` names the file and dataset that hold the storage.
* ``DatasetInfo.sources`` names a virtual dataset's source files (resolved as HDF5
  resolves them: relative to the VDS file's directory first) and external raw files.
* ``--out``, ``--trace``, ``--plot`` and ``hp.write(mode="w")`` refuse every such file
  before anything runs, and the file keeps every byte.

Tests marked ``mpi`` run in-process at 1, 2 and 3 ranks; the others launch their own
``mpiexec`` jobs and run once, serially.
"""

import hashlib
import os

import h5py
import numpy as np
import pytest

import hpcproc as hp
from hpcproc.io import lineage
from support import SERIAL_ONLY, hpcproc_cmd, on_root, run

N = 101


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _snapshot(d) -> dict:
    return {os.path.relpath(os.path.join(r, n), d): _digest(os.path.join(r, n))
            for r, _, fs in os.walk(d) for n in fs}


def _make(d):
    """a/data.h5 (/x, /sx soft -> /x), b/mid.h5 (/m external -> ../a/data.h5:/x),
    top.h5 with every chain; a/src.h5 + a/vds.h5 (/x virtual over src.h5:/x, relative
    name; /ext with external raw storage a/raw.bin); a decoy src.h5 next to top.h5."""
    os.makedirs(d / "a")
    os.makedirs(d / "b")
    x = np.arange(N, dtype="f8")[::-1] * 1.5
    with h5py.File(d / "a" / "data.h5", "w") as f:
        f["x"] = x
        f["sx"] = h5py.SoftLink("/x")
        f["keep"] = np.arange(3)
    with h5py.File(d / "b" / "mid.h5", "w") as f:
        f["m"] = h5py.ExternalLink("../a/data.h5", "/x")
    with h5py.File(d / "top.h5", "w") as f:
        f["e"] = h5py.ExternalLink("a/data.h5", "/x")
        f["s"] = h5py.SoftLink("/e")                       # soft -> external
        f["es"] = h5py.ExternalLink("a/data.h5", "/sx")    # external -> soft (target file)
        f["ee"] = h5py.ExternalLink("b/mid.h5", "/m")      # external -> external
        f["see"] = h5py.SoftLink("/ee")                    # soft -> external -> external
        g = f.create_group("g")
        g["rel"] = h5py.SoftLink("sub/y")                  # relative soft link
        g.create_group("sub")["y"] = h5py.SoftLink("/s")
    with h5py.File(d / "a" / "src.h5", "w") as f:
        f["x"] = x * 2
        f["precious"] = np.arange(5)
    with h5py.File(d / "src.h5", "w") as f:  # a decoy: HDF5 must not pick this one
        f["x"] = -x
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource("src.h5", "x", shape=(N,))
    cwd = os.getcwd()
    os.chdir(d / "a")  # external raw file names are relative to the current directory
    try:
        with h5py.File("vds.h5", "w") as f:
            f.create_virtual_dataset("x", layout)
            f.create_dataset("ext", shape=(N,), dtype="f8",
                             external=[(str(d / "a" / "raw.bin"), 0, 8 * N)])
            f["ext"][:] = x + 1
    finally:
        os.chdir(cwd)
    with h5py.File(d / "vlink.h5", "w") as f:  # an external link to a VDS
        f["v"] = h5py.ExternalLink("a/vds.h5", "/x")


@pytest.fixture
def files(comm, shared_tmp):
    on_root(comm, _make, shared_tmp)
    lineage.reset()
    yield shared_tmp
    lineage.reset()


CHAINS = ["e", "s", "es", "ee", "see", "g/rel"]


@pytest.mark.mpi
@pytest.mark.parametrize("name", CHAINS)
def test_link_chains_read_what_h5py_reads(comm, files, name, monkeypatch):
    monkeypatch.chdir(files / "b")  # relative link names must not depend on the cwd
    with h5py.File(files / "top.h5", "r") as f:
        want = f[name][()]
        real = f[name].file.filename
    info = hp.dataset_info(str(files / "top.h5"), "/" + name, comm=comm)
    assert os.path.samefile(info.path, real)
    assert os.path.samefile(info.path, files / "a" / "data.h5") and info.name == "/x"
    with h5py.File(info.path, "r") as g:  # the name it reports leads to the same data
        np.testing.assert_array_equal(g[info.name][()], want)
    for method in ("auto", "h5py", "direct"):
        got = hp.read(str(files / "top.h5"), "/" + name, method=method, comm=comm)
        np.testing.assert_array_equal(got.gather(root=None), want)


@pytest.mark.mpi
def test_vds_sources_resolved_as_hdf5_resolves_them(comm, files, monkeypatch):
    monkeypatch.chdir(files)  # a decoy src.h5 here: HDF5 reads a/src.h5 (the VDS's dir)
    with h5py.File(files / "a" / "vds.h5", "r") as f:
        want = f["x"][()]
    with h5py.File(files / "a" / "src.h5", "r") as f:
        np.testing.assert_array_equal(want, f["x"][()])
    for target in [("a/vds.h5", "/x"), ("vlink.h5", "/v")]:
        info = hp.dataset_info(*target, comm=comm)
        assert info.layout == "virtual"
        assert [os.path.realpath(p) for p in info.sources] == \
            [os.path.realpath(files / "a" / "src.h5")]
        np.testing.assert_array_equal(hp.read(*target, comm=comm).gather(root=None), want)
    info = hp.dataset_info("a/vds.h5", "/ext", comm=comm)
    assert info.layout == "external"
    assert info.sources == (str(files / "a" / "raw.bin"),)


def _make_prefixed(d):
    """p/vds2.h5:/x maps only.h5:/x, a file that exists only in q/ (found through
    HDF5_VDS_PREFIX), and a decoy only.h5 in the current directory."""
    os.makedirs(d / "p")
    os.makedirs(d / "q")
    with h5py.File(d / "q" / "only.h5", "w") as f:
        f["x"] = np.arange(N, dtype="f8") * 3
    with h5py.File(d / "only.h5", "w") as f:
        f["x"] = -np.arange(N, dtype="f8")
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource("only.h5", "x", shape=(N,))
    with h5py.File(d / "p" / "vds2.h5", "w") as f:
        f.create_virtual_dataset("x", layout)


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("prefix", ["abs", "${ORIGIN}/../q"])
def test_vds_prefix_environment_is_honoured(tmp_path, prefix, ranks):
    """HDF5 reads HDF5_VDS_PREFIX when it starts: set for the whole job, as users do."""
    _make_prefixed(tmp_path)
    env = {"HDF5_VDS_PREFIX": str(tmp_path / "q") if prefix == "abs" else prefix}
    with h5py.File(tmp_path / "q" / "only.h5", "r") as f:
        want = f["x"][()]
    before = _snapshot(tmp_path)
    proc = run(hpcproc_cmd("sort", "p/vds2.h5:/x", "--out", "q/only.h5"), ranks=ranks,
               timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hpcproc: error: --out q/only.h5 is an input of this job" in proc.stderr
    assert _snapshot(tmp_path) == before
    # the decoy in the current directory is not what HDF5 reads: writing it is allowed
    proc = run(hpcproc_cmd("sort", "p/vds2.h5:/x", "--descending", "--out", "only.h5"),
               ranks=ranks, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(tmp_path / "only.h5", "r") as f:
        np.testing.assert_array_equal(f["x"][()], np.sort(want)[::-1])


def _make_pattern(d):
    """pat.h5:/v, an unlimited VDS over f-0.h5, f-1.h5, f-2.h5 (file name ``f-%b.h5``)."""
    os.makedirs(d / "pat")
    for i in range(3):
        with h5py.File(d / "pat" / f"f-{i}.h5", "w") as f:
            f["x"] = np.arange(10.0) + 100 * i
    unlimited = h5py.h5s.UNLIMITED
    vspace = h5py.h5s.create_simple((30,), (unlimited,))
    vspace.select_hyperslab((0,), (unlimited,), stride=(10,), block=(10,))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_virtual(vspace, b"f-%b.h5", b"/x", h5py.h5s.create_simple((10,), (10,)))
    with h5py.File(d / "pat" / "pat.h5", "w") as f:
        h5py.h5d.create(f.id, b"v", h5py.h5t.IEEE_F64LE, vspace, dcpl=dcpl)


@pytest.mark.mpi
def test_vds_file_name_pattern_names_every_source(comm, shared_tmp):
    on_root(comm, _make_pattern, shared_tmp)
    d = shared_tmp / "pat"
    with h5py.File(d / "pat.h5", "r") as f:
        want = f["v"][()]
    info = hp.dataset_info(str(d / "pat.h5"), "/v", comm=comm)
    assert info.sources == tuple(str(d / f"f-{i}.h5") for i in range(3))
    x = hp.read(str(d / "pat.h5"), "/v", comm=comm)
    np.testing.assert_array_equal(x.gather(root=None), want)
    before = _digest(d / "f-1.h5") if comm.rank == 0 else None
    with pytest.raises(hp.OutputIsInputError):
        hp.write(str(d / "f-1.h5"), "/y", x, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        assert _digest(d / "f-1.h5") == before
    comm.Barrier()
    lineage.reset()


@pytest.mark.mpi
@pytest.mark.parametrize("target, victim", [
    (("a/vds.h5", "/x"), "a/src.h5"), (("vlink.h5", "/v"), "a/src.h5"),
    (("a/vds.h5", "/ext"), "a/raw.bin"), (("top.h5", "/see"), "a/data.h5")])
def test_write_refuses_a_file_behind_what_was_read(comm, files, target, victim, monkeypatch):
    monkeypatch.chdir(files)
    x = hp.read(*target, comm=comm)
    before = _snapshot(files) if comm.rank == 0 else None
    with pytest.raises(hp.OutputIsInputError, match="is an input of this job"):
        hp.write(victim, "/y", x, comm=comm)
    comm.Barrier()
    if comm.rank == 0:
        assert _snapshot(files) == before
    comm.Barrier()


def _cli(argv, comm):
    from hpcproc.cli import _with_global_options, build_parser, commands

    args = _with_global_options(build_parser()).parse_args([str(a) for a in argv])
    args.no_progress = True
    return commands()[args.command](args, comm)


@pytest.mark.mpi
@pytest.mark.parametrize("argv", [
    ["sort", "a/vds.h5:/x", "--out", "a/src.h5"],
    ["sort", "vlink.h5:/v", "--out", "a/src.h5"],
    ["sort", "top.h5:/s", "--out", "a/data.h5"],
    ["sort", "a/vds.h5:/ext", "--out", "a/raw.bin"],
    ["groupby", "top.h5", "--key", "/see", "--agg", "size", "--out", "a/data.h5"],
    ["groupby", "a/vds.h5", "--key", "/x", "--value", "/ext", "--out", "a/raw.bin"],
    ["join", "top.h5:/es", "a/vds.h5:/x", "--out", "a/src.h5"],
])
def test_cli_out_behind_an_input_is_refused_before_reading(comm, files, argv, monkeypatch):
    monkeypatch.chdir(files)
    before = _snapshot(files) if comm.rank == 0 else None
    with pytest.raises(hp.OutputIsInputError, match="is an input of this job"):
        _cli(argv, comm)
    assert lineage.inputs() == []  # refused before any data was read
    comm.Barrier()
    if comm.rank == 0:
        assert _snapshot(files) == before
    comm.Barrier()


@pytest.mark.mpi
def test_cli_out_elsewhere_still_works(comm, files, monkeypatch):
    monkeypatch.chdir(files)
    assert _cli(["sort", "top.h5:/see", "--out", "sorted.h5"], comm) == 0
    comm.Barrier()
    if comm.rank == 0:
        with h5py.File("a/data.h5", "r") as f, h5py.File("sorted.h5", "r") as g:
            np.testing.assert_array_equal(g["see"][()], np.sort(f["x"][()]))
    comm.Barrier()


SIDE_CASES = [
    (["stats", "top.h5:/e"], "--trace", "a/data.h5"),
    (["stats", "top.h5:/see"], "--plot", "b/mid.h5"),
    (["stats", "a/vds.h5:/x"], "--trace", "a/src.h5"),
    (["hist", "vlink.h5:/v"], "--trace", "a/src.h5"),
    (["hist", "top.h5:/s"], "--plot", "a/data.h5"),  # hist's own --plot (the histogram)
    (["stats", "a/vds.h5:/ext"], "--trace", "a/raw.bin"),
    (["groupby", "top.h5", "--key", "/s", "--out", "o.h5"], "--trace", "a/data.h5"),
    (["join", "top.h5", "a/vds.h5", "--on", "/x", "--out", "o.h5"], "--plot", "a/src.h5"),
]


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("argv, option, victim", SIDE_CASES)
def test_trace_or_plot_behind_an_input_is_refused(tmp_path, argv, option, victim, ranks):
    _make(tmp_path)
    before = _snapshot(tmp_path)
    proc = run(hpcproc_cmd(*argv, option, victim), ranks=ranks, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"hpcproc: error: {option} {victim} is an input of this job" in proc.stderr
    assert proc.stderr.count("hpcproc: error:") == 1, proc.stderr  # printed once
    assert "MPI_Abort" not in proc.stderr and "application called" not in proc.stderr
    assert _snapshot(tmp_path) == before and not proc.stdout.strip()  # nothing ran


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [2, 3])
def test_sort_out_vds_source_refused_by_the_command(tmp_path, ranks):
    _make(tmp_path)
    before = _snapshot(tmp_path)
    proc = run(hpcproc_cmd("sort", "a/vds.h5:/x", "--out", "a/src.h5"), ranks=ranks,
               timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hpcproc: error: --out a/src.h5 is an input of this job" in proc.stderr
    assert "MPI_Abort" not in proc.stderr and "application called" not in proc.stderr
    assert _snapshot(tmp_path) == before
    with h5py.File(tmp_path / "a" / "src.h5", "r") as f:
        assert sorted(f) == ["precious", "x"]
