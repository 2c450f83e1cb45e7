"""HDF5_PLUGIN_PATH is compared between ranks by its effect: the filter plugin search
path of h5py's HDF5, not the variable's text.

HDF5 reads the variable once, when its plugin interface first starts, and each module
bundles its own HDF5 (h5py's and netCDF4's wheels). Importing netCDF4 sets the variable
(to netCDF4's plugin directory) in that process only: after hpcproc's first read the
search path of h5py's HDF5 is fixed, and such a rank decodes exactly as the others do,
so its reads must not be refused (they were: ArgumentMismatchError on every read). But
a rank that imports netCDF4 before h5py's HDF5 first looks for a plugin really searches
netCDF4's plugin directory (Zstandard, Blosc, bzip2 found there and nowhere else): that
difference must still be refused on every rank.

The jobs run under ``mpiexec`` at 2 and 3 ranks, the variable unset in every rank; the
files are written in a child process (importing netCDF4 here would set the variable).
"""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest

from support import SERIAL_ONLY, run

pytestmark = SERIAL_ONLY
N = 10000

WRITE = """
import sys, h5py, netCDF4, numpy as np
with h5py.File(sys.argv[1] + "/gzip.h5", "w") as f:  # a filter built into HDF5
    f.create_dataset("x", data=np.arange({n}) * 0.25, chunks=(1000,), compression="gzip",
                     shuffle=True)
with netCDF4.Dataset(sys.argv[1] + "/zstd.nc", "w") as d:  # a filter from a plugin
    d.createDimension("n", {n})
    d.createVariable("x", "f8", ("n",), compression="zstd", chunksizes=(1000,))[:] = (
        np.arange({n}) * 0.5)
""".format(n=N)

# argv: file, when rank 0 imports netCDF4 ("late": after the first read, "early": before
# anything, "all-early": every rank, before anything)
READ = """
import json, os, sys
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
path, when = sys.argv[1], sys.argv[2]
if when == "all-early" or (when == "early" and comm.rank == 0):
    import netCDF4  # noqa: F401 - sets HDF5_PLUGIN_PATH in this process
import hpcproc as hp
sums = []
try:
    sums.append(float(hp.read(path, "/x", comm=comm).allgather().sum()))
    if when == "late" and comm.rank == 0:
        import netCDF4  # noqa: F401
    x = hp.read(path, "/x", comm=comm).allgather()
    sums.append(float(x.sum()))
    np.save(f"{path}.rank{comm.rank}.npy", x)
    outcome = {"ok": True}
except Exception as err:
    outcome = {"error": f"{type(err).__name__}: {err}"}
outcome.update(rank=comm.rank, env=os.environ.get("HDF5_PLUGIN_PATH"), sums=sums)
every = comm.gather(outcome, root=0)  # one line (ranks' lines would interleave)
if comm.rank == 0:
    print(json.dumps(every), flush=True)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    run([sys.executable, "-c", WRITE, str(d)], timeout=120, check=True)
    (d / "read.py").write_text(READ)
    return d


def _job(files, name, when, ranks):
    # unset in every rank (this process's may hold netCDF4's, if a test imported it)
    proc = run(["env", "-u", "HDF5_PLUGIN_PATH", sys.executable, str(files / "read.py"),
                str(files / name), when], ranks=ranks, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [o["rank"] for o in out] == list(range(ranks)), proc.stdout
    for o in out:  # what each rank read (all rows: the read's allgather)
        o["x"] = np.load(f"{files / name}.rank{o['rank']}.npy") if "ok" in o else None
    return out


@pytest.mark.parametrize("ranks", [2, 3])
def test_netcdf4_imported_on_one_rank_after_the_first_read_is_not_refused(files, ranks):
    """Rank 0 imports netCDF4 between two reads of a gzip dataset: its variable now
    differs from the other ranks' (checked), the search path of h5py's HDF5 does not,
    and the second read returns what h5py reads (it was refused before)."""
    with h5py.File(files / "gzip.h5") as f:
        want = f["x"][...]
    out = _job(files, "gzip.h5", "late", ranks)
    assert out[0]["env"] and out[0]["env"].endswith("plugins"), out[0]["env"]
    assert all(o["env"] is None for o in out[1:])  # the variable really differs
    for o in out:
        assert "error" not in o, o["error"]
        np.testing.assert_array_equal(o["x"], want)


@pytest.mark.parametrize("ranks", [2, 3])
def test_netcdf4_imported_before_hdf5_looked_for_plugins_is_refused(files, ranks):
    """Rank 0 imports netCDF4 before anything: its h5py's HDF5 searches netCDF4's plugin
    directory (it can decode the Zstandard dataset, the others cannot). Every rank
    raises the same ArgumentMismatchError naming the search path, before reading."""
    out = _job(files, "zstd.nc", "early", ranks)
    errors = {o["error"] for o in out if "error" in o}
    assert len(errors) == 1 and all("error" in o for o in out), out
    text = errors.pop()
    assert text.startswith("ArgumentMismatchError: HDF5's filter plugin search path "
                           "(HDF5_PLUGIN_PATH when HDF5 first looked for a plugin) differs "
                           "between ranks (rank"), text
    assert "netCDF4/plugins'" in text, text  # rank 0's value, as HDF5 holds it
    assert "ranks would load different compression filter plugins" in text, text
    assert all(o["sums"] == [] for o in out)  # refused at the first read


@pytest.mark.parametrize("ranks", [2, 3])
def test_every_rank_with_the_same_plugins_decodes_a_plugin_filter(files, ranks):
    """Every rank imports netCDF4 first: the same search path everywhere, and the
    Zstandard dataset (a plugin filter) reads as netCDF4 wrote it."""
    out = _job(files, "zstd.nc", "all-early", ranks)
    for o in out:
        assert "error" not in o, o["error"]
        np.testing.assert_array_equal(o["x"], np.arange(N) * 0.5)
