"""Parallel writes of DistArrays and DistTables to HDF5.

Structure (file, groups, dataset, attributes) is created by rank 0; raw data is written
by every rank in parallel:

* contiguous output (default): the dataset's space is allocated at creation, its byte
  offset broadcast, and every rank ``pwrite``s its own byte range (``direct``);
* chunked / gzip output: rows are re-blocked to whole chunks, every rank compresses its
  own chunks in parallel and stores them with ``write_direct_chunk`` (``chunked``);
* ``method="mpio"``: collective MPI-IO writes through a parallel h5py.

Safety (see ``_target``): before anything is created the target is checked (not a
directory, writable directory, enough free space, not a file this process has read
when it would be replaced). With ``mode="w"`` the file is written under a temporary name
``.<name>.hpcproc-tmp-<host>-<pid>-<token>`` in the same directory and renamed over
``path`` only after every rank has written (and fsynced) its data; the temporary file is
removed on any error and on SIGTERM/SIGINT, and a later write to the same target removes
those of crashed runs. With ``mode="a"`` the dataset is written under a temporary name
and moved to its final name at the end; on an error it is deleted again (the file's
other objects are never touched, but HDF5 may leave its size and metadata bytes
changed), and a later append removes temporary datasets of crashed runs.
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Mapping

import h5py
import numpy as np
from mpi4py import MPI

from .. import _faults
from .._redistribute import redistribute_rows
from ..agreement import collective
from ..array import DistArray, tiled
from ..comm import agreed, check_all, get_comm, lib_comm, root_call
from ..errors import DatasetExistsError, ShapeMismatchError
from ..observe.phases import phase
from ..partition import aligned_ranges, tiling_problem
from ..table import DistTable
from . import _dims, _exists, _target, chunked, direct, lineage, mpio
from ._meta import check_numeric

__all__ = ["write", "write_table", "write_many", "check_output"]

MODES = ("w", "a")
WRITE_METHODS = ("auto", "direct", "chunked", "mpio")
_TMP_PREFIX = _target.TMP_MARK


def _validate(path, names, arrays, mode, chunks, compression, compression_opts, method):
    if mode not in MODES:
        raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
    if method not in WRITE_METHODS:
        raise ValueError(f"method must be one of {WRITE_METHODS}, got {method!r}")
    if compression not in chunked.SUPPORTED_COMPRESSION:
        raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
    if compression_opts is not None and not (isinstance(compression_opts, int)
                                             and 0 <= compression_opts <= 9):
        raise ValueError(f"gzip level must be an int 0..9, got {compression_opts!r}")
    for name, x in zip(names, arrays):
        if not isinstance(x, DistArray):
            raise TypeError(f"expected a DistArray for {name!r}, got {type(x).__name__}")
        check_numeric(x.dtype, f"array for {name!r}")
        if not isinstance(name, str) or not name.strip("/"):
            raise ValueError(f"bad dataset name {name!r}")
        if chunks not in (None, True) and len(tuple(chunks)) != x.ndim:
            raise ValueError(f"chunks {chunks} must have one entry per dimension ({x.ndim})")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a string or path, not {type(path).__name__}")


def _validate_extras(mode, if_exists, like, same_rows) -> None:
    if if_exists not in _exists.IF_EXISTS:
        raise ValueError(f"if_exists must be one of {_exists.IF_EXISTS}, got {if_exists!r}")
    if mode == "w" and if_exists != "error":
        raise ValueError(f"if_exists={if_exists!r} applies to mode='a' (mode='w' always "
                         f"replaces the whole file atomically)")
    if not isinstance(same_rows, bool):
        raise TypeError(f"same_rows must be True or False, got {same_rows!r}")
    for name, source in (like or {}).items():
        _dims.check_source_arg(source, name)


def _skip_identical(path, names, values, comm):
    """The datasets of ``names`` not yet in ``path``; raise ``DatasetExistsError`` on
    every rank if one exists with other shape, dtype or content. Collective."""
    def present():
        if not os.path.exists(path):
            return [False] * len(names)
        with h5py.File(path, "r") as f:
            return _exists.check_existing(f, path, names, values, "skip_identical")

    there = root_call(present, comm)
    if not any(there):
        return names, values
    differ = check_all(lambda: [there[i] and _exists.differs(path, n, x)
                                for i, (n, x) in enumerate(zip(names, values))], comm)
    flags = np.array(differ, dtype=np.int8)
    lib_comm(comm).Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
    bad = [n for n, f in zip(names, flags) if f]
    if bad:
        raise agreed(DatasetExistsError(
            f"dataset {'/' + bad[0].strip('/')!r} already exists in {path} with other "
            f"content (if_exists='skip_identical' skips only an identical dataset)"))
    keep = [(n, x) for n, x, t in zip(names, values, there) if not t]
    return [n for n, _ in keep], [x for _, x in keep]


def _input_files() -> list[str]:
    """The files this process has read (its lineage inputs, with the source files of
    virtual datasets and external raw files)."""
    return list(dict.fromkeys(p for rec in lineage.inputs()
                              for p in (rec["file"], *rec.get("sources", ()))))


def _space_needed(arrays, compression, mode) -> int:
    """Bytes to find free before writing: the raw data size. Compressed output into a
    new file is not checked (its size is unknown; a full disk only costs the temporary
    file); into an existing file (mode "a") the uncompressed size is required."""
    if compression is not None and mode == "w":
        return 0
    return sum(x.dtype.itemsize * int(np.prod(x.global_shape, dtype=np.int64))
               for x in arrays)


def _prepare(path, names, arrays, mode, chunks, compression, level, shuffle, attrs,
             if_exists="error", like=None, same_rows=True, file_attrs=None):
    """On rank 0: check the target, create the output structure; return where each rank
    writes."""
    if mode == "w":
        _target.check_not_input(path, _input_files())
    path = _target.check_target(path, mode, _space_needed(arrays, compression, mode))
    exists = os.path.exists(path)
    present = [False] * len(names)
    if mode == "a" and exists:
        policy = "replace" if if_exists == "replace" else "error"  # skips were removed
        with h5py.File(path, "r") as f:  # read-only: a refused append changes no byte
            present = _exists.check_existing(f, path, names, arrays, policy)
    sources = {name: _dims.read_source(*like[name], x.global_shape, x.dtype, same_rows)
               for name, x in zip(names, arrays) if like and name in like}
    if mode == "a" and not exists:
        mode = "w"  # a new file: written like mode "w", under a temporary name
    if mode == "w":
        _target.remove_stale(path)
        target, fmode = _target.tmp_name(path), "w-"
    else:
        target, fmode = path, "r+"
    tag = _target.tmp_tag()
    layouts, extra = [], []
    try:
        with h5py.File(target, fmode) as f:
            if mode == "a":
                _remove_stale_datasets(f, names)
            f.attrs.update(file_attrs or {})
            for name, x, old in zip(names, arrays, present):
                final = "/" + name.strip("/")
                tmp = final if mode == "w" else f"/{_TMP_PREFIX}{tag}-{len(layouts)}"
                layouts.append(_create(f, tmp, x, chunks, compression, level, shuffle,
                                       (attrs or {}).get(name, {})))
                layouts[-1].update(tmp=tmp, final=final, replace=old)
                if name in sources:
                    _dims.apply(f, tmp, sources[name], (attrs or {}).get(name, {}), extra)
    except BaseException:
        _discard(target, mode, [lay["tmp"] for lay in layouts] + extra)
        raise
    return {"path": path, "target": target, "layouts": layouts, "mode": mode, "tag": tag,
            "extra": extra}


def _remove_stale_datasets(f, names=()) -> None:
    """Delete temporary datasets that crashed appends left in the root group (only those
    of dead processes on this host: their names are ``<mark><host>-<pid>-<token>-<i>``);
    put back datasets a crashed replacement moved aside in the groups of ``names``."""
    now = time.time()
    groups = {"/" + n.strip("/").rsplit("/", 1)[0] if "/" in n.strip("/") else "/"
              for n in names} | {"/"}
    _exists.restore_stale(f, sorted(groups), now)
    for name in [n for n in f if n.startswith(_TMP_PREFIX)]:
        if _exists.is_aside(name):
            continue  # a replaced dataset moved aside: restore_stale decided
        as_file = ".x" + name.rsplit("-", 1)[0]  # the form _target.is_stale parses
        if _target.is_stale(as_file, now, now):
            del f[name]


def check_output(out, inputs, comm=None, what: str = "--out") -> str:
    """Refuse an output that is one of ``inputs`` or cannot be written. Collective.

    Run before any input is read (the ``hpcproc`` commands do): the same error is
    raised on every rank, naming both paths. Returns the absolute output path.
    """
    def check():
        _target.check_not_input(out, inputs, what)
        return _target.check_target(out, "w")

    return root_call(check, comm)


def _create(f, name, x, chunks, compression, level, shuffle, attrs) -> dict:
    shape, dtype = x.global_shape, x.dtype
    if chunks is None and compression is None and not shuffle:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        lcpl.set_create_intermediate_group(True)
        dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(dtype),
                               h5py.h5s.create_simple(shape), dcpl=dcpl, lcpl=lcpl)
        dset = h5py.Dataset(dsid)
        layout = {"kind": "contiguous", "offset": dset.id.get_offset()}
    else:
        if chunks in (None, True):
            chunks = True
        else:
            chunks = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape))
        if any(n == 0 for n in shape):
            chunks = tuple(1 for _ in shape) if chunks is True else chunks
        dset = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                compression=compression,
                                compression_opts=level if compression else None,
                                shuffle=bool(shuffle),
                                maxshape=(None,) + shape[1:] if 0 in shape else None)
        layout = {"kind": "chunked", "chunks": dset.chunks}
    for key, value in attrs.items():
        dset.attrs[key] = value
    return layout


def _discard(target, mode, tmp_names) -> None:
    """Remove what a failed write created (rank 0 only; best effort)."""
    try:
        if mode == "w":
            if os.path.exists(target):
                os.unlink(target)
        elif os.path.exists(target) and tmp_names:
            with h5py.File(target, "r+") as f:
                for name in tmp_names:
                    if name in f:
                        _exists.delete(f, name)
    except Exception:  # noqa: BLE001 - best effort: the write's own error is raised
        pass


def _created(plan) -> list:
    """Names a failed append must delete: its datasets and the coordinates it added."""
    return [lay["tmp"] for lay in plan["layouts"]] + plan.get("extra", [])


def _commit(plan, mode) -> None:
    """On rank 0: make the written data visible under its final name."""
    if mode == "w":
        os.replace(plan["target"], plan["path"])
        fd = os.open(os.path.dirname(plan["path"]), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    else:
        with h5py.File(plan["target"], "r+") as f:
            _exists.swap_in(f, plan["layouts"], plan["tag"])


def _write_data(plan, lay, x: DistArray, comm, method, compression, level, shuffle, fsync):
    target = plan["target"]
    try:
        _faults.check("write.data", comm.Get_rank())
    except OSError as exc:
        if method != "mpio" and lay["kind"] == "contiguous":
            return exc  # collective paths below must still be entered by every rank
        failed = exc
    else:
        failed = None
    if method == "mpio":
        err = None
        if 0 in x.global_shape:  # nothing to write on any rank
            return failed
        try:
            mpio.write_rows(target, lay["tmp"], x.offset, x.local, comm)
        except Exception as exc:  # noqa: BLE001 - agreed on by the caller
            err = exc
        return failed or err
    if lay["kind"] == "contiguous":
        row_bytes = x.dtype.itemsize * int(np.prod(x.global_shape[1:], dtype=np.int64))
        try:
            direct.write_rows(target, lay["offset"], row_bytes, x.offset, x.local, fsync)
        except Exception as exc:  # noqa: BLE001
            return exc
        return None
    chunk_rows = lay["chunks"][0]
    size, rank = comm.Get_size(), comm.Get_rank()
    targets = aligned_ranges(0, x.global_shape[0], chunk_rows, size)
    local = redistribute_rows(x.local, x.offset, targets, comm)
    try:
        encoded = list(chunked.encode_chunks(local, targets[rank][0], lay["chunks"],
                                             x.global_shape, compression, level, shuffle))
    except Exception as exc:  # noqa: BLE001
        encoded, err = [], exc
    else:
        err = None
    store_err = chunked.store_chunks(target, lay["tmp"], encoded, comm)
    return failed or err or store_err


@collective("hp.write", local=("x", "local_rows"), paths=("path",))
def write(path: str, dataset: str, x: DistArray, comm=None, mode: str = "w",
          chunks=None, compression: str | None = None, compression_opts: int | None = None,
          shuffle: bool = False, attrs: Mapping | None = None, method: str = "auto",
          fsync: bool = True, *, if_exists: str = "error", like=None,
          same_rows: bool = True, local_rows=None) -> None:
    """Write a DistArray to an HDF5 dataset, every rank writing its own rows.

    Collective.

    Parameters
    ----------
    path, dataset : str
        Output file and dataset name (groups are created as needed).
    x : DistArray
        The data; ``x.comm`` is used when ``comm`` is None.
    mode : {"w", "a"}
        ``"w"`` replaces the file atomically (temporary name, rename on success);
        ``"a"`` adds the dataset to the file (created if missing); what happens when
        it exists already is ``if_exists``.
    chunks : tuple of int or True, optional
        Chunked layout (``True``: h5py picks the chunk shape). ``None`` with no
        compression gives the contiguous layout, the fastest to write and read.
    compression : {None, "gzip"}
        gzip (deflate) compression, level ``compression_opts`` (default 4);
        ``shuffle=True`` adds HDF5's byte-shuffle filter. Compression runs on all ranks.
    attrs : mapping, optional
        Attributes to set on the dataset.
    method : {"auto", "direct", "chunked", "mpio"}
        ``"mpio"`` writes collectively through a parallel h5py.
    fsync : bool
        fsync the data before it is committed (default True).
    if_exists : {"error", "skip_identical", "replace"}
        With ``mode="a"``, a dataset that exists already: ``"error"`` raises
        ``DatasetExistsError`` (the file unchanged); ``"skip_identical"`` writes nothing
        if it has the same shape, dtype and bytes (every rank compares its own rows),
        else raises ``DatasetExistsError``; ``"replace"`` writes the new dataset under
        a temporary name and swaps it in once every rank has written it (the old one
        is deleted only then). ``mode="w"`` always replaces the whole file atomically,
        so only ``"error"`` is accepted with it.
    like : (str, str), optional
        ``(file, dataset)`` of the variable this output derives from (e.g. a netCDF
        variable): its CF attributes (``units``, ``long_name``, ...) and dimension
        scales (netCDF dimensions and coordinate variables) are written with the
        output, so netCDF readers and xarray see the same dimension names and
        coordinates. Attributes given in ``attrs`` win.
    same_rows : bool
        With ``like``: the output's rows are the source's rows in the same order, so
        the axis-0 coordinate applies too (default). Pass False after a sort or
        group-by: only the trailing dimensions' scales are written.
    local_rows : (int, int), optional, keyword-only
        With a numpy array ``x`` (this rank's block, a simulation code's own
        decomposition): its global rows ``(start, stop)``. The blocks must tile the
        output (contiguous, in rank order, starting at row 0) and agree in dtype and
        trailing shape; ``ShapeMismatchError``/``TypeError`` on every rank otherwise.
    """
    comm = get_comm(comm if comm is not None else getattr(x, "comm", None))
    if local_rows is not None:
        x = _block_with_rows(x, local_rows, comm)
    _write_many(path, {dataset: x}, comm, mode, chunks, compression, compression_opts,
                shuffle, {dataset: dict(attrs or {})}, method, fsync, if_exists=if_exists,
                like=None if like is None else {dataset: like}, same_rows=same_rows)


def _block_with_rows(block, local_rows, comm) -> DistArray:
    """This rank's numpy ``block`` of global rows ``local_rows`` as a DistArray. Collective:
    the blocks must tile the rows and agree in dtype and trailing shape."""
    def local():
        if isinstance(block, DistArray):
            raise TypeError("local_rows= is for a numpy block; a DistArray has its own rows")
        if not isinstance(block, np.ndarray) or block.ndim == 0:
            raise TypeError(f"with local_rows=, x must be a numpy array with at least one "
                            f"dimension, not {type(block).__name__}")
        try:
            a, b = (operator.index(v) for v in local_rows)
        except (TypeError, ValueError):
            raise TypeError(f"local_rows must be a pair of ints (start, stop), got "
                            f"{local_rows!r}") from None
        if not 0 <= a <= b or b - a != block.shape[0]:
            raise ValueError(f"local_rows ({a}, {b}) do not match this rank's block of "
                             f"{block.shape[0]} rows")
        return a, b
    a, b = check_all(local, comm)
    every = lib_comm(comm).allgather((a, b - a, block.shape[1:], block.dtype.str))
    kinds = sorted({(e[2], e[3]) for e in every})
    if len(kinds) > 1:
        raise agreed(TypeError(f"hp.write: ranks hold blocks of different trailing shapes "
                                f"or dtypes: {kinds}"))
    total = sum(e[1] for e in every)
    problem = tiling_problem([e[:2] for e in every], total)
    if problem:
        raise agreed(ShapeMismatchError(f"hp.write: local_rows must tile the output's rows "
                                         f"(contiguous blocks in rank order from row 0): "
                                         f"{problem}"))
    return tiled(DistArray(block, (total,) + block.shape[1:], a, comm))


@collective("hp.write_table", paths=("path",))
def write_table(path: str, table: DistTable, group: str = "/", comm=None, mode: str = "w",
                **options) -> None:
    """Write every column of a DistTable as one dataset ``group/column``. Collective.

    Options are those of :func:`write`; all columns are committed together
    (``if_exists`` applies to each column; ``like`` is a mapping ``{column: (file,
    dataset)}``).
    """
    if not isinstance(table, DistTable):
        raise TypeError(f"expected a DistTable, got {type(table).__name__}")
    comm = get_comm(comm if comm is not None else table.comm)
    arrays = {f"{group.rstrip('/')}/{name}": table[name] for name in table.columns}
    attrs = options.pop("attrs", None)
    like = options.pop("like", None)
    if like is not None:
        if not isinstance(like, Mapping) or not set(like) <= set(table.columns):
            raise ValueError(f"like must map columns of the table to (file, dataset), "
                             f"got {like!r}"[:200])
        like = {f"{group.rstrip('/')}/{k}": v for k, v in like.items()}
    options["like"] = like
    _write_many(path, arrays, comm, mode, options.pop("chunks", None),
                options.pop("compression", None), options.pop("compression_opts", None),
                options.pop("shuffle", False), {k: dict(attrs or {}) for k in arrays},
                options.pop("method", "auto"), options.pop("fsync", True), **options)


def write_many(path: str, arrays: Mapping[str, DistArray], comm=None, mode: str = "w", *,
               attrs: Mapping | None = None, file_attrs: Mapping | None = None,
               **options) -> None:
    """Write several DistArrays (``{dataset: array}``) to one file, committed together.

    Collective. ``attrs``: ``{dataset: {name: value}}``; ``file_attrs``: attributes of
    the file's root group (set when the file's structure is created). Other options are
    those of :func:`write`.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of dataset names to DistArrays, "
                        f"not {type(arrays).__name__}")
    first = next(iter(arrays.values()), None)
    comm = get_comm(comm if comm is not None else getattr(first, "comm", None))
    attrs = {k: dict((attrs or {}).get(k, {})) for k in arrays}
    _write_many(path, dict(arrays), comm, mode, options.pop("chunks", None),
                options.pop("compression", None), options.pop("compression_opts", None),
                options.pop("shuffle", False), attrs, options.pop("method", "auto"),
                options.pop("fsync", True), file_attrs=dict(file_attrs or {}), **options)


def _write_many(path, arrays: Mapping[str, DistArray], comm, mode, chunks, compression,
                compression_opts, shuffle, attrs, method, fsync, if_exists="error",
                like=None, same_rows=True, file_attrs=None, **unknown):
    if unknown:
        raise TypeError(f"unexpected options: {sorted(unknown)}")
    names, values = list(arrays), list(arrays.values())

    def validate():  # local checks, agreed on by every rank (blocks may differ per rank)
        _validate(path, names, values, mode, chunks, compression, compression_opts, method)
        _validate_extras(mode, if_exists, like, same_rows)
        if method == "mpio":
            mpio.require()
        if method == "direct" and (chunks is not None or compression is not None or shuffle):
            raise ValueError("method='direct' writes contiguous datasets only "
                             "(no chunks/compression)")

    check_all(validate, comm)
    dtypes = lib_comm(comm).allgather([x.dtype.str for x in values])
    if any(d != dtypes[0] for d in dtypes):
        raise TypeError(f"ranks hold blocks of different dtypes: {dtypes}")
    options = (if_exists, same_rows, repr(sorted((like or {}).items())))
    if any(o != options for o in lib_comm(comm).allgather(options)):
        raise agreed(ValueError("ranks passed different if_exists, same_rows or like "
                                 "to a collective write"))
    if mode == "a" and if_exists == "skip_identical":
        names, values = _skip_identical(path, names, values, comm)
        if not names:
            return  # every dataset is there already, identical
    level = 4 if compression_opts is None else compression_opts
    attrs = lineage.stamp(attrs, names, "write", comm.Get_size())  # lineage attributes
    if method == "chunked" and chunks is None:
        chunks = True
    with _target.SignalCleanup() as guard:  # a signal from here on removes the temp file
        plan = root_call(lambda: _prepare(path, names, values, mode, chunks, compression,
                                          level, shuffle, attrs, if_exists, like,
                                          same_rows, file_attrs), comm)
        mode = plan["mode"]
        guard.set_path(plan["target"] if mode == "w" else None)
        _write_and_commit(plan, names, values, comm, mode, method, compression, level,
                          shuffle, fsync)


def _write_and_commit(plan, names, values, comm, mode, method, compression, level, shuffle,
                      fsync) -> None:
    with phase("write", written=sum(x.local.nbytes for x in values)):
        try:
            errors = [_write_data(plan, lay, x, comm, method, compression, level, shuffle,
                                  fsync) for lay, x in zip(plan["layouts"], values)]
        except BaseException:  # e.g. KeyboardInterrupt: this rank is about to end the job
            if mode == "w" or comm.Get_rank() == 0:
                _discard(plan["target"], mode, _created(plan))
            raise
    first = next((e for e in errors if e is not None), None)

    def raise_local():
        if first is not None:
            raise first

    def commit():
        try:
            _commit(plan, mode)
        except BaseException:
            _discard(plan["target"], mode, _created(plan))
            raise

    try:
        check_all(raise_local, comm)
    except BaseException:
        if comm.Get_rank() == 0:
            _discard(plan["target"], mode, _created(plan))
        raise
    root_call(commit, comm)
    lib_comm(comm).Barrier()
