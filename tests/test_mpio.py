"""Collective MPI-IO paths; they need an MPI-enabled h5py (`make test-parallel-hdf5`)."""

import h5py
import numpy as np
import pytest

import hpcproc as hp
from support import on_root

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(not h5py.get_config().mpi, reason="h5py is not built with MPI "
                       "(run `make test-parallel-hdf5`)"),
]


def _make(path, name, data, **kwargs):
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data, **kwargs)


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
@pytest.mark.parametrize("dtype", ["<f8", ">i8", "|u1"])
def test_mpio_read_matches_h5py(comm, shared_tmp, n, layout, dtype):
    data = (np.arange(n * 3) % 251).astype(dtype).reshape(n, 3)
    kw = ({"chunks": (min(7, n), 3), "compression": "gzip", "shuffle": True}
          if layout == "gzip" and n else {})
    on_root(comm, _make, shared_tmp / "m.h5", "/g/x", data, **kw)
    x = hp.read(str(shared_tmp / "m.h5"), "/g/x", comm=comm, method="mpio")
    np.testing.assert_array_equal(x.local, data[slice(*x.rows)])
    np.testing.assert_array_equal(x.allgather(), data)
    # the auto path (chunk-aligned for chunked data) agrees with the collective one
    auto = hp.read(str(shared_tmp / "m.h5"), "/g/x", comm=comm)
    np.testing.assert_array_equal(auto.local, data[slice(*auto.rows)])


@pytest.mark.parametrize("n", [0, 1, 5, 999])
@pytest.mark.parametrize("opts", [{}, {"chunks": (10, 2)},
                                  {"chunks": (10, 2), "compression": "gzip"}],
                         ids=["contiguous", "chunked", "gzip"])
@pytest.mark.parametrize("mode", ["w", "a"])
def test_mpio_write_round_trip(comm, shared_tmp, n, opts, mode):
    data = np.arange(n * 2, dtype="f8").reshape(n, 2)
    x = hp.DistArray.from_global(data, comm)
    path = str(shared_tmp / "w.h5")
    hp.write(path, "/out/x", x, comm=comm, mode=mode, method="mpio", **opts)
    if comm.rank == 0:
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["/out/x"][...], data)
            assert [k for k in f if k.startswith(".hpcproc")] == []
    comm.Barrier()
