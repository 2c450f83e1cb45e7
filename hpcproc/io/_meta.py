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

from ..agreement import collective
from ..comm import root_call
from ..errors import DatasetNotFoundError, DtypeError, NotADatasetError
from . import _environ, _links, cf, filters

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

    path: str  # the file that holds the dataset's storage (links resolved)
    name: str  # its name in that file
    shape: tuple
    dtype: str  # numpy dtype string with byte order, e.g. '>f8'
    layout: str  # 'contiguous', 'chunked', 'compact', 'virtual' or 'external'
    chunks: tuple | None = None
    filters: tuple = ()
    offset: int | None = None  # byte offset of contiguous raw data in the file
    #: the CF attributes that decoding needs (:mod:`hpcproc.io.cf`), only those present
    attrs: dict = field(default_factory=dict)
    #: the file's size and modification time (ns) when the metadata was read
    file_size: int | None = None
    mtime_ns: int | None = None
    #: the dataset's ``hpcproc_lineage`` attribute (raw), read with the metadata so that
    #: the lineage of a read needs no second open of the file (:mod:`hpcproc.io.lineage`)
    lineage: object = None
    #: the other files the data is read from: a virtual dataset's source files, external
    #: raw storage files (absolute paths, :func:`hpcproc.io._links.data_files`)
    sources: tuple = ()
    #: the stored numbers have numpy's layout (full-precision integers, IEEE floats), so
    #: their raw bytes are the values; False for HDF5 types with a reduced precision, a
    #: bit offset or another exponent bias, which HDF5 must convert (never read raw)
    plain_type: bool = True

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
        return (self.layout == "contiguous" and self.offset is not None and not self.filters
                and self.plain_type)

    @property
    def files(self) -> tuple:
        """Every file the data of this dataset is read from: :attr:`path` and
        :attr:`sources` (an output must be none of them)."""
        return (self.path, *self.sources)


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
    """``h5py.File`` with hpcproc's error messages for missing or unreadable files.

    Reading registers the filters of the ``hdf5plugin`` package first, when installed.
    """
    if mode == "r":
        filters.load_plugins()
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if os.path.isdir(path):
            raise IsADirectoryError(f"is a directory, not an HDF5 file: {path}")
        if not h5py.is_hdf5(path):
            raise OSError(f"not an HDF5 file: {path}")
        try:
            return h5py.File(path, mode, **kwargs)
        except OSError as exc:  # e.g. a truncated file: HDF5's words, and the file's name
            raise OSError(f"cannot open {path}: {exc}") from None
    return h5py.File(path, mode, **kwargs)


def _exists(f: h5py.File, name: str) -> bool:
    """True when a link named ``name`` exists (even if what it points to cannot be opened)."""
    try:
        return name in f
    except Exception:  # noqa: BLE001 - a broken group on the way: something is there
        return True


def get_dataset(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    """The dataset ``name`` of open file ``f``, with clear errors for groups and typos.

    A name that does not exist raises ``DatasetNotFoundError``; one that exists but cannot
    be opened (a corrupt object header, an external link to a missing file) raises
    ``OSError`` with HDF5's own message.
    """
    try:
        obj = f[name]
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        if not _exists(f, name):
            raise DatasetNotFoundError(f"no dataset {name!r} in {path}") from None
        link = _describe_link(f, name)
        why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # unquoted
        raise OSError(f"cannot open {name!r}{link} in {path}: {why}") from None
    if not isinstance(obj, h5py.Dataset):
        kind = "a group" if isinstance(obj, h5py.Group) else type(obj).__name__
        raise NotADatasetError(f"{name!r} in {path} is {kind}, not a dataset")
    return obj


def _describe_link(f: h5py.File, name: str) -> str:
    try:
        link = f.get(name, getlink=True)
    except Exception:  # noqa: BLE001 - only used to make a message better
        return ""
    if isinstance(link, h5py.ExternalLink):
        return f" (external link to {link.filename}:{link.path})"
    if isinstance(link, h5py.SoftLink):
        return f" (soft link to {link.path})"
    return ""


def _storage(f: h5py.File, dset: h5py.Dataset, name: str, path: str) -> tuple[str, str]:
    """``(file, name)`` where the dataset really lives: links (soft, external, chains of
    both) can lead to another file, and every rank (and the direct byte-range path) must
    read that one. The file found by following the links one by one must be the one
    HDF5 opened, and the name must lead to the same object there."""
    try:
        real, real_name = _links.walk(f, name)
    except (KeyError, OSError, ValueError) as exc:
        raise OSError(f"cannot resolve where {name!r} (reached from {path}) is stored: "
                      f"{exc}") from None
    try:
        same = os.path.samefile(real, dset.file.filename)
    except OSError:
        same = False
    # the file HDF5 opened is open already: the name must lead to the same object there
    other = dset.file.get(real_name) if same else None
    ok = isinstance(other, h5py.Dataset) and \
        h5py.h5o.get_info(other.id).addr == h5py.h5o.get_info(dset.id).addr
    if not ok:
        raise OSError(f"cannot resolve where {name!r} (reached from {path}) is stored: "
                      f"HDF5 reads it from {dset.file.filename}, its links lead to "
                      f"{real}:{real_name}")
    if os.path.samefile(real, path):
        return os.path.abspath(path), dset.name  # no other file: the name as h5py gives it
    return real, real_name


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
        pipeline = filters.check_available(dcpl, f"dataset {name!r} in {path}")
        offset = dset.id.get_offset() if layout == "contiguous" else None
        real, real_name = _storage(f, dset, name, path)
        sources = _links.data_files(real, real_name) if layout in ("virtual", "external") \
            else ()
        st = os.stat(real)
        return DatasetInfo(
            path=real, name=real_name, shape=tuple(dset.shape),
            dtype=dset.dtype.str, layout=layout, chunks=dset.chunks,
            filters=tuple(str(code) for code in pipeline), offset=offset,
            attrs=cf.read_attrs(dset), file_size=st.st_size, mtime_ns=st.st_mtime_ns,
            lineage=_lineage_attr(dset), sources=sources,
            plain_type=_plain_type(dset.id.get_type()))


def _plain_type(tid) -> bool:
    """True when values of the HDF5 type ``tid`` are stored as numpy stores them."""
    if isinstance(tid, h5py.h5t.TypeEnumID):
        return _plain_type(tid.get_super())
    if isinstance(tid, h5py.h5t.TypeCompoundID):
        return all(_plain_type(tid.get_member_type(i)) for i in range(tid.get_nmembers()))
    if isinstance(tid, h5py.h5t.TypeIntegerID):
        return tid.get_precision() == 8 * tid.get_size() and tid.get_offset() == 0
    if isinstance(tid, h5py.h5t.TypeFloatID):
        ieee = {2: h5py.h5t.IEEE_F16LE, 4: h5py.h5t.IEEE_F32LE, 8: h5py.h5t.IEEE_F64LE}
        std = ieee.get(tid.get_size())
        layout = (lambda t: (t.get_fields(), t.get_ebias(), t.get_norm(), t.get_precision(),
                             t.get_offset(), t.get_inpad(), t.get_pad()))
        return std is not None and layout(tid) == layout(std)
    return True


def _lineage_attr(dset):
    """The raw ``hpcproc_lineage`` attribute of ``dset`` (None if absent or unreadable: a
    damaged attribute is reported when the lineage is parsed, never stops a read)."""
    try:
        return dset.attrs.get("hpcproc_lineage")
    except Exception:  # noqa: BLE001 - unreadable attribute: no parent lineage
        return None


@collective("hp.dataset_info", paths=("path",))
def dataset_info(path: str, name: str, comm=None) -> DatasetInfo:
    """Metadata of ``path:name`` read on rank 0 and broadcast. Collective.

    Links are followed as h5py follows them: ``path`` and ``name`` of the result are
    the file and name that hold the dataset's storage (another file for an external link,
    or a chain of soft and external links); ``sources`` are the other files its data is
    read from (a virtual dataset's source files, external raw storage files).

    Raises on every rank: ``FileNotFoundError`` / ``OSError`` for a missing or non-HDF5
    file, ``DatasetNotFoundError`` (a ``KeyError``) for a missing dataset, ``OSError``
    for one that exists but cannot be opened (HDF5's message) or whose compression
    filter is not available (:class:`~hpcproc.io.filters.FilterUnavailableError`),
    ``NotADatasetError`` for a group, ``DtypeError`` for non-numeric data; first of all,
    ``ArgumentMismatchError`` when a variable of the environment that changes what HDF5
    reads (``HDF5_EXT_PREFIX``, ``HDF5_VDS_PREFIX``, ``HDF5_PLUGIN_PATH``...,
    :data:`hpcproc.io._environ.VARIABLES`) differs between ranks.
    """
    _environ.check_same(comm)  # every rank's HDF5 opens files with its own environment
    return root_call(lambda: inspect_dataset(os.fspath(path), name), comm)
