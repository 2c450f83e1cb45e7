"""Dataset metadata: read once on rank 0, broadcast to every rank.

Everything the read strategies need to know about a dataset (shape, element type and
byte order, storage layout, chunk shape, filters, byte offset of contiguous data) is
collected here by one rank, so a job with thousands of ranks opens the file's metadata
once, not once per rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..comm import collective, root_call
from ..errors import DatasetNotFoundError, DtypeError, NotADatasetError

__all__ = ["DatasetInfo", "dataset_info", "inspect_dataset", "split_target", "check_numeric"]

NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex

_LAYOUTS = {
    h5py.h5d.COMPACT: "compact",
    h5py.h5d.CONTIGUOUS: "contiguous",
    h5py.h5d.CHUNKED: "chunked",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What one rank learnt about a dataset, shared with every rank."""

    path: str
    name: str
    shape: tuple
    dtype: str  # numpy dtype string with byte order, e.g. '>f8'
    layout: str  # 'contiguous', 'chunked', 'compact', 'virtual' or 'external'
    chunks: tuple | None = None
    filters: tuple = ()
    offset: int | None = None  # byte offset of contiguous raw data in the file
    attrs: dict = field(default_factory=dict)
    #: the file's size and modification time (ns) when the metadata was read
    file_size: int | None = None
    mtime_ns: int | None = None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def native_dtype(self) -> np.dtype:
        return self.np_dtype.newbyteorder("=")

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def row_bytes(self) -> int:
        return self.np_dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    @property
    def direct_readable(self) -> bool:
        """True when raw bytes can be read straight from the file (no HDF5 in the loop)."""
        return self.layout == "contiguous" and self.offset is not None and not self.filters


def split_target(target: str) -> tuple[str, str]:
    """Split ``FILE.h5:/dataset`` into ``(file, dataset)`` (the last ``:/`` or ``:``)."""
    if ":" not in target:
        raise ValueError(f"expected FILE:DATASET (e.g. data.h5:/x), got {target!r}")
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise ValueError(f"expected FILE:DATASET (e.g. data.h5:/x), got {target!r}")
    return path, name if name.startswith("/") else "/" + name


def check_numeric(dtype: np.dtype, what: str) -> None:
    """Raise ``DtypeError`` unless ``dtype`` is a plain numeric (or bool) type."""
    dtype = np.dtype(dtype)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DtypeError(f"{what} has non-numeric dtype {dtype} (hpcproc reads numbers only)")


def open_file(path: str, mode: str = "r", **kwargs) -> h5py.File:
    """``h5py.File`` with hpcproc's error messages for missing or unreadable files."""
    if mode == "r":
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"is a directory, not an HDF5 file: {path}")
        if not h5py.is_hdf5(path):
            raise OSError(f"not an HDF5 file: {path}")
    return h5py.File(path, mode, **kwargs)


def get_dataset(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    """The dataset ``name`` of open file ``f``, with clear errors for groups and typos."""
    try:
        obj = f.get(name, getlink=False)
    except (KeyError, ValueError):
        obj = None
    if obj is None:
        raise DatasetNotFoundError(f"no dataset {name!r} in {path}")
    if not isinstance(obj, h5py.Dataset):
        kind = "a group" if isinstance(obj, h5py.Group) else type(obj).__name__
        raise NotADatasetError(f"{name!r} in {path} is {kind}, not a dataset")
    return obj


def inspect_dataset(path: str, name: str) -> DatasetInfo:
    """Read a dataset's metadata (local, no MPI): used on rank 0 by :func:`dataset_info`."""
    with open_file(path) as f:
        dset = get_dataset(f, name, path)
        check_numeric(dset.dtype, f"dataset {name!r} in {path}")
        if dset.shape is None or len(dset.shape) == 0:
            raise NotADatasetError(f"dataset {name!r} in {path} is a scalar; hpcproc needs rows")
        dcpl = dset.id.get_create_plist()
        if dset.is_virtual:
            layout = "virtual"
        elif dcpl.get_external_count() > 0:
            layout = "external"
        else:
            layout = _LAYOUTS.get(dcpl.get_layout(), "other")
        filters = tuple(str(dcpl.get_filter(i)[0]) for i in range(dcpl.get_nfilters()))
        offset = dset.id.get_offset() if layout == "contiguous" else None
        st = os.stat(path)
        return DatasetInfo(
            path=os.path.abspath(path), name=dset.name, shape=tuple(dset.shape),
            dtype=dset.dtype.str, layout=layout, chunks=dset.chunks, filters=filters,
            offset=offset, file_size=st.st_size, mtime_ns=st.st_mtime_ns)


@collective("hp.dataset_info", paths=("path",))
def dataset_info(path: str, name: str, comm=None) -> DatasetInfo:
    """Metadata of ``path:name`` read on rank 0 and broadcast. Collective.

    Raises on every rank: ``FileNotFoundError`` / ``OSError`` for a missing or non-HDF5
    file, ``DatasetNotFoundError`` (a ``KeyError``) for a missing dataset,
    ``NotADatasetError`` for a group, ``DtypeError`` for non-numeric data.
    """
    return root_call(lambda: inspect_dataset(os.fspath(path), name), comm)
