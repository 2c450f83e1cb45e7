"""Collective MPI-IO reads and writes through a parallel (MPI-enabled) h5py.

Available only when h5py was built against a parallel HDF5 (``h5py.get_config().mpi``);
``make test-parallel-hdf5`` builds such an environment. Every rank opens the file with
the ``mpio`` driver and reads or writes its rows with collective transfers.
"""

from __future__ import annotations

import h5py
import numpy as np

from ..comm import get_comm
from ._meta import DatasetInfo, get_dataset

__all__ = ["available", "require", "read_rows", "write_rows"]


def available() -> bool:
    """True when h5py supports the ``mpio`` driver."""
    return bool(h5py.get_config().mpi)


def require() -> None:
    """Raise a clear error when the ``mpio`` method is asked for but unavailable."""
    if not available():
        raise ValueError(
            "method='mpio' needs h5py built with MPI (parallel HDF5); this h5py is serial. "
            "See 'On a cluster' in the README, or use method='auto'")


def read_rows(info: DatasetInfo, start: int, stop: int, comm=None) -> np.ndarray:
    """Rows ``[start, stop)`` by a collective read. Collective."""
    out = np.empty((stop - start,) + info.shape[1:], dtype=info.native_dtype)
    with h5py.File(info.path, "r", driver="mpio", comm=get_comm(comm)) as f:
        dset = get_dataset(f, info.name, info.path)
        with dset.collective:
            dset.read_direct(out, source_sel=np.s_[start:stop], dest_sel=np.s_[0:stop - start])
    return out


def write_rows(path: str, name: str, start: int, local: np.ndarray, comm=None) -> None:
    """Write ``local`` at rows ``start..`` of an existing dataset, collectively. Collective."""
    with h5py.File(path, "r+", driver="mpio", comm=get_comm(comm)) as f:
        dset = f[name]
        with dset.collective:
            dset.write_direct(np.ascontiguousarray(local),
                              dest_sel=np.s_[start:start + local.shape[0]])
