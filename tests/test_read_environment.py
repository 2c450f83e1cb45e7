"""The environment that changes what HDF5 reads must be the same on every rank.

Rank 0 resolves a dataset's links for its metadata, but every rank's HDF5 opens files
(virtual dataset sources, external links, filter plugins) with its own environment. A
variable such as ``HDF5_VDS_PREFIX`` that differs between ranks (here: an MPMD launch,
``mpiexec -n 1 -env VAR a prog : -n 1 -env VAR b prog``) would make ranks read different
files. It is one clear error on every rank, before any file is opened, and the job ends
with a non-zero status, without a hang; ranks that agree read what h5py reads.

Tests marked ``mpi`` run in-process at 1, 2 and 3 ranks; the others launch their own
``mpiexec`` jobs and run once, serially.
"""

import json
import os
import sys

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import MPIEXEC, SERIAL_ONLY, child_env, hpcproc_cmd, run

N = 1000
READ = """
import sys
import numpy as np
import hpcproc as hp
x = hp.read(sys.argv[1], sys.argv[2]).gather(root=0)
if x is not None:
    np.save(sys.argv[3], x)
"""


def _make(d):
    """Two copies of t.h5 (/x: 0..N-1 in a/, its negatives in b/) and, in top/,
    ext.h5:/x, an external link to t.h5:/x, and vds.h5:/x, a virtual dataset over
    t.h5:/x: no t.h5 next to them, so HDF5_EXT_PREFIX / HDF5_VDS_PREFIX picks the copy.
    Also plain.h5:/x, contiguous (no link)."""
    for sub, sign in (("a", 1), ("b", -1)):
        os.makedirs(d / sub)
        with h5py.File(d / sub / "t.h5", "w") as f:
            f["x"] = sign * np.arange(N, dtype="f8")
    os.makedirs(d / "top")
    with h5py.File(d / "top" / "ext.h5", "w") as f:
        f["x"] = h5py.ExternalLink("t.h5", "/x")
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource("t.h5", "x", shape=(N,))
    with h5py.File(d / "top" / "vds.h5", "w") as f:
        f.create_virtual_dataset("x", layout)
    with h5py.File(d / "top" / "plain.h5", "w") as f:
        f["x"] = np.arange(N, dtype="f8")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("environ")
    _make(d)
    return d


def _mpmd(var, values, prog, wdirs=None):
    """``mpiexec`` running ``prog`` on one rank per value: ``var`` set to the value, or
    unset (None); ``wdirs``: the working directory of each rank."""
    cmd = [MPIEXEC]
    for i, value in enumerate(values):
        if i:
            cmd.append(":")
        cmd += ["-n", "1"] + ([] if wdirs is None else ["-wdir", str(wdirs[i])])
        cmd += ["env", "-u", var] if value is None else ["-env", var, str(value)]
        cmd += prog
    return cmd


#: how the error names HDF5_PLUGIN_PATH: compared as the search path of h5py's HDF5
PLUGINS = ("HDF5's filter plugin search path (HDF5_PLUGIN_PATH when HDF5 first looked "
           "for a plugin)")


def _default_plugin_path() -> str:
    """The plugin search path of h5py's HDF5 when HDF5_PLUGIN_PATH is unset."""
    code = "from hpcproc.io._environ import plugin_path; print(plugin_path())"
    return run(["env", "-u", "HDF5_PLUGIN_PATH", sys.executable, "-c", code], timeout=60,
               check=True).stdout.strip()


def _no_env(var) -> dict:
    env = child_env()
    env.pop(var, None)
    return env


def _fails_once(proc, message):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert message in proc.stderr, out
    assert proc.stderr.count("hpcproc: error:") == 1, out  # printed once
    assert "MPI_Abort" not in out, out  # agreed on every rank: no abort


@SERIAL_ONLY
@pytest.mark.parametrize("case", ["ext_2", "ext_3_unset", "vds_3", "plugin_plain_3"])
def test_a_difference_is_one_error_on_every_rank(files, case):
    """`hpcproc stats FILE:/x` with a variable that differs between ranks: exit status
    1, one message naming the variable, each value and its ranks, and its effect."""
    a, b = files / "a", files / "b"
    var, target, values, ranks, effect = {
        "ext_2": ("HDF5_EXT_PREFIX", "ext.h5", [a, b], f"rank 0: '{a}'; rank 1: '{b}'",
                  "external links would resolve to different files"),
        "ext_3_unset": ("HDF5_EXT_PREFIX", "ext.h5", [b, None, b],
                        f"ranks 0,2: '{b}'; rank 1: unset",
                        "external links would resolve to different files"),
        "vds_3": ("HDF5_VDS_PREFIX", "vds.h5", [a, a, b], f"ranks 0-1: '{a}'; rank 2: '{b}'",
                  "virtual dataset sources would resolve to different files"),
        "plugin_plain_3": ("HDF5_PLUGIN_PATH", "plain.h5", [None, None, files / "plugins"],
                           f"ranks 0-1: '{_default_plugin_path()}'; rank 2: "
                           f"'{files / 'plugins'}'",
                           "ranks would load different compression filter plugins"),
    }[case]
    prog = hpcproc_cmd("stats", f"{files / 'top' / target}:/x", "--json")
    proc = run(_mpmd(var, values, prog), timeout=120, env=_no_env(var))
    name = PLUGINS if var == "HDF5_PLUGIN_PATH" else var  # compared as HDF5 searches it
    _fails_once(proc, f"hpcproc: error: {name} differs between ranks ({ranks}): {effect}")
    assert proc.stdout == ""  # nothing computed


@SERIAL_ONLY
def test_a_relative_prefix_is_relative_to_each_working_directory(files):
    """The same relative HDF5_VDS_PREFIX in different working directories names
    different directories: an error that shows both."""
    prog = hpcproc_cmd("stats", f"{files / 'top' / 'vds.h5'}:/x", "--json")
    proc = run(_mpmd("HDF5_VDS_PREFIX", ["a", "a"], prog, wdirs=[files, files / "top"]),
               timeout=120, env=_no_env("HDF5_VDS_PREFIX"))
    _fails_once(proc, f"HDF5_VDS_PREFIX differs between ranks (rank 0: 'a' (relative to "
                      f"{files}); rank 1: 'a' (relative to {files / 'top'})): virtual "
                      "dataset sources would resolve to different files")


def _h5py_reads(path, var, value, cwd):
    """What h5py returns for ``path:/x`` in a process started with ``var=value``."""
    code = "import sys, h5py, numpy as np; np.save(sys.argv[2], h5py.File(sys.argv[1])['x'][()])"
    out = cwd / "h5py.npy"
    run([sys.executable, "-c", code, str(path), str(out)], timeout=60, check=True,
        env={var: value}, cwd=cwd)
    return np.load(out)


@SERIAL_ONLY
@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("var,target", [("HDF5_EXT_PREFIX", "ext.h5"),
                                        ("HDF5_VDS_PREFIX", "vds.h5")])
def test_ranks_that_agree_read_what_h5py_reads(files, tmp_path, ranks, var, target):
    """The same value on every rank (relative, as users write it): hp.read returns the
    copy that h5py reads with that environment (b/, the negatives), not the other."""
    (tmp_path / "read.py").write_text(READ)
    path = files / "top" / target
    want = _h5py_reads(path, var, "b", files)
    np.testing.assert_array_equal(want, -np.arange(N, dtype="f8"))  # the prefix chose b/
    out = tmp_path / "hp.npy"
    run([sys.executable, str(tmp_path / "read.py"), str(path), "/x", str(out)],
        ranks=ranks, timeout=120, check=True, env={var: "b"}, cwd=files)
    np.testing.assert_array_equal(np.load(out), want)
    stats = json.loads(run(hpcproc_cmd("stats", f"{path}:/x", "--json"), ranks=ranks,
                           timeout=120, check=True, env={var: "b"}, cwd=files).stdout)
    assert (stats["min"], stats["max"], stats["sum"]) == (want.min(), want.max(), want.sum())


@pytest.mark.mpi
def test_checked_before_the_file_is_opened(comm, shared_tmp, monkeypatch):
    """In-process: the variables are compared before rank 0 opens the file (a missing
    file is not what is reported), every variable that differs is named, non-adjacent
    ranks are listed, and the communicator stays usable."""
    from h5py import h5pl

    from hpcproc.io._environ import plugin_path

    missing = str(shared_tmp / "missing.h5")
    last = comm.size - 1
    monkeypatch.setenv("HDF5_EXT_PREFIX", "/b" if comm.rank == last else "/a")
    base = plugin_path()  # the plugin search path of this process's HDF5: fixed now
    if comm.rank == 1:  # a rank whose HDF5 searches one more directory
        h5pl.append(b"/plugins")
    try:
        if comm.size > 1:
            with pytest.raises(hp.ArgumentMismatchError) as err:
                hp.read(missing, "/x", comm=comm)
            first = "rank 0" if comm.size == 2 else f"ranks 0-{last - 1}"
            others = "rank 0" if comm.size == 2 else "ranks 0,2"
            assert str(err.value) == (
                f"HDF5_EXT_PREFIX differs between ranks ({first}: '/a'; rank {last}: '/b'): "
                f"external links would resolve to different files; {PLUGINS} differs "
                f"between ranks ({others}: '{base}'; rank 1: '{base}:/plugins'): ranks "
                "would load different compression filter plugins")
    finally:
        if comm.rank == 1:
            h5pl.remove(h5pl.size() - 1)
    monkeypatch.setenv("HDF5_EXT_PREFIX", "/a")
    # the variable alone, set after HDF5 read it, changes nothing: not an error
    monkeypatch.setenv("HDF5_PLUGIN_PATH", f"/elsewhere{comm.rank}")
    with pytest.raises(FileNotFoundError, match="no such file"):  # agreed: the file's turn
        hp.read(missing, "/x", comm=comm)
    assert comm.allreduce(1) == comm.size
