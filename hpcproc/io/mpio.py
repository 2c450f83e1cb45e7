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
from .filters import load_plugins

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


def _transfer(dset: h5py.Dataset, start: int, buf: np.ndarray, write: bool) -> None:
    """One collective H5Dread/H5Dwrite of rows ``start..start+len(buf)``.

    Every rank makes the call, including ranks with no rows (an empty selection):
    h5py's high-level slicing skips the call for empty selections, which would leave the
    other ranks waiting inside a collective transfer.
    """
    rows, trailing = buf.shape[0], tuple(buf.shape[1:])
    fspace = dset.id.get_space()
    if rows and buf.size:
        fspace.select_hyperslab((start,) + (0,) * len(trailing), (rows,) + trailing)
        mspace = h5py.h5s.create_simple(buf.shape)
    else:
        fspace.select_none()
        buf = np.empty((1,) + tuple(max(1, n) for n in trailing), dtype=buf.dtype)
        mspace = h5py.h5s.create_simple(buf.shape)
        mspace.select_none()
    dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    mtype = h5py.h5t.py_create(buf.dtype)
    if write:
        dset.id.write(mspace, fspace, buf, mtype, dxpl=dxpl)
    else:
        dset.id.read(mspace, fspace, buf, mtype, dxpl=dxpl)


def read_rows(info: DatasetInfo, start: int, stop: int, comm=None,
              out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[start, stop)`` by a collective read, in native byte order. Collective."""
    if out is None:
        out = np.empty((stop - start,) + info.shape[1:], dtype=info.native_dtype)
    if 0 in info.shape:  # nothing to read on any rank (and HDF5 1.10 fails on it)
        return out
    load_plugins()  # hdf5plugin's filters, when installed
    with h5py.File(info.path, "r", driver="mpio", comm=get_comm(comm)) as f:
        _transfer(get_dataset(f, info.name, info.path), start, out, write=False)
    return out


def write_rows(path: str, name: str, start: int, local: np.ndarray, comm=None) -> None:
    """Write ``local`` at rows ``start..`` of an existing dataset, collectively. Collective."""
    with h5py.File(path, "r+", driver="mpio", comm=get_comm(comm)) as f:
        _transfer(f[name], start, np.ascontiguousarray(local), write=True)
