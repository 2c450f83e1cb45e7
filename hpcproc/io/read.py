"""Parallel reads of HDF5 datasets into DistArrays and DistTables.

Strategy per dataset (``method="auto"``):

* contiguous, unfiltered, allocated: ``direct`` -- every rank ``pread``s its byte range;
* chunked (compressed or not): ``chunked`` -- chunk-aligned decomposition, every rank
  reads its own whole chunks through h5py;
* anything else (compact, virtual, external storage, never-written data): ``h5py`` --
  balanced decomposition, every rank reads its rows through h5py.

``method="mpio"`` forces collective MPI-IO reads (parallel h5py only).

Links are followed as h5py follows them (the metadata names the file that holds the
data). A failure while reading on any rank is raised on every rank. CF packing and
masking (netCDF ``scale_factor``, ``add_offset``, ``_FillValue``...) is decoded block by
block after the read (:mod:`hpcproc.io.cf`) unless ``mask_and_scale=False``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping

import numpy as np

from .. import _ingest, provenance
from ..array import DistArray, _tiled
from ..comm import _agreed, check_all, collective, get_comm, lib_comm
from ..errors import ShapeMismatchError
from ..partition import aligned_ranges, block_range, tiling_problem
from ..table import DistTable
from ..observe import progress
from ..observe.phases import phase
from . import cf, chunked, direct, mpio
from ._meta import DatasetInfo, dataset_info

__all__ = ["read", "read_table", "blocks", "METHODS", "LAYOUTS", "strategy"]

METHODS = ("auto", "direct", "chunked", "h5py", "mpio")
#: ``"auto"``: chunk-aligned blocks for chunked datasets (no chunk read twice), balanced
#: (:func:`~hpcproc.partition.block_range`) otherwise; ``"balanced"``: always balanced.
LAYOUTS = ("auto", "balanced")


def _choose(info: DatasetInfo, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        if info.direct_readable:
            return "direct"
        return "chunked" if info.layout == "chunked" else "h5py"
    if method == "direct" and not info.direct_readable:
        raise ValueError(f"method='direct' needs a contiguous, unfiltered, allocated dataset; "
                         f"{info.name!r} is {info.layout} with filters {list(info.filters)}")
    if method == "chunked" and info.layout != "chunked":
        raise ValueError(f"method='chunked' needs a chunked dataset; {info.name!r} is {info.layout}")
    if method == "mpio":
        mpio.require()
    return method


def strategy(info: DatasetInfo, method: str = "auto") -> str:
    """The read strategy (``direct``, ``chunked``, ``h5py`` or ``mpio``) that ``method``
    resolves to for a dataset (what :func:`read` and :func:`blocks` will use). Local."""
    return _choose(info, method)


def _row_selection(rows, n: int, name: str) -> tuple[int, int]:
    """Normalise ``rows`` (None, slice or (start, stop)) to ``[start, stop)`` within ``n``."""
    if rows is None:
        return 0, n
    if isinstance(rows, tuple) and len(rows) == 2:
        rows = slice(*rows)
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice or (start, stop), not {type(rows).__name__}")
    if rows.step not in (None, 1):
        raise ValueError(f"rows: only contiguous slices are supported (step {rows.step})")
    start = 0 if rows.start is None else int(rows.start)
    stop = n if rows.stop is None else int(rows.stop)
    start, stop = (start + n if start < 0 else start), (stop + n if stop < 0 else stop)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows {rows.start}:{rows.stop} out of range for dataset {name!r} "
                         f"with {n} rows")
    return start, stop


def _ranges(info: DatasetInfo, how: str, start: int, stop: int, size: int,
            layout: str = "auto"):
    if how == "chunked" and layout == "auto":
        return aligned_ranges(start, stop, info.chunks[0], size)
    return [tuple(start + b for b in block_range(stop - start, size, r)) for r in range(size)]


def _check_layout(layout, local_rows) -> None:
    """Local checks of ``layout`` and ``local_rows`` (before any communication)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if local_rows is not None and layout != "auto":
        raise ValueError("give either local_rows= (this rank's own rows) or layout=, not both")


def _local_rows(local_rows, n: int) -> tuple[int, int]:
    """This rank's ``local_rows=(start, stop)``, checked against the ``n`` rows selected."""
    try:
        a, b = (operator.index(v) for v in local_rows)
    except (TypeError, ValueError):
        raise TypeError(f"local_rows must be a pair of ints (start, stop), got "
                        f"{local_rows!r}") from None
    if not 0 <= a <= b <= n:
        raise ValueError(f"local_rows ({a}, {b}) out of range for the {n} rows selected")
    return a, b


def _rank_ranges(info, how, start, stop, comm, layout, local_rows, out=None, dtype=None,
                 what="hp.read"):
    """Every rank's rows ``[lo, hi)`` of the selection ``[start, stop)``. Collective.

    ``local_rows`` (per rank, relative to the selection) are checked on every rank and
    must tile the selection (one allgather); otherwise the decomposition is ``layout``'s.
    ``out`` is checked to have the shape of this rank's block and ``dtype`` (default: the
    dataset's native dtype).
    """
    dtype = info.native_dtype if dtype is None else dtype
    size, rank = comm.Get_size(), comm.Get_rank()

    def local():
        if local_rows is None:
            ranges = _ranges(info, how, start, stop, size, layout)
            lo, hi = ranges[rank]
        else:
            ranges = None
            lo, hi = (start + v for v in _local_rows(local_rows, stop - start))
        try:
            _check_out(out, (hi - lo,) + info.shape[1:], dtype)
        except ValueError as exc:
            balanced = tuple(start + b for b in block_range(stop - start, size, rank))
            if local_rows is None and (lo, hi) != balanced:
                raise ValueError(f"{exc}: a chunk-aligned block; pass layout='balanced' or "
                                 "local_rows= to choose the blocks") from None
            raise
        return ranges, (lo, hi)

    ranges, mine = check_all(local, comm)
    if ranges is None:
        bounds = lib_comm(comm).allgather((mine[0] - start, mine[1] - mine[0]))
        problem = tiling_problem(bounds, stop - start)
        if problem:
            raise _agreed(ShapeMismatchError(
                f"{what}: local_rows must tile the {stop - start} rows selected from "
                f"{info.name!r} (contiguous blocks in rank order): {problem}"))
        ranges = [(start + o, start + o + n) for o, n in bounds]
    return ranges


def _read_checksummed(info: DatasetInfo, how: str, lo: int, hi: int, comm, out=None,
                      crc: int = 0, checksum: bool = True, mask_and_scale: bool = True,
                      raw=None):
    """Rows ``[lo, hi)`` by strategy ``how``: ``(block, crc32 or None)``. Collective: a
    failure on any rank is raised on every rank.

    The direct path checksums while it reads (one pass, continuing the running ``crc``);
    the others leave the checksum (None) to the caller
    (:func:`hpcproc._ingest.after_read`, :class:`hpcproc._ingest.BlockChecksum`). With CF
    attributes (and ``mask_and_scale``) the stored values (read into ``raw`` when given)
    are checksummed here and decoded into ``out``.
    """
    dec = cf.decoder(info, mask_and_scale)

    def local():
        with phase("read", read=(hi - lo) * info.row_bytes):
            if dec is None:
                return _read_stored(info, how, lo, hi, comm, out, crc, checksum)
            block, c = _read_stored(info, how, lo, hi, comm, raw, crc, checksum)
            if c is None and checksum and provenance.enabled():
                c = provenance.block_crc32(block, crc)  # the values as stored
            return dec(block, out), c
    return check_all(local, comm)


def _read_stored(info: DatasetInfo, how: str, lo: int, hi: int, comm, out, crc, checksum):
    crc32 = _ingest.inline_crc32() if how == "direct" and checksum else None
    if crc32 is not None:
        return direct.read_rows(info, lo, hi, out, crc32=crc32, crc=crc)
    if how == "direct":
        return direct.read_rows(info, lo, hi, out), None
    if how == "mpio":
        return mpio.read_rows(info, lo, hi, comm, out), None
    return chunked.read_rows(info, lo, hi, out), None


def _decoded_dtype(info: DatasetInfo, mask_and_scale: bool) -> np.dtype:
    dec = cf.decoder(info, mask_and_scale)
    return info.native_dtype if dec is None else dec.dtype


def _check_out(out, shape, dtype) -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, not {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous \
            or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous {dtype} array of shape {shape} "
                         f"(this rank's block); got {out.dtype} {out.shape}")


@collective("hp.read", local=("out", "local_rows"), paths=("path",))
def read(path: str, dataset: str, comm=None, rows=None, method: str = "auto",
         out: np.ndarray | None = None, validate=None, *, local_rows=None,
         layout: str = "auto", mask_and_scale: bool = True) -> DistArray:
    """Read this rank's block of an HDF5 dataset along axis 0.

    Collective. Metadata is read on rank 0 and broadcast; then each rank reads only its
    own rows (see the module docstring for the strategies).

    Parameters
    ----------
    path, dataset : str
        File and dataset name (``"/group/x"``). netCDF4 files are HDF5 files.
    comm : mpi4py.MPI.Intracomm, optional
        Communicator; ``None`` means COMM_WORLD.
    rows : slice or (start, stop), optional
        Contiguous row selection of the dataset (default: all rows).
    method : {"auto", "direct", "chunked", "h5py", "mpio"}
        Force a read strategy; ``"auto"`` picks the fastest available one.
    out : numpy.ndarray, optional
        Read this rank's block into this array (the result's dtype, C-contiguous, the
        block's shape), e.g. to reuse memory across reads; checked on every rank first.
    local_rows : (int, int), optional, keyword-only
        This rank's own rows ``(start, stop)`` of the selection (per rank: a simulation
        code's own decomposition). The blocks must tile the selection: contiguous, in
        rank order, non-overlapping, covering every row (``ShapeMismatchError`` on every
        rank otherwise). Any strategy reads any block (a chunk shared by two ranks is
        read by both).
    layout : {"auto", "balanced"}, keyword-only
        Decomposition when ``local_rows`` is not given: ``"auto"`` uses chunk-aligned
        blocks for chunked datasets (the fastest: no chunk is read twice) and balanced
        blocks otherwise; ``"balanced"`` always uses :func:`hpcproc.block_range`'s
        blocks (sizes differ by at most one row), whatever the storage.
    validate : dict or str, optional
        Validation rules (a dict, or a TOML/JSON file; see :mod:`hpcproc.validate`),
        checked in the same pass as the read; ``ValidationError`` (with ``.report``) on
        every rank if the data breaks one.
    mask_and_scale : bool
        Decode netCDF/CF packing and missing values where the dataset has the attributes
        (``scale_factor``, ``add_offset``, ``_FillValue``, ``missing_value``,
        ``valid_min``/``valid_max``/``valid_range``), as netCDF4-python and xarray do:
        missing values become NaN (see :mod:`hpcproc.io.cf`). ``False``: the stored values.

    The rows read are recorded (with a crc32 of their content) as an input of the
    lineage stored on everything this process writes next (:mod:`hpcproc.provenance`).

    Returns
    -------
    DistArray
        ``global_shape`` is the selection's shape; ``offset`` counts from the start of
        the selection and ``origin`` is the row in the file. Data is in native byte order
        (and decoded, see ``mask_and_scale``).

    Raises
    ------
    FileNotFoundError, OSError, DatasetNotFoundError, NotADatasetError, DtypeError,
    ValueError
        On every rank, before any data is read.
    """
    comm = get_comm(comm)
    _check_layout(layout, local_rows)
    info = dataset_info(path, dataset, comm)
    start, stop = _row_selection(rows, info.rows, info.name)
    how = _choose(info, method)
    rules = _ingest.prepare_rules(validate, info, comm)
    dtype = _decoded_dtype(info, mask_and_scale)
    ranges = _rank_ranges(info, how, start, stop, comm, layout, local_rows, out, dtype)
    lo, hi = ranges[comm.Get_rank()]
    local, crc = _read_checksummed(info, how, lo, hi, comm, out, mask_and_scale=mask_and_scale)
    _ingest.check_report(_ingest.after_read(info, start, stop, local, lo - start, comm, rules,
                                            crc=crc))
    return _tiled(DistArray(local, (stop - start,) + info.shape[1:], lo - start, comm,
                            origin=lo))


@collective("hp.read_table", paths=("path",))
def read_table(path: str, columns: Mapping[str, str], comm=None, rows=None,
               method: str = "auto", *, mask_and_scale: bool = True) -> DistTable:
    """Read several datasets of one file as the columns of a DistTable.

    Collective. ``columns`` maps column names to dataset names, e.g.
    ``{"x": "/p/x", "id": "/p/id"}``. All datasets must have the same number of rows
    (``ShapeMismatchError`` on every rank otherwise); the rows are split identically
    (balanced, not chunk-aligned, so chunked columns of different chunk sizes line up).
    ``mask_and_scale`` decodes CF attributes as in :func:`read`.
    """
    comm = get_comm(comm)
    if not columns:
        raise ValueError("read_table needs at least one column")
    infos = {k: dataset_info(path, name, comm) for k, name in columns.items()}
    lengths = {k: i.rows for k, i in infos.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} ({columns[k]}): {n}" for k, n in lengths.items())
        raise ShapeMismatchError(f"columns of {path} have different lengths: {detail}")
    first = next(iter(infos.values()))
    start, stop = _row_selection(rows, first.rows, first.name)
    hows = {k: _choose(i, method) for k, i in infos.items()}
    lo, hi = (start + b for b in block_range(stop - start, comm.Get_size(), comm.Get_rank()))
    local = {}
    for k, i in infos.items():
        local[k], crc = _read_checksummed(i, "h5py" if hows[k] == "chunked" else hows[k],
                                          lo, hi, comm, mask_and_scale=mask_and_scale)
        _ingest.after_read(i, start, stop, local[k], lo - start, comm, crc=crc)
    table = DistTable(local, stop - start, lo - start, comm)
    table._tiled = table._layout()[2]  # balanced blocks: tiles by construction
    return table


@collective("hp.blocks", local=("local_rows",), paths=("path",))
def blocks(path: str, dataset: str, block_bytes: int = 64 << 20, comm=None, rows=None,
           method: str = "auto", reuse: bool = False, *, local_rows=None,
           layout: str = "auto", mask_and_scale: bool = True,
           first: int = 0) -> Iterator[DistArray]:
    """Iterate over a dataset in successive blocks of at most ``block_bytes`` per rank.

    Collective: every rank receives the same number of blocks (ranks that run out get
    empty ones), so the loop body may itself call collectives. Each yielded DistArray is
    one step of the scan: rank r holds the next rows of its own share of the dataset;
    ``origin`` gives their row in the file. A file far larger than memory is processed
    with memory bounded by ``block_bytes`` per rank (rounded up to one row, or to one
    chunk length for chunked datasets).

    With ``reuse=True`` every block is read into the same buffer: faster (no new memory
    to fault in per step), but a block is valid only until the next step; copy what you
    keep. ``first``: start with that block (a resumed scan: not the whole selection, so no
    lineage record).

    ``local_rows`` and ``layout`` (keyword-only) choose each rank's share as in
    :func:`read`.

    ``mask_and_scale`` decodes CF attributes block by block, as in :func:`read`
    (``block_bytes`` counts the stored bytes).
    """
    comm = get_comm(comm)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise ValueError(f"first must be an int >= 0, got {first!r}")
    if int(block_bytes) < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    _check_layout(layout, local_rows)
    info = dataset_info(path, dataset, comm)
    start, stop = _row_selection(rows, info.rows, info.name)
    how = _choose(info, method)
    size, rank = comm.Get_size(), comm.Get_rank()
    ranges = _rank_ranges(info, how, start, stop, comm, layout, local_rows, what="hp.blocks")
    step = max(1, int(block_bytes) // max(1, info.row_bytes))
    if how == "chunked" and layout == "auto" and local_rows is None:
        step = max(1, step // info.chunks[0]) * info.chunks[0]
    nsteps = max(-(-(hi - lo) // step) for lo, hi in ranges) if ranges else 0
    lib_comm(comm)  # create the library communicator before the first block on all ranks
    mine = ranges[rank][1] - ranges[rank][0]
    dtype = _decoded_dtype(info, mask_and_scale)
    buf = (np.empty((min(step, mine),) + info.shape[1:], dtype=dtype) if reuse else None)
    raw = (np.empty_like(buf, dtype=info.native_dtype)
           if reuse and dtype != info.native_dtype else buf)
    bar = progress.scan(f"{path}:{info.name}", mine * info.row_bytes,
                        (stop - start) * info.row_bytes)
    crc = _ingest.BlockChecksum(info, start, stop)
    crc.active = crc.active and not first
    for i in range(first, nsteps):
        pieces = [(min(hi, lo + i * step), min(hi, lo + (i + 1) * step)) for lo, hi in ranges]
        counts = [b - a for a, b in pieces]
        a, b = pieces[rank]
        local, running = _read_checksummed(info, how, a, b, comm,
                                           None if buf is None else buf[:b - a], crc.crc,
                                           crc.active, mask_and_scale,
                                           None if raw is None else raw[:b - a])
        bar.update(local.nbytes)
        crc.update(local, running)
        yield _tiled(DistArray(local, (sum(counts),) + info.shape[1:], sum(counts[:rank]),
                               comm, origin=a))
    bar.close()
    if not first:
        crc.finish(info, start, stop, comm)  # a complete scan is an input of the lineage
